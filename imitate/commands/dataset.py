"""imitate dataset: a downstream dataset's raw files -> records, rejects, frozen splits and subsets."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.datasets import load_adapter
from imitate.datasets.dataset import (
    COUNTS_NAME,
    RECORDS_NAME,
    REJECTS_NAME,
    SUBSETS_NAME,
    prepare_dataset,
    write_prepared,
)
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate dataset``."""
    parser.add_argument("name", help="dataset name (as under datasets: in config.yaml)")
    parser.add_argument("--adapter", required=True, help="adapter module: imitate/datasets/<adapter>.py or dotted")
    parser.add_argument("--root", required=True, type=Path, help="directory holding the raw files and images")
    parser.add_argument("--options", default="{}", help="adapter options as JSON")
    parser.add_argument("--split", default=None, help='JSON {"validate": share or count, "test": ...}; '
                        "default: the adapter's")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 10.0, 100.0],
                        help="training subsets, percent of the train split")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split draw and the subsets")
    parser.add_argument("--subset-seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="draw the subsets once per evaluation seed (evaluate.subsets_per_seed); "
                        "default: one draw for every seed")
    parser.add_argument("--out-dir", required=True, type=Path, help="where records/rejects/subsets/counts go")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the dataset stage."""
    adapter = load_adapter(args.name, {"adapter": args.adapter, "root": args.root,
                                       "options": json.loads(args.options)})
    split_draw = json.loads(args.split) if args.split else None
    inputs = {role: args.root / rel for role, rel in adapter.raw_files().items()}
    settings = {"adapter": args.adapter, "options": adapter.options, "split": split_draw,
                "fractions": args.fractions}
    if args.subset_seeds is not None:
        settings["subset_seeds"] = args.subset_seeds
    outputs = [args.out_dir / name for name in (RECORDS_NAME, REJECTS_NAME, SUBSETS_NAME, COUNTS_NAME)]
    with stage_run("dataset", inputs=inputs, settings=settings, outputs=outputs, run_id=args.run_id,
                   seeds={"splits": args.seed}) as run:
        prepared = prepare_dataset(adapter, seed=args.seed, fractions=args.fractions, split_draw=split_draw,
                                   subset_seeds=args.subset_seeds)
        write_prepared(prepared, args.out_dir, run.parquet_metadata())
    log.info("%s: %s", args.name, json.dumps(prepared.counts(), sort_keys=True))
    return 0
