"""``imitate preflight``: what a run needs, checked before any stage starts (a multi-day job fails late).

Six checks, one function each, every one returning :class:`Check` rows:

* ``raw_files``: the MIMIC-CXR files of ``data:`` (metadata, split, labels, the report tree, at least one
  image tree; a missing tree beside a present one is a warning) and, for every dataset an
  ``evaluate.<task>`` uses, its adapter's raw files and image folders exist and can be read;
* ``headers``: those CSVs' first lines hold the columns the readers need;
* ``encoder``: ``embed.encoder`` and each experiment's load offline (what the embed stage runs; no download);
* ``imagenet``: the weights files that ``model.init`` and ``evaluate.methods`` name exist;
* ``device``: a CUDA GPU is visible when a stage is set to ``cuda``;
* ``disk``: the shards fit in the free space where ``results/`` will be.

Data the workflow writes itself (the demo) is skipped. Nothing is written and no stage runs.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitate.preflight.sources import Source, data_sources, image_count, read_header, resolve

OK, WARN, FAIL, SKIPPED = "ok", "warn", "FAIL", "skipped"
CHECKS: tuple[str, ...] = ("raw_files", "headers", "encoder", "imagenet", "device", "disk")
# Shard bytes per pixel of an 8-bit grayscale film. Conservative: a radiograph's noise leaves lossless
# PNG little to squeeze (0.75 assumes a 25 % saving), and JPEG at quality 95 rarely goes above 0.35.
BYTES_PER_PIXEL: Mapping[str, float] = {"png": 0.75, "jpg": 0.35}
# shards.resize shorter_side makes image_size the shorter side, a portrait film's longer side about 1.2 times
# it; square and pad make both sides image_size, so this bounds every mode
ASPECT = 1.2
TAR_BYTES = 1024  # tar headers and padding of one sample
MARGIN = 1.2  # 20 % on top of the estimate
GIB = 1 << 30


@dataclass(frozen=True)
class Check:
    """One row of the preflight table: a check, what it looked at, ok / warn / FAIL / skipped, and why."""

    name: str
    subject: str
    status: str
    detail: str


@dataclass(frozen=True)
class Plan:
    """What the checks read: the run's config, the working directory and the data sources."""

    config: Mapping[str, Any]
    workdir: Path
    sources: list[Source]


def _path_problem(path: Path, folder: bool) -> str:
    """What is wrong with ``path`` as a readable file (``folder``: a listable directory); "" if nothing."""
    try:
        if not (path.is_dir() if folder else path.is_file()):
            return "missing" if not path.exists() else f"is not a {'directory' if folder else 'file'}"
    except OSError as error:
        return f"cannot be looked at ({error.strerror})"
    return "" if os.access(path, os.R_OK | (os.X_OK if folder else 0)) else "is not readable by you"


def _skipped_demo(name: str, source: Source) -> Check:
    return Check(name, source.subject, SKIPPED, "skipped (demo): the workflow writes these files")


def check_raw_files(plan: Plan) -> list[Check]:
    """Each source's files and folders exist and are readable; MIMIC needs one of its image trees."""
    rows: list[Check] = []
    for source in plan.sources:
        if source.demo:
            rows.append(_skipped_demo("raw_files", source))
            continue
        no_root = _path_problem(source.root, folder=True)
        if no_root:
            rows.append(Check("raw_files", source.subject, FAIL, f"{source.root} {no_root} ({source.key}.root): "
                              f"{source.fix}"))
            continue
        paths = [(role, rel, False) for role, rel in source.files.items()]
        paths += [(role, rel, True) for role, rel in source.dirs]
        problems = [f"{source.root / rel} {problem} ({role})" for role, rel, folder in paths
                    if (problem := _path_problem(source.root / rel, folder))]
        found = [Check("raw_files", source.subject, FAIL, f"{'; '.join(problems)}: {source.fix}")] if problems else []
        found += _one_of_rows(source)
        rows += found or [Check("raw_files", source.subject, OK, f"{len(paths) + len(source.one_of)} files and "
                                f"folders under {source.root}")]
    return rows


def _one_of_rows(source: Source) -> list[Check]:
    """MIMIC's image trees: each missing one warns if another exists, and fails if none does."""
    missing = [(tree, problem) for tree in source.one_of
               if (problem := _path_problem(source.root / tree, folder=True))]
    if len(missing) == len(source.one_of) and missing:
        trees = ", ".join(str(source.root / tree) for tree, _ in missing)
        return [Check("raw_files", source.subject, FAIL, f"no image tree of data.image_trees is there ({trees}): "
                      "unpack MIMIC-CXR-JPG's files/ there, or fix data.root / data.image_trees")]
    return [Check("raw_files", source.subject, WARN, f"{source.root / tree} {problem} (data.image_trees): images "
                  "are read from the other tree(s); remove it from data.image_trees if you do not hold it")
            for tree, problem in missing]


def check_headers(plan: Plan) -> list[Check]:
    """The header line of each CSV holds the columns its reader needs (missing files are ``raw_files``')."""
    rows: list[Check] = []
    for source in plan.sources:
        if source.demo:
            rows.append(_skipped_demo("headers", source))
            continue
        found, checked = [], 0
        for role, columns in source.headers.items():
            path = source.root / source.files[role]
            if _path_problem(path, folder=False):
                continue
            try:
                header = read_header(path)
            except (OSError, EOFError, UnicodeDecodeError, csv.Error) as error:  # not a (gzipped) text CSV
                found.append(Check("headers", source.subject, FAIL, f"{path} ({role} of {source.subject}): cannot "
                                   f"read its header ({error}); is it the right file?"))
                continue
            checked += 1
            missing = [column for column in columns if column not in header]
            if missing:
                found.append(Check("headers", source.subject, FAIL, f"{path} ({role} of {source.subject}) lacks "
                                   f"column(s) {', '.join(missing)}; its header is {', '.join(header[:12])}: "
                                   "is it the right file (or version)?"))
        rows += found or [_headers_ok(source, checked)]
    return rows


def _headers_ok(source: Source, checked: int) -> Check:
    """The row of a source whose readable CSVs all hold their columns (``checked`` of them)."""
    if not source.headers:
        return Check("headers", source.subject, OK, "no header to check (list files)")
    if not checked:
        return Check("headers", source.subject, SKIPPED, "not checked: the files are missing (see raw_files)")
    missing = len(source.headers) - checked
    unread = f"; {missing} not checked: missing (see raw_files)" if missing else ""
    return Check("headers", source.subject, OK, f"{checked} header(s) hold the columns read{unread}")


def check_encoder(plan: Plan) -> list[Check]:
    """Every text encoder the run embeds with (``embed.encoder`` and the experiments') loads from local
    files only, as the embed stage loads it."""
    from imitate.embed.encoder import load_encoder
    from imitate.evaluate.tasks import TASKS
    from imitate.experiments.plan import resolve_experiments

    encoders = {}
    for experiment in resolve_experiments(plan.config, TASKS).values():
        embed = experiment.blocks["embed"]
        encoders.setdefault(embed["encoder"], embed.get("trust_remote_code", False))
    rows = []
    for name, trust_remote_code in encoders.items():
        try:
            encoder = load_encoder(name, trust_remote_code=trust_remote_code)
        except Exception as error:  # whatever stops the load is this check's FAIL, not a crash
            rows.append(Check("encoder", name, FAIL, _encoder_fix(name, error)))
            continue
        rows.append(Check("encoder", name, OK, f"loads offline from {encoder.directory} ({encoder.dim}-d, weights "
                          f"sha256 {encoder.weights_sha256[:12]}...)"))
    return rows


def _encoder_fix(name: str, error: Exception) -> str:
    """What to do about an encoder that does not load: a hub id missing from the cache, or a bad directory."""
    from imitate.embed.encoder import bundled_model_dir

    path = Path(name).expanduser()
    # named as resolve_encoder_dir reads names: neither a bundled package nor a directory, nor path-like
    if bundled_model_dir(name) is None and not path.is_dir() and not path.suffix and \
            not name.startswith(("/", ".", "~")):
        local = f"/models/{name.rsplit('/', 1)[-1]}"
        return (f"embed.encoder {name!r} is a Hugging Face id that is not in the local cache, and nothing is "
                f"downloaded: place a local copy at {local} (huggingface-cli download {name} --local-dir {local}, "
                "on a machine with network access) and set embed.encoder to its directory")
    return (f"embed.encoder {name!r} does not load offline ({error}): place a local copy (config.json, tokenizer, "
            f"weights) at {path} and set embed.encoder to its directory")


def check_imagenet(plan: Plan) -> list[Check]:
    """The ImageNet weights (``imagenet``) and every weights file named in the config exist."""
    config = plan.config
    named = [("model.init", config["model"]["init"], ("none", "imagenet"))]
    named += [(f"evaluate.methods.{method}.weights", entry["weights"], ("pretrain", "random", "imagenet"))
              for method, entry in config["evaluate"]["methods"].items()]
    rows = []
    keys = [key for key, value, _ in named if value == "imagenet"]
    if keys:
        rows.append(_imagenet_row(config["model"]["backbone"], keys))
    for key, value, words in named:
        if value not in words:
            path = resolve(value, plan.workdir)
            problem = _path_problem(path, folder=False)
            rows.append(Check("imagenet", key, FAIL if problem else OK,
                              f"{path} {problem}: copy the weights file there or fix {key}" if problem else
                              f"{path} is there"))
    return rows or [Check("imagenet", "", OK, "no weights file needed (model.init none; methods pretrain, random)")]


def _imagenet_row(backbone: str, keys: list[str]) -> Check:
    """Whether torchvision's ImageNet weights of ``backbone`` are in the local torch cache."""
    from imitate.models.backbone import imagenet_weights_path

    path = imagenet_weights_path(backbone)
    problem = _path_problem(path, folder=False)
    if not problem:
        return Check("imagenet", backbone, OK, f"{path} is there ({', '.join(keys)})")
    home = os.environ.get("TORCH_HOME", "unset, so ~/.cache/torch")
    return Check("imagenet", backbone, FAIL, f"{path} {problem} ({', '.join(keys)}: imagenet): torchvision expects "
                 f"it in $TORCH_HOME/hub/checkpoints (TORCH_HOME is {home}); on a machine with network access run "
                 f"python -c \"import torchvision; torchvision.models.{backbone}(weights='IMAGENET1K_V1')\" and "
                 "copy the file there, or point TORCH_HOME at a cache that holds it")


def check_device(plan: Plan) -> list[Check]:
    """A CUDA GPU is visible when ``embed``, ``pretrain`` or ``evaluate`` runs on ``cuda``."""
    config = plan.config
    devices = {"embed.device": config["embed"]["device"], "pretrain.device": config["pretrain"].get("device", "cpu"),
               "evaluate.device": config["evaluate"].get("device", "cpu")}
    cuda = [key for key, device in devices.items() if device == "cuda"]
    if not cuda:
        return [Check("device", "cpu", OK, "every stage runs on the CPU")]
    import torch

    if torch.cuda.is_available():
        return [Check("device", "cuda", OK, f"{torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(0)} "
                      f"({', '.join(cuda)})")]
    return [Check("device", "cuda", FAIL, f"{', '.join(cuda)}: cuda, but no CUDA GPU is visible here: run preflight "
                  "on a GPU node, or `--skip device` on a login node")]


def shard_bytes(images: int, image_size: int, image_format: str) -> int:
    """Bytes the shards of ``images`` images at ``image_size`` (shorter side) take, at most (no margin)."""
    per_image = image_size * image_size * ASPECT * BYTES_PER_PIXEL[image_format] + TAR_BYTES
    return int(images * per_image)


def check_disk(plan: Plan) -> list[Check]:
    """The shards of MIMIC-CXR and of every used dataset, plus 20 %, fit in the free space of ``results/``."""
    image_format = plan.config["shards"]["format"]
    counts = [(source, image_count(source)) for source in plan.sources]
    need = MARGIN * sum(shard_bytes(n, source.image_size, image_format) for source, n in counts)
    place = plan.workdir / "results"
    while not place.exists() and place != place.parent:
        place = place.parent
    free = shutil.disk_usage(place).free
    images = sum(n for _, n in counts)
    what = (f"shards of <= {images:,} images need <= {need / GIB:.1f} GiB (+20 %), {free / GIB:.1f} GiB free "
            f"in {place}")
    if free < need:
        return [Check("disk", str(place), FAIL, f"{what}: free space there, or run in a directory on a larger disk "
                      "(snakemake --directory, imitate preflight --workdir)")]
    return [Check("disk", str(place), OK, what)]


RUNNERS: Mapping[str, Callable[[Plan], list[Check]]] = {
    "raw_files": check_raw_files, "headers": check_headers, "encoder": check_encoder,
    "imagenet": check_imagenet, "device": check_device, "disk": check_disk,
}


def run_preflight(config: Mapping[str, Any], workdir: Path, skip: Iterable[str] = ()) -> list[Check]:
    """Every check's rows, in :data:`CHECKS` order; those in ``skip`` give one ``skipped`` row each."""
    skip = set(skip)
    unknown = sorted(skip - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)}: choose from {', '.join(CHECKS)}")
    sources, errors = data_sources(config, workdir)
    rows = [Check("config", name, FAIL, error) for name, error in errors.items()]
    plan = Plan(config, workdir, sources)
    for name in CHECKS:
        rows += [Check(name, "", SKIPPED, "skipped (--skip)")] if name in skip else RUNNERS[name](plan)
    return rows


def failed(rows: Iterable[Check]) -> bool:
    """Whether any row is a FAIL (warnings do not fail)."""
    return any(row.status == FAIL for row in rows)


def format_table(rows: list[Check]) -> str:
    """The rows as a text table: check (and its subject), status, what to do."""
    cells = [("check", "status", "what to do")]
    cells += [(f"{row.name} {row.subject}".strip(), row.status, row.detail) for row in rows]
    width = [max(len(cell[i]) for cell in cells) for i in range(2)]
    return "\n".join(f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in cells)


def format_tsv(rows: list[Check]) -> str:
    """The rows as TSV with a header line (tabs and line ends inside a field become spaces)."""
    def clean(text: str) -> str:
        return " ".join(text.split("\t")).replace("\n", " ")

    lines = ["check\tsubject\tstatus\tdetail"]
    lines += ["\t".join(clean(field) for field in (row.name, row.subject, row.status, row.detail)) for row in rows]
    return "\n".join(lines) + "\n"
