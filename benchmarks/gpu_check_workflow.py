"""The workflow part of the GPU check: the tiny workflow on the device against a CPU run of it.

A run on the device is a copy of the CPU run's directory with ``embed``, ``pretrain`` and ``evaluate``
switched to the device, so Snakemake reruns exactly the stages that can use it (the data stages are
shared). The pretraining rule then runs once more through ``torchrun`` (``launch.always_torchrun``:
a process group, DDP and the loss's gathers at world size 1; NCCL on CUDA, gloo on the CPU).

Each comparison is one check, ``{"check", "ok", "detail"}``: what must agree between the two runs
(the rows of every results table, the embeddings' studies and width, the encoder's tensor shapes),
what the device run must show itself (finite metrics where the CPU's are finite, provenance records
naming the device, a finite first loss under torchrun close to the plain run's).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
ROW_KEY = ("dataset", "task", "fraction", "method", "seed", "metric")
DEVICE_STAGES = ("embed", "pretrain", "evaluate")  # the stages whose provenance must name the device
FIRST_LOSS_RTOL = 0.05  # bf16 autocast and other kernels on CUDA; on the CPU the losses are equal


class WorkflowError(RuntimeError):
    """A Snakemake run failed; the message holds the end of its output and of the failing logs."""


def snakemake(workdir: Path, configfiles: Sequence[Path], *args: str, cores: int) -> None:
    """``snakemake`` with this interpreter (and its environment) in ``workdir``; raises on failure."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", *map(str, configfiles), "--cores", str(cores), *args]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir)
    if run.returncode != 0:
        logs = sorted((workdir / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
        tails = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in logs)
        raise WorkflowError(f"snakemake {' '.join(args)} in {workdir} failed:\n{run.stderr[-4000:]}\n{tails}")


def write_overlay(path: Path, values: Mapping[str, Any]) -> Path:
    """A config file merged over the others (Snakemake merges later --configfile files over earlier)."""
    path.write_text(yaml.safe_dump(dict(values), sort_keys=True))
    return path


def device_overlay(device: str) -> dict[str, Any]:
    """Every stage that can use an accelerator, on ``device``."""
    return {stage: {"device": device} for stage in DEVICE_STAGES}


def check(name: str, ok: bool, detail: str = "") -> dict[str, Any]:
    return {"check": name, "ok": bool(ok), "detail": detail}


def _finite(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _table_rows(path: Path) -> dict[tuple[str, ...], str]:
    with open(path, newline="") as fh:
        return {tuple(row[k] for k in ROW_KEY): row["value"] for row in csv.DictReader(fh)}


def compare_tables(reference: Path, run: Path) -> Iterator[dict[str, Any]]:
    """Every results table of ``reference`` exists in ``run`` with the same rows, finite where it is."""
    tables = sorted((reference / "results/tables").glob("*.csv"))
    yield check("results tables exist", bool(tables), f"{len(tables)} tables in the CPU run")
    for table in tables:
        name = table.relative_to(reference).as_posix()
        other = run / name
        if not other.is_file():
            yield check(f"{name}: same rows", False, "missing in the device run")
            continue
        ref_rows, run_rows = _table_rows(table), _table_rows(other)
        missing, extra = ref_rows.keys() - run_rows.keys(), run_rows.keys() - ref_rows.keys()
        yield check(f"{name}: same rows", not missing and not extra,
                    f"{len(ref_rows)} rows; missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}")
        lost = sorted(k for k, v in ref_rows.items() if _finite(v) and k in run_rows and not _finite(run_rows[k]))
        yield check(f"{name}: metrics finite", not lost, f"not finite on the device: {lost[:3]}" if lost else "")


def compare_embeddings(reference: Path, run: Path) -> dict[str, Any]:
    """The same studies, in the same order, with vectors of the same width."""
    path = "results/embed/embeddings.parquet"
    ref, dev = pq.read_table(reference / path), pq.read_table(run / path)
    same_studies = ref["study_id"].to_pylist() == dev["study_id"].to_pylist()
    same_width = ref.schema.field("impression_emb").type == dev.schema.field("impression_emb").type
    return check("embeddings: same studies and width", same_studies and same_width,
                 f"{ref.num_rows} studies, {ref.schema.field('impression_emb').type}")


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), framework="pt") as fh:
        return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118 (not a dict)


def compare_weights(reference: Path, run: Path) -> Iterator[dict[str, Any]]:
    for name in ("encoder.safetensors", "model.safetensors"):
        ref, dev = tensor_shapes(reference / "results/pretrain" / name), tensor_shapes(run / "results/pretrain" / name)
        yield check(f"{name}: same tensors and shapes", ref == dev, f"{len(ref)} tensors")


def settings_devices(settings: Any) -> set[str]:
    """Every value of a ``device`` key anywhere in a provenance record's settings."""
    if isinstance(settings, Mapping):
        found = {str(v) for k, v in settings.items() if k == "device" and not isinstance(v, Mapping)}
        return found.union(*(settings_devices(v) for v in settings.values()))
    if isinstance(settings, list):
        return set().union(*(settings_devices(v) for v in settings))
    return set()


def device_records(run: Path) -> list[dict[str, Any]]:
    """The provenance records of the stages that can use an accelerator (``evaluate:<task>`` included)."""
    records = (json.loads(p.read_text()) for p in sorted((run / "results").rglob("*.provenance.json")))
    return [r for r in records if str(r.get("stage")).split(":")[0] in DEVICE_STAGES]


def compare_provenance(reference: Path, run: Path, device: str) -> Iterator[dict[str, Any]]:
    """Every device stage of the CPU run (each evaluation task) was run on ``device``, as its record says."""
    records = device_records(run)
    expected, stages = {r["stage"] for r in device_records(reference)}, {r["stage"] for r in records}
    yield check("provenance: every embed, pretrain and evaluation stage recorded", expected <= stages,
                f"{len(stages)} stages; missing {sorted(expected - stages)}")
    wrong = sorted({r["stage"] for r in records if settings_devices(r["settings"]) != {device}})
    yield check(f"provenance: settings say device {device}", not wrong, f"other devices in {wrong}" if wrong else "")
    if device == "cuda":
        gpus = {r["run"]["device"]["gpu"] for r in records}
        yield check("provenance: the GPU is named", None not in gpus and bool(gpus), f"{sorted(map(str, gpus))}")


def first_step(metrics: Path) -> dict[str, Any]:
    return next(r for r in map(json.loads, metrics.read_text().splitlines()) if r["type"] == "step")


def torchrun_leg(run: Path, configfiles: Sequence[Path], *, cores: int) -> list[dict[str, Any]]:
    """Pretrain again in a copy of ``run`` through torchrun at world size 1; compare with the plain run."""
    leg = run.with_name(run.name + "_torchrun")
    shutil.rmtree(leg, ignore_errors=True)
    shutil.copytree(run, leg, symlinks=True)
    overlay = write_overlay(leg / "torchrun.yaml", {"launch": {"always_torchrun": True}})
    snakemake(leg, [*configfiles, overlay], "--forcerun", "pretrain", "--until", "pretrain", cores=cores)
    log = (leg / "logs/pretrain.log").read_text()
    metrics = "results/pretrain/metrics.jsonl"
    loss, ref = first_step(leg / metrics)["total_loss"], first_step(run / metrics)["total_loss"]
    close = loss is not None and ref is not None and math.isclose(loss, ref, rel_tol=FIRST_LOSS_RTOL)
    record = json.loads((leg / "results/pretrain/encoder.safetensors.provenance.json").read_text())
    backend = next((line.rsplit("backend ", 1)[1] for line in log.splitlines() if "process group:" in line), None)
    expected = "nccl" if record["settings"]["pretrain"]["device"] == "cuda" else "gloo"
    return [
        check("torchrun: a process group at world size 1", backend == expected, f"backend {backend}"),
        check("torchrun: provenance says torchrun", record["settings"].get("torchrun") is True),
        check("torchrun: first loss finite and close to the plain run's", close, f"{loss} vs {ref}"),
        *compare_weights(run, leg),
    ]


def workflow_check(
    work: Path, configfiles: Sequence[Path], device: str, *, cores: int, reference: Path | None = None
) -> dict[str, Any]:
    """The CPU run (or ``reference``, a finished one), the device run, the torchrun leg; their checks."""
    if reference is None:
        reference = work / "reference_cpu"
        reference.mkdir(parents=True, exist_ok=True)
        cpu = write_overlay(work / "reference_cpu.yaml", device_overlay("cpu"))
        snakemake(reference, [*configfiles, cpu], cores=cores)
    run = work / f"on_{device}"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(reference, run, symlinks=True)
    overlay = write_overlay(work / f"on_{device}.yaml", device_overlay(device))
    configs = [*configfiles, overlay]
    snakemake(run, configs, cores=cores)
    checks = [
        *compare_tables(reference, run),
        compare_embeddings(reference, run),
        *compare_weights(reference, run),
        *compare_provenance(reference, run, device),
        *torchrun_leg(run, configs, cores=cores),
    ]
    return {"device": device, "checks": checks, "passed": sum(c["ok"] for c in checks), "failed":
            [c["check"] for c in checks if not c["ok"]]}
