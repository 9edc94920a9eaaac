"""imitate source-table: a lab's table of images and reports -> the sections and manifest stages' inputs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imitate.provenance import stage_run
from imitate.source.read import Columns
from imitate.source.table import OUTPUTS, SPLITS, build_source, write_source


def _columns(text: str) -> Columns:
    try:
        return Columns.from_mapping(json.loads(text))
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"--columns: {error}") from error


def _fractions(text: str) -> dict[str, float]:
    try:
        fractions = {split: float(value) for split, value in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise argparse.ArgumentTypeError(f"--split-fractions: expected a JSON object, got {text!r}") from error
    if set(fractions) - set(SPLITS) or any(v < 0 for v in fractions.values()) or sum(fractions.values()) <= 0:
        raise argparse.ArgumentTypeError(f"--split-fractions: expected shares of {SPLITS}, got {text!r}")
    return fractions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate source-table``."""
    parser.add_argument("table", type=Path, help="the CSV (.csv, .csv.gz) or Parquet table, one row per image")
    parser.add_argument("--root", type=Path, required=True, help="directory the image paths are relative to")
    parser.add_argument("--columns", type=_columns, required=True,
                        help='JSON {role: column}: path, patient, study, and report or findings/impression; '
                             'optional image, view, split')
    parser.add_argument("--seed", type=int, default=0, help="seed of the split drawn by patient (no split column)")
    parser.add_argument("--split-fractions", type=_fractions, default={"train": 0.7, "validate": 0.1, "test": 0.2},
                        help='JSON shares of the patients drawn into each split without a split column')
    parser.add_argument("--out-dir", type=Path, required=True, help="where " + ", ".join(OUTPUTS) + " go")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the source-table stage."""
    settings = {"columns": args.columns.mapped(), "split_fractions": args.split_fractions}
    outputs = [args.out_dir / name for name in OUTPUTS]
    with stage_run("source-table", inputs={"table": args.table}, settings=settings, outputs=outputs,
                   run_id=args.run_id, seeds={"split": args.seed}) as run:
        result = build_source(args.table, root=args.root, columns=args.columns, seed=args.seed,
                              split_fractions=args.split_fractions)
        write_source(result, args.out_dir, run.parquet_metadata())
    return 0
