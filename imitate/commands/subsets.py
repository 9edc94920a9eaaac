"""imitate subsets: draw the frozen 1/10/100 % training subsets used by every method."""

from __future__ import annotations

import argparse
import logging

import pyarrow.compute as pc

from imitate.evaluate.linear_classification import build_subsets
from imitate.parquet import write_table
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate subsets``."""
    parser.add_argument("--shards", required=True, help="shard manifest.parquet (its train split is sampled)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 10.0, 100.0], help="percentages")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="subsets Parquet (fraction, key)")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the subsets stage."""
    settings = {"fractions": args.fractions, "seed": args.seed}
    with stage_run("subsets", inputs={"shards": args.shards}, settings=settings, outputs=[args.out],
                   run_id=args.run_id, seeds={"subsets": args.seed}):
        table = build_subsets(args.shards, args.fractions, args.seed)
        write_table(table, args.out)
    for fraction in args.fractions:
        n = pc.sum(pc.equal(table["fraction"], fraction)).as_py()
        log.info("subset %g%%: %d training images", fraction, n)
    return 0
