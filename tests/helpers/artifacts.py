"""Whether two runs of the tiny workflow wrote the same files under ``results/``, wall-clock facts aside.

Every file must have the same bytes, except what records time by design: the benchmark TSVs and the
report's page of them, the DuckDB provenance catalog (it indexes the sidecars' times), the ``images_per_s``
and ``seconds`` fields of the pretraining metrics log, the run times on the report's provenance page, and
in the provenance sidecars the run's start and end and the recorded digest and size of that log and of
``checkpoint.pt``. ``checkpoint.pt`` is compared by content: after a resume
its pickle memoises other string objects, so the same state can have other bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

TIMED = ("results/benchmarks/", "results/provenance.duckdb", "results/report/benchmarks.html")
PROVENANCE_PAGE = "results/report/provenance.html"
TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
METRICS = "results/pretrain/metrics.jsonl"
TIMINGS = ("images_per_s", "seconds")  # the metrics log's wall-clock fields
CHECKPOINT = "results/pretrain/checkpoint.pt"
SIDECAR = ".provenance.json"
RUN_TIMES = ("started", "ended")


def _files(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in (run / "results").rglob("*") if p.is_file()}


def _metrics(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in path.read_text().splitlines()]


def _equal(a: Any, b: Any) -> bool:
    """Nested dicts, lists and tensors equal in every element (tensors in dtype, shape and value)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _sidecar(path: Path) -> Any:
    """A provenance sidecar without the run's times and the digests of the metrics log and checkpoint."""

    def strip(value: Any) -> Any:
        if isinstance(value, list):
            return [strip(item) for item in value]
        if not isinstance(value, dict):
            return value
        timed = value.get("path") in (METRICS, CHECKPOINT)
        return {k: strip(v) for k, v in value.items() if not (timed and k in ("sha256", "bytes"))}

    record = json.loads(path.read_text())
    record["run"] = {k: v for k, v in record["run"].items() if k not in RUN_TIMES}
    return strip(record)


def _same(first: Path, second: Path, name: str) -> bool:
    if first.read_bytes() == second.read_bytes():
        return True
    if name == METRICS:
        return _metrics(first) == _metrics(second)
    if name == CHECKPOINT:
        return _equal(*(torch.load(p, map_location="cpu", weights_only=True) for p in (first, second)))
    if name.endswith(SIDECAR):
        return _sidecar(first) == _sidecar(second)
    if name == PROVENANCE_PAGE:
        return TIMESTAMP.sub(b"<time>", first.read_bytes()) == TIMESTAMP.sub(b"<time>", second.read_bytes())
    return False


def artifact_differences(first: Path, second: Path) -> list[str]:
    """What differs between the ``results/`` of two workdirs beyond wall-clock facts; empty when nothing."""
    names_first, names_second = _files(first), _files(second)
    differences = [f"only in {first}: {name}" for name in sorted(names_first - names_second)]
    differences += [f"only in {second}: {name}" for name in sorted(names_second - names_first)]
    for name in sorted(names_first & names_second):
        if not name.startswith(TIMED) and not _same(first / name, second / name, name):
            differences.append(name)
    return differences
