"""Every data stage's counts for the report: what came in, what it kept, what it rejected and why, and whether
these add up (in = kept + rejected, rejected = the sum over reasons).

Read from the stages' own outputs under the results folder: ``counts.json`` where a stage writes one (manifest,
datasets); else the rows of its Parquet outputs, with what came in taken from its input (the report files the
sections stage's provenance record lists, the manifest's images for the shards, a dataset's records for its shards).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imitate.provenance.lineage import read_record
from imitate.report.html import esc, table

SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class StageCount:
    """One stage (on one dataset): the unit counted, how many came in, were kept and were rejected by reason."""

    stage: str
    dataset: str | None
    unit: str
    n_in: int
    kept: int
    rejected: int
    by_reason: Mapping[str, int]

    @property
    def adds_up(self) -> bool:
        """Whether in = kept + rejected and the reasons account for every reject."""
        return self.n_in == self.kept + self.rejected and self.rejected == sum(self.by_reason.values())


def _need(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (the report's counts read every data stage's outputs)")
    return path


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(_need(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def _rows(path: Path) -> int:
    return pq.ParquetFile(_need(path)).metadata.num_rows


def _reasons(path: Path) -> dict[str, int]:
    reasons = Counter(pq.read_table(_need(path), columns=["reason"]).column("reason").to_pylist())
    return dict(sorted(reasons.items()))


def _sections_reports(results: Path) -> dict[str, Any]:
    """The sections stage's recorded ``reports`` input: a tree (with ``n_files``) or a table source's texts."""
    return (read_record(_need(results / "sections" / "sections.parquet")) or {}).get("inputs", {}).get("reports", {})


def sections_count(results: Path) -> StageCount:
    """Report files in (the tree's file count in the stage's record; a table source: its studies), studies with
    sections kept, rejects."""
    sections = results / "sections" / "sections.parquet"
    reports = _sections_reports(results)
    rejects = results / "sections" / "rejects.parquet"
    reasons = _reasons(rejects)
    if reports.get("kind") == "file":  # a table source's reports.parquet, one text per study
        n_in = _rows(results.parent / reports["path"])
        return StageCount("sections", None, "table studies", n_in, _rows(sections), _rows(rejects), reasons)
    if "n_files" not in reports:
        raise ValueError(f"{sections}: its provenance record lists no report tree with a file count")
    return StageCount("sections", None, "report files", reports["n_files"], _rows(sections), _rows(rejects), reasons)


def source_count(results: Path) -> StageCount:
    """A table source's rows in, images kept and rejects by reason (from its counts.json)."""
    counts = _json(results / "source" / "counts.json")
    reasons = {k: v for k, v in counts["rejects_by_reason"].items() if v}
    return StageCount("source_table", None, "table rows", counts["rows"], counts["images"], counts["rejects"],
                      reasons)


def manifest_count(results: Path) -> StageCount:
    """Metadata rows in, frontal images kept, rejects by reason (from the manifest's counts.json)."""
    counts = _json(results / "manifest" / "counts.json")
    reasons = {k: v for k, v in counts["rejects_by_reason"].items() if v}
    return StageCount("manifest", None, "metadata rows", counts["metadata_rows"], counts["images"],
                      counts["rejects"], reasons)


def shards_count(stage: str, dataset: str | None, images: Path, shards: Path) -> StageCount:
    """The images a shards stage was given (rows of ``images``), those written to ``shards`` and its rejects."""
    return StageCount(stage, dataset, "images", _rows(images), _rows(shards / "manifest.parquet"),
                      _rows(shards / "rejects.parquet"), _reasons(shards / "rejects.parquet"))


def dataset_count(results: Path, dataset: str) -> StageCount:
    """A downstream dataset's records in, kept and rejected by reason (from its counts.json)."""
    counts = _json(results / "datasets" / dataset / "counts.json")
    return StageCount("dataset", dataset, "records", counts["input_records"], counts["records"], counts["rejected"],
                      counts["rejects_by_reason"])


def stage_counts(results: Path, datasets: Sequence[str]) -> list[StageCount]:
    """Every data stage in pipeline order: (a table source,) sections, manifest, shards, then each dataset and its
    shards."""
    table = [source_count(results)] if _sections_reports(results).get("kind") == "file" else []
    counts = [*table, sections_count(results), manifest_count(results),
              shards_count("shards", None, results / "manifest" / "images.parquet", results / "shards")]
    for name in datasets:
        folder = results / "datasets" / name
        counts += [dataset_count(results, name),
                   shards_count("dataset_shards", name, folder / "records.parquet", folder / "shards")]
    return counts


def _split_rows(results: Path, datasets: Sequence[str]) -> list[list[object]]:
    manifest = _json(results / "manifest" / "counts.json")
    rows: list[list[object]] = [
        ["MIMIC-CXR", unit, *(manifest[key].get(s, 0) for s in SPLITS), "–"]
        for unit, key in (("images", "images_by_split"), ("studies", "studies_by_split"))
    ]
    for name in datasets:
        counts = _json(results / "datasets" / name / "counts.json")
        subsets = ", ".join(f"{f}%: {n}" for f, n in counts["train_subsets"].items())
        rows.append([name, "records", *(counts["by_split"].get(s, 0) for s in SPLITS), subsets])
    return rows


def counts_body(results: Path, datasets: Sequence[str]) -> str:
    """The counts page's HTML: a row per stage and dataset, then the splits and training subsets."""
    counts = stage_counts(Path(results), datasets)
    rows = [[c.stage, c.dataset or "MIMIC-CXR", c.unit, c.n_in, c.kept, c.rejected,
             ", ".join(f"{reason}: {n}" for reason, n in c.by_reason.items()) or "–", "yes" if c.adds_up else "NO"]
            for c in counts]
    bad = [(i, 7) for i, c in enumerate(counts) if not c.adds_up]
    off = sum(not c.adds_up for c in counts)
    verdict = "Every stage adds up." if not off else f"{off} stage(s) do not add up: see the rows marked NO."
    return (
        '<p class="note">What each data stage read, kept and rejected (with the reasons, in each stage\'s '
        "<code>rejects.parquet</code>), from the stages' own outputs. A row adds up when in = kept + rejected "
        f"and the reasons account for every reject. <strong>{esc(verdict)}</strong></p>\n"
        + table(["stage", "data", "counted", "in", "kept", "rejected", "rejected by reason", "adds up"], rows,
                numeric=(3, 4, 5), bad=bad)
        + "<h2>Splits and training subsets</h2>\n"
        + table(["data", "counted", *SPLITS, "training subsets (label fraction: images)"],
                _split_rows(Path(results), datasets), numeric=(2, 3, 4))
    )
