"""A task's results as a plot for the report: each metric against the label fraction, methods as lines.

The trained tasks (Tables III-V) get a panel per dataset and metric, the label fractions on the x axis and one
line per method (an experiment's dashed), mean ± standard deviation over seeds × 100. Zero-shot and retrieval
use all labels: a panel per dataset with a group of bars per metric. On real data the paper's numbers are
hollow grey markers at the same places, for the same columns as the Markdown table's "(paper)" rows.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from imitate.tables.gather import TITLES, TRAINED_TASKS, Column, row_name, table_columns
from imitate.tables.paper import PAPER_METRIC, paper_values

PAPER_MARKERS = ("D", "s", "^", "v", "<", ">", "p", "h", "*", "X")
Cells = dict[tuple[str, Column], list[float]]


def mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    """Mean and standard deviation × 100 of the finite values (NaN mean if none, 0 spread for one)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return math.nan, 0.0
    return 100 * statistics.fmean(finite), 100 * statistics.stdev(finite) if len(finite) > 1 else 0.0


def _paper(task: str, dataset: str, metric: str | None, real: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The paper's values of one panel (method -> fraction or metric -> percent); none on demo data."""
    if dataset not in real or (metric is not None and PAPER_METRIC.get(task, metric) != metric):
        return {}
    return paper_values(task, real[dataset])


def _fraction_panel(ax: Axes, columns: Sequence[Column], cells: Cells, names: Sequence[str],
                    paper: Mapping[str, Mapping[str, float]]) -> None:
    """One dataset and metric: a line per method over the label fractions, the paper's as markers."""
    fractions = [fraction for _, fraction, _ in columns]
    x = list(range(len(fractions)))
    for i, name in enumerate(names):
        stats = [mean_std(cells.get((name, column), [])) for column in columns]
        if not all(math.isnan(mean) for mean, _ in stats):
            ax.errorbar(x, [s[0] for s in stats], yerr=[s[1] for s in stats], fmt="o--" if "[" in name else "o-",
                        capsize=3, color=f"C{i % 10}", label=name)
    for j, (method, values) in enumerate(paper.items()):
        shift = 0.04 * (j - (len(paper) - 1) / 2)  # side by side, so that equal numbers stay apart
        ax.plot([k + shift for k in x], [values.get(f, math.nan) for f in fractions], linestyle="none",
                color="0.35", mfc="none", marker=PAPER_MARKERS[j % len(PAPER_MARKERS)], label=f"{method} (paper)")
    ax.set_xticks(x, [f"{f}%" for f in fractions])
    ax.set_xlabel("labelled training data")


def _metric_panel(ax: Axes, columns: Sequence[Column], cells: Cells, names: Sequence[str],
                  paper: Mapping[str, Mapping[str, float]]) -> None:
    """One dataset that uses all labels: a group of bars per metric, a bar per method, the paper's as markers."""
    metrics = [metric for _, _, metric in columns]
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        stats = [mean_std(cells.get((name, column), [])) for column in columns]
        ax.bar([k - 0.4 + width * (i + 0.5) for k in range(len(metrics))], [s[0] for s in stats], width,
               yerr=[s[1] for s in stats], capsize=2, color=f"C{i % 10}", label=name)
    for j, (method, values) in enumerate(paper.items()):
        shift = 0.8 * ((j + 0.5) / len(paper) - 0.5)  # spread over the group of bars
        ax.plot([k + shift for k in range(len(metrics))], [values.get(m, math.nan) for m in metrics],
                linestyle="none", color="0.2", mfc="none", marker=PAPER_MARKERS[j % len(PAPER_MARKERS)],
                label=f"{method} (paper)")
    ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right", fontsize=8)


def task_figure(table: pa.Table, task: str, real: Mapping[str, str] | None = None) -> Figure:
    """The plot of a results table (the CSV's rows): a panel per dataset (and metric, for a trained task).

    ``real`` maps the datasets that hold real data to their adapter; on those the paper's numbers are drawn.
    """
    rows = table.to_pylist()
    columns = table_columns(rows, task)
    if not columns:
        raise ValueError(f"{task}: the table has no column to plot")
    names = sorted({row_name(r) for r in rows}, key=lambda name: ("[" in name, name))
    cells: Cells = {}
    for r in rows:
        cells.setdefault((row_name(r), (r["dataset"], r["fraction"], r["metric"])), []).append(r["value"])
    trained = task in TRAINED_TASKS
    panels = list(dict.fromkeys((dataset, metric if trained else None) for dataset, _, metric in columns))
    fig = Figure(figsize=(4.2 * len(panels) + 2.6, 4.2), dpi=100, layout="constrained")  # no pyplot: no global state
    for ax, (dataset, metric) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        mine = [c for c in columns if c[0] == dataset and (metric is None or c[2] == metric)]
        draw = _fraction_panel if trained else _metric_panel
        draw(ax, mine, cells, names, _paper(task, dataset, metric, real or {}))
        ax.set_title(f"{dataset} {metric}" if metric else dataset, fontsize=10)
        ax.set_ylabel("× 100")
    legend = {}
    for ax in fig.axes:
        legend.update({label: handle for handle, label in zip(*ax.get_legend_handles_labels(), strict=True)})
    labels = sorted(legend, key=lambda label: label.endswith("(paper)"))  # ours first, each group in its order
    fig.legend([legend[label] for label in labels], labels, loc="outside right upper", fontsize=8)
    fig.suptitle(textwrap.fill(TITLES[task], 110), fontsize=9)
    return fig


def write_png(fig: Figure, out: str | Path) -> None:
    """Save ``fig`` as PNG without the library's version in it (same bytes on every rerun)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
