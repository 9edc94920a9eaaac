"""imitate ablation: one ablation table (experiments as rows) as CSV, Markdown and a plot, with provenance."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.commands.tables import dataset_adapter
from imitate.provenance import lineage, stage_run
from imitate.tables.ablation import ablation_markdown, ablation_plot, ablation_rows, trainable_millions
from imitate.tables.gather import write_csv

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate ablation``."""
    parser.add_argument("parts", nargs="+", help="evaluation result Parquet files of the table's experiments")
    parser.add_argument("--spec", required=True,
                        help="JSON: title, paper, method, plot, rows [{experiment, label, x}], "
                             "columns [{task, dataset, fraction, metric}] (see imitate.tables.ablation)")
    parser.add_argument("--real-datasets", type=dataset_adapter, nargs="*", default=[], metavar="DATASET=ADAPTER",
                        help="datasets holding real data: the paper's numbers are shown beside them")
    parser.add_argument("--cards", nargs="*", default=[], metavar="EXPERIMENT=MODEL_CARD",
                        help="each row's model_card.json, for a table with trainable_parameters (Table XI)")
    parser.add_argument("--csv", required=True, help="CSV to write (one row per experiment, column and seed)")
    parser.add_argument("--md", required=True, help="Markdown table to write")
    parser.add_argument("--png", required=True, help="plot to write")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Write the table; its provenance record holds every experiment's lineage, down to the raw data."""
    spec = json.loads(args.spec)
    real = dict(args.real_datasets)
    cards = dict(card.split("=", 1) for card in args.cards)
    inputs = {str(Path(p).with_suffix("")): p for p in [*args.parts, *cards.values()]}
    with stage_run("ablation", inputs=inputs, settings={"spec": spec, "real_datasets": real},
                   outputs=[args.csv, args.md, args.png], run_id=args.run_id) as run:
        run.stable["lineage"] = [lineage(p) for p in args.parts]
        table = ablation_rows(args.parts, spec)
        write_csv(table, args.csv)
        millions = {name: trainable_millions(json.loads(Path(card).read_text())) for name, card in cards.items()}
        Path(args.md).write_text(ablation_markdown(table, spec, real, millions or None))
        ablation_plot(table, spec, args.png)
    log.info("%s: %d rows, %d experiments", args.csv, table.num_rows, len(spec["rows"]))
    return 0
