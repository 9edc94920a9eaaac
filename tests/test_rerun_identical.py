"""A rerun of every stage on the tiny config writes byte-identical data artifacts.

The session's tiny workflow run (``tiny_run``) is copied, and in the copy snakemake is made to run again
(``--force``) one job or more of every stage: the demo MIMIC-CXR and the demo copy of every downstream
dataset, sections, manifest, shards, embed, embed-map, pretrain, loss-curve, every dataset and its
shards, one evaluation of each of the six tasks and all six tables. Every file those jobs rewrote must
have the bytes of the first run (the pretrained weights and checkpoint included: CPU training is
deterministic), except what holds wall-clock facts by design: the benchmark TSVs, the ``images_per_s``
and ``seconds`` fields of the pretraining metrics log, and the provenance sidecars
(``*.provenance.json``), which may differ only in ``run.started``, ``run.ended`` and the recorded
sha256 and size of that metrics log. The DuckDB catalog indexes the sidecars, timestamps included, so
it is not rerun.

The Parquet outputs carry the stable provenance record (code sha256, git commit and dirty flag,
inputs), so the two runs must see the same checkout: a commit or an edit of ``imitate/`` between them
shows as differing ``imitate.provenance`` metadata, which the failure message names.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.workflow import run_snakemake

DATASETS = ("toy", "rsna", "chestxray14", "chexpert_5x200")
TASKS = ("linear_classification", "finetune_classification", "segmentation", "detection", "zero_shot", "retrieval")
# jobs forced in the copy: every rule without wildcards, every dataset, one evaluation per task
RULES = ["demo_data", "sections", "manifest", "shards", "embed", "embed_map", "pretrain", "loss_curve"]
RULES += [f"dataset_demo_{name}" for name in DATASETS]
PREPARED = (*DATASETS, "table_demo")  # table_demo: the demo MIMIC's exports/labels.csv, no demo rule of its own
DATASET_FILES = [
    f"results/datasets/{name}/{part}" for name in PREPARED for part in ("records.parquet", "shards/manifest.parquet")
]
EVALUATIONS = [
    "results/evaluate/linear_classification/toy/imitate.parquet",
    "results/evaluate/finetune_classification/chestxray14/random_init.parquet",
    "results/evaluate/segmentation/rsna/imitate.parquet",
    "results/evaluate/detection/rsna/random_init.parquet",
    "results/evaluate/zero_shot/rsna/imitate.parquet",
    "results/evaluate/retrieval/chexpert_5x200/random_init.parquet",
]
TABLES = [f"results/tables/{task}.{ext}" for task in TASKS for ext in ("csv", "md")]
# what each stage must have rewritten in the copy (a glob under the workdir)
EXPECTED = [
    "results/demo_data/physionet.org/files/mimic-cxr-jpg/2.0.0/*.csv.gz",
    "results/demo_data/physionet.org/files/mimic-cxr-reports/files/*.txt",
    "results/demo_data/physionet.org/files/exports/labels.csv",
    *[f"results/demo_data/downstream/{root}/*.*" for root in ("toy", "rsna", "chestxray14", "chexpert")],
    "results/sections/sections.parquet",
    "results/manifest/images.parquet",
    "results/manifest/studies.parquet",
    "results/shards/manifest.parquet",
    "results/shards/*.tar",
    "results/embed/embeddings.parquet",
    "results/embed/section_map.json",
    "results/pretrain/model.safetensors",
    "results/pretrain/encoder.safetensors",
    "results/pretrain/checkpoint.pt",
    "results/pretrain/model_card.json",
    "results/pretrain/loss_curve.png",
    *[f"results/datasets/{name}/{part}" for name in PREPARED for part in ("records.parquet", "subsets.parquet")],
    *[f"results/datasets/{name}/shards/*.tar" for name in PREPARED],
    *EVALUATIONS,
    *TABLES,
]
METRICS = "results/pretrain/metrics.jsonl"
TIMINGS = ("images_per_s", "seconds")  # the metrics log's wall-clock fields
SIDECAR = ".provenance.json"
RUN_TIMES = ("started", "ended")  # the only fields of a sidecar's run block that a rerun may change


@pytest.fixture(scope="module")
def rerun(tiny_run: Path, tmp_path_factory) -> tuple[Path, list[str]]:
    """A copy of ``tiny_run`` in which every stage ran again; the files the rerun rewrote, relative."""
    copy = tmp_path_factory.mktemp("rerun") / "work"
    shutil.copytree(tiny_run, copy, symlinks=True)  # copy2 keeps mtimes: snakemake sees it all up to date
    before = {p: p.stat().st_mtime_ns for p in (copy / "results").rglob("*") if p.is_file()}
    first = run_snakemake(copy, "--force", *RULES, *DATASET_FILES, *EVALUATIONS)
    assert first.returncode == 0, first.stderr[-5000:]
    # the tables alone: they read every evaluation, the ones not rerun as the first run left them
    second = run_snakemake(copy, "--force", *TABLES, "--allowed-rules", "tables")
    assert second.returncode == 0, second.stderr[-5000:]
    after = {p: p.stat().st_mtime_ns for p in (copy / "results").rglob("*") if p.is_file()}
    rewritten = sorted(p.relative_to(copy).as_posix() for p, mtime in after.items() if before.get(p) != mtime)
    return copy, rewritten


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(value, dict):
        return {prefix.rstrip("."): value}
    return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()}


def _differing_keys(a: dict, b: dict) -> list[str]:
    flat_a, flat_b = _flat(a), _flat(b)
    return sorted(k for k in flat_a.keys() | flat_b.keys() if flat_a.get(k) != flat_b.get(k))


def _rows(path: Path) -> list[str]:
    """A Parquet file's rows, NaN-safe (repr), without its metadata."""
    return [repr(row) for row in pq.read_table(path).to_pylist()]


def _parquet_difference(a: Path, b: Path) -> str:
    """Whether two Parquet files differ in their data, and which metadata keys (and JSON fields) vary."""
    data = "same data" if _rows(a) == _rows(b) and pq.read_schema(a) == pq.read_schema(b) else "DATA DIFFER"
    meta_a, meta_b = (pq.read_schema(p).metadata or {} for p in (a, b))
    varying = []
    for key in sorted(k for k in meta_a.keys() | meta_b.keys() if meta_a.get(k) != meta_b.get(k)):
        try:
            fields = _differing_keys(json.loads(meta_a[key]), json.loads(meta_b[key]))
        except (KeyError, ValueError):
            fields = ["(whole value)"]
        varying.append(f"{key.decode()}: {', '.join(fields)}")
    return f"{data}; metadata varying: {'; '.join(varying) or 'none'}"


def _metrics(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in path.read_text().splitlines()]


def test_every_data_artifact_of_the_rerun_is_byte_identical(tiny_run: Path, rerun: tuple[Path, list[str]]):
    copy, rewritten = rerun
    data = [name for name in rewritten if not name.endswith(SIDECAR)]
    not_rerun = [glob for glob in EXPECTED if not fnmatch.filter(data, glob)]
    assert not not_rerun, f"the rerun rewrote nothing matching {not_rerun}"
    originals = {p.relative_to(tiny_run).as_posix() for p in (tiny_run / "results").rglob("*") if p.is_file()}
    copies = {p.relative_to(copy).as_posix() for p in (copy / "results").rglob("*") if p.is_file()}
    assert originals == copies, f"only in the first run: {originals - copies}; only in the rerun: {copies - originals}"

    compared, differ = 0, []
    for name in rewritten:
        first, second = tiny_run / name, copy / name
        if name.endswith(SIDECAR) or name.startswith("results/benchmarks/"):
            continue  # wall-clock facts by design (the sidecars are checked below)
        compared += 1
        if name == METRICS:
            if _metrics(first) != _metrics(second):
                differ.append(f"{name}: step or epoch records differ beyond {TIMINGS}")
        elif first.read_bytes() != second.read_bytes():
            differ.append(f"{name}: {_parquet_difference(first, second)}" if name.endswith(".parquet") else name)
    assert not differ, f"{len(differ)} of {compared} rewritten files differ after a rerun:\n" + "\n".join(differ)


def _without_timed_digests(value: object) -> object:
    """A sidecar with the digest and size of the metrics log (wherever it is recorded) left out."""
    if isinstance(value, list):
        return [_without_timed_digests(item) for item in value]
    if not isinstance(value, dict):
        return value
    timed = value.get("path") == METRICS
    return {k: _without_timed_digests(v) for k, v in value.items() if not (timed and k in ("sha256", "bytes"))}


def test_provenance_sidecars_of_the_rerun_differ_only_in_run_times_and_the_metrics_log(tiny_run: Path, rerun):
    copy, rewritten = rerun
    sidecars = [name for name in rewritten if name.endswith(SIDECAR)]
    assert len(sidecars) >= len(EXPECTED), sidecars
    volatile = {f"run.{field}" for field in RUN_TIMES}
    differ = {}
    for name in sidecars:
        first, second = (_without_timed_digests(json.loads(p.read_text())) for p in (tiny_run / name, copy / name))
        keys = [k for k in _differing_keys(first, second) if k not in volatile]
        if keys:
            differ[name] = keys
    assert not differ, "sidecars differing beyond the run times:\n" + "\n".join(f"{k}: {v}" for k, v in differ.items())
