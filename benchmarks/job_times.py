"""Per-job and per-stage wall time and peak memory of a workflow run, from its ``benchmark:`` files.

Every rule writes ``results/benchmarks/<the path of its log>.tsv`` (Snakemake's benchmark format: ``s``,
``max_rss`` in MB, ...). This prints one Markdown table of the stages (the first path component, e.g.
``evaluate/segmentation``), with the job count, summed job time and the longest job, then the ten longest
jobs. Summed job time is CPU-side work, not wall time: jobs run side by side.

    python benchmarks/job_times.py results/benchmarks
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def read_benchmarks(root: Path) -> dict[str, tuple[float, float]]:
    """``{job: (seconds, max_rss_mb)}`` for every ``*.tsv`` under ``root`` (job = path without ``.tsv``)."""
    jobs = {}
    for path in sorted(root.rglob("*.tsv")):
        with path.open(newline="") as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        rss = row.get("max_rss", "NA")
        jobs[path.relative_to(root).with_suffix("").as_posix()] = (float(row["s"]), float(rss) if rss != "NA" else 0.0)
    if not jobs:
        raise SystemExit(f"no benchmark files under {root}")
    return jobs


def stage_of(job: str) -> str:
    """``evaluate/segmentation/rsna/imitate`` -> ``evaluate/segmentation``; ``datasets/rsna/shards`` ->
    ``datasets/shards``; ``pretrain`` -> ``pretrain``."""
    parts = job.split("/")
    if parts[0] == "evaluate":
        return "/".join(parts[:2])
    if parts[0] == "datasets":
        return f"datasets/{parts[-1]}"
    return parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the run's results/benchmarks directory")
    args = parser.parse_args()
    jobs = read_benchmarks(args.root)
    stages: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    for job, (seconds, rss) in jobs.items():
        stages[stage_of(job)].append((job, seconds, rss))
    print("| stage | jobs | job time (s) | longest job (s) | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for stage, rows in sorted(stages.items(), key=lambda item: -sum(r[1] for r in item[1])):
        print(f"| {stage} | {len(rows)} | {sum(r[1] for r in rows):.0f} | {max(r[1] for r in rows):.0f} "
              f"| {max(r[2] for r in rows):.0f} |")
    print(f"\nall jobs: {len(jobs)}, {sum(s for s, _ in jobs.values()):.0f} s of job time\n")
    print("| longest jobs | s |\n|---|---:|")
    for job, (seconds, _) in sorted(jobs.items(), key=lambda item: -item[1][0])[:10]:
        print(f"| {job} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
