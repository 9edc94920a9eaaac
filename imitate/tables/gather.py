"""Long-format results tables (CSV + Markdown) gathered from per-method evaluation outputs.

The CSV holds one row per (dataset, task, fraction, method, experiment, seed, metric). The Markdown table
follows the paper's layout (Tables III to VII): methods as rows (an experiment's as "method [experiment]",
after the base run's), mean ± standard deviation over seeds;
on real data the paper's reported numbers are added as rows marked "(paper)".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from imitate.tables.paper import PAPER_METRIC, paper_values

CSV_COLUMNS = ("dataset", "task", "fraction", "method", "experiment", "seed", "metric", "value", "run_id",
               "checkpoint_sha256", "experiment_sha256")
TRAINED_TASKS = ("linear_classification", "finetune_classification", "segmentation", "detection")
# the metrics a trained task shows per fraction (classification: accuracy for multiclass sets, else macro AUC)
DENSE_METRICS = {"segmentation": ("dice",), "detection": ("map", "map_mgca")}
# f1/acc decide by the prompts; f1_best/acc_best at the F1-maximising threshold, the paper's (MedKLIP's)
ZERO_SHOT_METRICS = ("auc_macro", "f1_macro", "acc_macro", "f1_best_macro", "acc_best_macro")
TITLES = {
    "linear_classification": "Linear classification (frozen encoder), cf. Table III",
    "finetune_classification": "Fine-tuned classification, cf. Table IV",
    "segmentation": "Segmentation (U-Net decoder on the frozen encoder), Dice, cf. Table V",
    "detection": "Detection (YOLOv3 head on the frozen encoder), mAP over IoU 0.40:0.05:0.75, cf. Table V; "
                 "map counts images without a prediction as misses, map_mgca skips them as MGCA (and the paper) do",
    "zero_shot": "Zero-shot classification, cf. Table VI; f1/acc decide by the more similar prompt, f1_best/acc_best "
                 "at each label's F1-maximising threshold as MedKLIP's script (the paper's F1 and ACC)",
    "retrieval": "Image-to-text retrieval, cf. Table VII",
}
Column = tuple[str, str, str]  # (dataset, fraction, metric)


def gather(parts: Sequence[str | Path]) -> pa.Table:
    """Concatenate per-method result Parquet files into the CSV columns, in a fixed row order."""
    if not parts:
        raise ValueError("no result files to gather")
    table = pa.concat_tables([pq.read_table(p, columns=list(CSV_COLUMNS)) for p in parts])
    keys = [("dataset", "ascending"), ("task", "ascending"), ("metric", "ascending"), ("fraction", "ascending"),
            ("method", "ascending"), ("experiment", "ascending"), ("seed", "ascending")]
    return table.replace_schema_metadata(None).sort_by(keys)


def write_csv(table: pa.Table, path: str | Path) -> None:
    """Write ``table`` as CSV (header, one row per value)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="needed"))


def _fraction_order(fraction: str) -> float:
    return math.inf if fraction == "all" else float(fraction)


def table_columns(rows: Sequence[Mapping], task: str) -> list[Column]:
    """The table's columns: per dataset its headline metric per fraction, or its metrics."""
    columns: list[Column] = []
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        metrics = {r["metric"] for r in mine}
        if task in TRAINED_TASKS:
            shown = DENSE_METRICS.get(task) or (("acc",) if "acc" in metrics else ("auc_macro",))
            fractions = sorted({r["fraction"] for r in mine}, key=_fraction_order)
            columns += [(dataset, f, metric) for metric in shown if metric in metrics for f in fractions]
        elif task == "zero_shot":
            # multiclass sets (5x200) quote top-1 accuracy; binary/multi-label sets the mean per label
            wanted = ("auc_macro", "f1_macro", "acc", "f1_best_macro") if "acc" in metrics else ZERO_SHOT_METRICS
            columns += [(dataset, "all", m) for m in wanted if m in metrics]
        else:
            ks = sorted((m for m in metrics if m.startswith("precision@")), key=lambda m: int(m.split("@")[1]))
            columns += [(dataset, "all", m) for m in ks]
    return columns


def _header(column: Column, task: str) -> str:
    dataset, fraction, metric = column
    return f"{dataset} {metric} {fraction}%" if task in TRAINED_TASKS else f"{dataset} {metric}"


def mean_std_cell(values: Sequence[float | None], n_seeds: int | None = None) -> str:
    """Mean ± standard deviation × 100 of the finite values ("–" if none); with ``n_seeds``, a cell that
    averaged fewer values says how many."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "–"
    text = f"{100 * statistics.fmean(finite):.2f}"
    if len(finite) > 1:
        text += f" ± {100 * statistics.stdev(finite):.2f}"
    return text if n_seeds is None or len(finite) == n_seeds else f"{text} (n={len(finite)})"


def _paper_rows(columns: Sequence[Column], task: str, real: Mapping[str, str]) -> list[str]:
    """Rows of the paper's numbers for the columns whose dataset is real (``real``: dataset -> adapter)."""
    by_method: dict[str, dict[Column, float]] = {}
    for column in columns:
        dataset, fraction, metric = column
        if dataset not in real or PAPER_METRIC.get(task, metric) != metric:
            continue
        for method, values in paper_values(task, real[dataset]).items():
            value = values.get(fraction if task in TRAINED_TASKS else metric)
            if value is not None:
                by_method.setdefault(method, {})[column] = value
    return [
        f"| {method} (paper) | " + " | ".join(f"{cells[c]:.2f}" if c in cells else "–" for c in columns) + " |"
        for method, cells in by_method.items()
    ]


def row_name(row: Mapping) -> str:
    """A table row's name: the method, and the experiment when it is not the base run."""
    return row["method"] if row["experiment"] == "base" else f"{row['method']} [{row['experiment']}]"


def markdown(table: pa.Table, task: str, real: Mapping[str, str] | None = None) -> str:
    """A paper-style Markdown table of ``task``: methods as rows, mean ± std over seeds (× 100).

    A cell that averaged fewer seeds than its row ran (a seed gave NaN) says how many, as
    :func:`mean_std_cell` does for the ablation tables. ``real`` maps the datasets that hold real data to
    their adapter; for those, the paper's reported numbers are added as rows.
    """
    rows = table.to_pylist()
    columns = table_columns(rows, task)
    cell: dict[tuple[str, Column], list[float]] = {}
    row_seeds: dict[str, set[int]] = {}  # a row's seeds: the pretrained zero-shot/retrieval rows run one
    for r in rows:
        cell.setdefault((row_name(r), (r["dataset"], r["fraction"], r["metric"])), []).append(r["value"])
        row_seeds.setdefault(row_name(r), set()).add(r["seed"])
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"**{TITLES[task]}** — × 100, mean ± standard deviation over seeds {', '.join(map(str, seeds))}",
        "",
        "| method | " + " | ".join(_header(c, task) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method in sorted(row_seeds, key=lambda name: ("[" in name, name)):
        texts = [mean_std_cell(cell.get((method, c), []), len(row_seeds[method])) for c in columns]
        lines.append(f"| {method} | " + " | ".join(texts) + " |")
    lines += _paper_rows(columns, task, real or {})
    return "\n".join(lines) + "\n"
