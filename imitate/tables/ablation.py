"""Ablation tables: experiments as rows, one (task, dataset, fraction, metric) per column, in the layout of
the paper's Tables VIII-XIII, with a plot (Fig. 4: a setting against each column's metric, or a bar chart).

The table's spec comes from the ``ablations:`` block, resolved by the workflow::

    {"title": str, "paper": "VIII" | None, "method": "imitate", "plot": "pretrain.lambda" | None,
     "trainable_parameters": bool,
     "rows": [{"experiment": str, "label": str, "x": float | None}, ...],
     "columns": [{"task": str, "dataset": str, "fraction": float, "metric": str}, ...]}
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from imitate.tables.gather import mean_std_cell
from imitate.tables.paper import PAPER_TRAINABLE_MILLIONS, paper_ablation

READ_COLUMNS = ("experiment", "method", "task", "dataset", "fraction", "metric", "seed", "value", "run_id",
                "checkpoint_sha256", "experiment_sha256")
CSV_SCHEMA = pa.schema([
    ("experiment", pa.string()), ("label", pa.string()), ("x", pa.float64()), ("task", pa.string()),
    ("dataset", pa.string()), ("fraction", pa.string()), ("metric", pa.string()), ("seed", pa.int64()),
    ("value", pa.float64()), ("run_id", pa.string()), ("checkpoint_sha256", pa.string()),
    ("experiment_sha256", pa.string()),
])
Key = tuple[str, str, str, str]  # (task, dataset, fraction, metric)


def column_key(column: Mapping[str, Any]) -> Key:
    """A spec column as the (task, dataset, fraction, metric) its result rows carry."""
    return column["task"], column["dataset"], f"{float(column['fraction']):g}", column["metric"]


def header(column: Mapping[str, Any]) -> str:
    """A column's heading, e.g. ``chexpert auc_macro 1%``."""
    _, dataset, fraction, metric = column_key(column)
    return f"{dataset} {metric} {fraction}%"


def ablation_rows(parts: Sequence[str | Path], spec: Mapping[str, Any]) -> pa.Table:
    """The result rows of the spec's (experiment, column) cells from the evaluation files ``parts``.

    Raises ``ValueError`` naming the cell when an experiment has no result for a column (a metric name
    the task does not write, a fraction that was not evaluated).
    """
    rows_by_experiment = {row["experiment"]: row for row in spec["rows"]}
    wanted = {column_key(c) for c in spec["columns"]}
    found: list[dict[str, Any]] = []
    for part in parts:
        for r in pq.read_table(part, columns=list(READ_COLUMNS)).to_pylist():
            row = rows_by_experiment.get(r["experiment"])
            key = (r["task"], r["dataset"], r["fraction"], r["metric"])
            if row is None or r["method"] != spec["method"] or key not in wanted:
                continue
            found.append({**{k: r[k] for k in READ_COLUMNS if k != "method"}, "label": row["label"], "x": row.get("x")})
    have = {(r["experiment"], (r["task"], r["dataset"], r["fraction"], r["metric"])) for r in found}
    missing = [(e, header(c)) for e in rows_by_experiment for c in spec["columns"] if (e, column_key(c)) not in have]
    if missing:
        raise ValueError(f"ablation {spec['title']!r}: no results for {missing} in the {len(parts)} files given")
    order = {name: i for i, name in enumerate(rows_by_experiment)}
    columns = {key: i for i, key in enumerate(column_key(c) for c in spec["columns"])}
    found.sort(key=lambda r: (order[r["experiment"]], columns[(r["task"], r["dataset"], r["fraction"], r["metric"])],
                              r["seed"]))
    return pa.Table.from_pylist(found, schema=CSV_SCHEMA)


def _cells(table: pa.Table) -> dict[tuple[str, Key], list[float]]:
    cells: dict[tuple[str, Key], list[float]] = {}
    for r in table.to_pylist():
        key = (r["task"], r["dataset"], r["fraction"], r["metric"])
        cells.setdefault((r["experiment"], key), []).append(r["value"])
    return cells


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def trainable_millions(card: Mapping[str, Any]) -> float:
    """The trained parameters of a pretraining run (image and text side), in millions, from its model card."""
    counts = card.get("trainable_parameters")
    if not counts:
        raise ValueError("the model card has no trainable_parameters (written by imitate pretrain)")
    return (counts["image"] + counts["text"]) / 1e6


def _paper_lines(spec: Mapping[str, Any], real: Mapping[str, str]) -> list[str]:
    """The paper's rows for the spec's labels, on the columns whose dataset holds real data."""
    paper = paper_ablation(spec.get("paper") or "")
    lines = []
    for row in spec["rows"]:
        values = paper.get(row["label"])
        if not values:
            continue
        cells = [f"{PAPER_TRAINABLE_MILLIONS[row['label']]:.1f}"] if spec.get("trainable_parameters") else []
        for column in spec["columns"]:
            task, dataset, fraction, _ = column_key(column)
            value = values.get((task, real.get(dataset, ""), fraction))
            cells.append(f"{value:.1f}" if value is not None else "–")
        if any(cell != "–" for cell in cells):
            lines.append(f"| {row['label']} (paper) | " + " | ".join(cells) + " |")
    return lines


def ablation_markdown(table: pa.Table, spec: Mapping[str, Any], real: Mapping[str, str] | None = None,
                      millions: Mapping[str, float] | None = None) -> str:
    """The table in the paper's layout: one row per experiment, mean ± std over seeds (× 100).

    ``real`` maps the datasets holding real data to their adapter; with ``spec["paper"]`` set, the paper's
    numbers for the same rows follow ours, marked "(paper)". With ``spec["trainable_parameters"]`` the
    first column is each experiment's trained parameters in millions (``millions``, from its model card).
    """
    cells = _cells(table)
    seeds = sorted(set(table["seed"].to_pylist()))
    extra = spec.get("trainable_parameters")
    if extra and set(millions or {}) != {row["experiment"] for row in spec["rows"]}:
        raise ValueError(f"ablation {spec['title']!r}: trainable parameters given for {sorted(millions or {})}, "
                         f"the rows are {[row['experiment'] for row in spec['rows']]}")
    headers = [*(["trainable parameters (M)"] if extra else []), *(header(c) for c in spec["columns"])]
    lines = [
        f"**{spec['title']}** — {spec['method']}'s encoder per experiment, × 100, mean ± standard deviation over "
        f"seeds {', '.join(map(str, seeds))}",
        "",
        "| experiment | " + " | ".join(headers) + " |",
        "|---|" + "---:|" * len(headers),
    ]
    for row in spec["rows"]:
        values = [cells.get((row["experiment"], column_key(c)), []) for c in spec["columns"]]
        texts = [mean_std_cell(v, len(seeds)) for v in values]
        if extra:
            texts.insert(0, f"{millions[row['experiment']]:.1f}")
        lines.append(f"| {row['label']} | " + " | ".join(texts) + " |")
    lines += _paper_lines(spec, real or {})
    return "\n".join(lines) + "\n"


def ablation_plot(table: pa.Table, spec: Mapping[str, Any], out: str | Path) -> None:
    """One panel per column: its metric against ``spec["plot"]`` (Fig. 4), or one bar per experiment."""
    cells = _cells(table)
    columns = spec["columns"]
    fig = Figure(figsize=(3.6 * len(columns), 3.4), dpi=100)  # no pyplot: no global state, no display
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns, strict=True):
        stats = []
        for row in spec["rows"]:
            finite = _finite(cells.get((row["experiment"], column_key(column)), []))
            mean = 100 * statistics.fmean(finite) if finite else math.nan
            std = 100 * statistics.stdev(finite) if len(finite) > 1 else 0.0
            stats.append((row, mean, std))
        if spec.get("plot"):
            stats.sort(key=lambda s: s[0]["x"])
            ax.errorbar([s[0]["x"] for s in stats], [s[1] for s in stats], yerr=[s[2] for s in stats], fmt="o-",
                        capsize=3)
            ax.set_xlabel(spec["plot"])
        else:
            ax.bar(range(len(stats)), [s[1] for s in stats], yerr=[s[2] for s in stats], capsize=3,
                   color="tab:blue")
            ax.set_xticks(range(len(stats)), [s[0]["label"] for s in stats], rotation=45, ha="right", fontsize=8)
        ax.set_title(header(column), fontsize=9)
        ax.set_ylabel("× 100")
    fig.suptitle(spec["title"], fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
