"""imitate loss-curve: plot the pretraining losses from metrics.jsonl."""

from __future__ import annotations

import argparse

from imitate.provenance import stage_run
from imitate.train.loss_curve import plot_loss_curve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate loss-curve``."""
    parser.add_argument("metrics", help="metrics.jsonl written by `imitate pretrain`")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Draw the loss curve."""
    with stage_run("loss-curve", inputs={"metrics": args.metrics}, settings={}, outputs=[args.out],
                   run_id=args.run_id):
        plot_loss_curve(args.metrics, args.out)
    return 0
