"""Per-job run time and memory for the report, from the TSV Snakemake's ``benchmark:`` writes for every job.

A benchmark file's path names its job (``results/benchmarks/<rule>[/<wildcards>...].tsv``); its columns are
Snakemake's: ``s`` (wall-clock seconds), ``h:m:s``, ``max_rss``/``max_vms``/``max_uss``/``max_pss`` (MB),
``io_in``/``io_out`` (MB), ``mean_load`` (CPU %) and ``cpu_time`` (seconds); a value psutil could not measure is
``NA`` or ``-``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imitate.report.html import esc, table

SHOWN = (("s", "wall s"), ("h:m:s", "h:m:s"), ("cpu_time", "CPU s"), ("mean_load", "mean load %"),
         ("max_rss", "max RSS MB"), ("max_uss", "max USS MB"), ("max_vms", "max VMS MB"), ("io_in", "read MB"),
         ("io_out", "written MB"))


@dataclass(frozen=True)
class Benchmark:
    """One job's benchmark: its name (the file's path under the benchmarks folder) and its first row."""

    job: str
    values: dict[str, str]

    def number(self, column: str) -> float:
        """A column as a number (NaN where it was not measured)."""
        try:
            return float(self.values.get(column, "nan"))
        except ValueError:
            return math.nan


def read_benchmark(path: Path, root: Path) -> Benchmark:
    """The benchmark TSV at ``path``, named by its path under ``root`` without ``.tsv``."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no header with an 's' column and a row)")
    return Benchmark(path.relative_to(root).with_suffix("").as_posix(), rows[0])


def read_benchmarks(root: Path) -> list[Benchmark]:
    """Every benchmark under ``root``, the longest job first."""
    found = [read_benchmark(p, root) for p in sorted(Path(root).rglob("*.tsv"))]
    return sorted(found, key=lambda b: (-b.number("s") if math.isfinite(b.number("s")) else math.inf, b.job))


def _total(benchmarks: Sequence[Benchmark], column: str) -> float:
    return sum(b.number(column) for b in benchmarks if math.isfinite(b.number(column)))


def benchmarks_body(root: Path) -> str:
    """The run-times page's HTML: a row per job, the longest first, and the totals."""
    benchmarks = read_benchmarks(Path(root))
    if not benchmarks:
        raise FileNotFoundError(f"{root}: no benchmark .tsv files (the report reads the jobs' benchmark: files)")
    rows = [[b.job, *(b.values.get(column, "–") for column, _ in SHOWN)] for b in benchmarks]
    peak = max((b for b in benchmarks if math.isfinite(b.number("max_rss"))), key=lambda b: b.number("max_rss"),
               default=None)
    summary = (f"{len(benchmarks)} jobs, {_total(benchmarks, 's'):.0f} s of wall-clock time and "
               f"{_total(benchmarks, 'cpu_time'):.0f} s of CPU time in all")
    if peak is not None:
        summary += f"; the largest resident memory was {peak.values['max_rss']} MB ({peak.job})"
    return (
        '<p class="note">Run time and memory of every job, from the file Snakemake\'s <code>benchmark:</code> '
        "writes for it under <code>results/benchmarks/</code> (the path names the rule and wildcards). Wall time "
        "includes waiting for a core; memory is the peak over the job's processes. The job that writes "
        f"this page is not listed. <strong>{esc(summary)}.</strong></p>\n"
        + table(["job", *(title for _, title in SHOWN)], rows, numeric=range(1, len(SHOWN) + 1))
    )
