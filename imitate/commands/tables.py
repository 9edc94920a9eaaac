"""imitate tables: gather per-method results into a task's CSV and Markdown tables (and a plot) with provenance."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imitate.evaluate.tasks import TASKS
from imitate.provenance import lineage, stage_run
from imitate.tables.gather import gather, markdown, write_csv
from imitate.tables.plot import task_figure, write_png

log = logging.getLogger(__name__)


def dataset_adapter(text: str) -> tuple[str, str]:
    """A DATASET=ADAPTER argument as (dataset, adapter)."""
    name, sep, adapter = text.partition("=")
    if not sep or not name or not adapter:
        raise argparse.ArgumentTypeError(f"expected DATASET=ADAPTER, got {text!r}")
    return name, adapter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate tables``."""
    parser.add_argument("parts", nargs="+", help="per-method result Parquet files")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--real-datasets", type=dataset_adapter, nargs="*", default=[], metavar="DATASET=ADAPTER",
                        help="datasets holding real data: the paper's numbers are shown beside them")
    parser.add_argument("--csv", required=True, help="CSV table to write")
    parser.add_argument("--md", required=True, help="Markdown table to write")
    parser.add_argument("--png", default=None, help="plot to write: the metric against the label fraction")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Write the task's tables (and plot); each gets a provenance record holding the full lineage of its rows."""
    inputs = {str(Path(p).with_suffix("")): p for p in args.parts}
    real = dict(args.real_datasets)
    outputs = [args.csv, args.md, *([args.png] if args.png else [])]
    with stage_run("tables", inputs=inputs, settings={"task": args.task, "real_datasets": real},
                   outputs=outputs, run_id=args.run_id) as run:
        run.stable["lineage"] = [lineage(p) for p in args.parts]
        table = gather(args.parts)
        write_csv(table, args.csv)
        Path(args.md).write_text(markdown(table, args.task, real))
        if args.png:
            write_png(task_figure(table, args.task, real), args.png)
    log.info("%s: %d rows from %d result files", args.csv, table.num_rows, len(args.parts))
    return 0
