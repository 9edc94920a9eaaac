"""Long-format results tables (CSV + Markdown) gathered from per-method evaluation outputs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SORT_KEYS = [("dataset", "ascending"), ("task", "ascending"), ("metric", "ascending"),
             ("fraction", "ascending"), ("method", "ascending"), ("seed", "ascending")]
HEADLINE_METRIC = {"linear_classification": "auc_macro"}


def gather(parts: Sequence[str | Path]) -> pa.Table:
    """Concatenate per-method result Parquet files into one table in a fixed row order."""
    if not parts:
        raise ValueError("no result files to gather")
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    return table.replace_schema_metadata(None).sort_by(SORT_KEYS)


def write_csv(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` as CSV (header, one row per value)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


def _fmt(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown(table: pa.Table, task: str) -> str:
    """A paper-style Markdown table: methods as rows, one column per (dataset, fraction); mean over seeds."""
    metric = HEADLINE_METRIC[task]
    rows = table.filter(pc.equal(table["metric"], metric)).to_pylist()
    columns = sorted({(r["dataset"], r["fraction"]) for r in rows})
    methods = sorted({r["method"] for r in rows})
    cell: dict[tuple[str, tuple[str, float]], list[float]] = {}
    for r in rows:
        cell.setdefault((r["method"], (r["dataset"], r["fraction"])), []).append(r["value"])
    header = "| method | " + " | ".join(f"{d} {f:g}%" for d, f in columns) + " |"
    lines = [f"**{task}** — {metric} (×100), mean over seeds", "", header,
             "|---|" + "---:|" * len(columns)]
    for method in methods:
        values = [cell.get((method, c), []) for c in columns]
        lines.append(f"| {method} | " + " | ".join(_fmt(sum(v) / len(v)) if v else "–" for v in values) + " |")
    return "\n".join(lines) + "\n"
