"""Helpers shared by the benchmarks (run as scripts: ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import os
from pathlib import Path


def warm(root: Path) -> int:
    """Read every file once so that the timed runs find them in the page cache; returns the byte count."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), "rb") as fh:
                total += len(fh.read())
    return total


def machine() -> str:
    """CPU model and core count, for the results table."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"
