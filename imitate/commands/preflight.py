"""imitate preflight: check a config's raw files, headers, encoder, weights, device and disk before a run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from imitate.config import ConfigError, load_run_config
from imitate.preflight.checks import CHECKS, FAIL, OK, SKIPPED, WARN, failed, format_table, format_tsv, run_preflight


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate preflight``."""
    parser.add_argument("--configfile", action="append", default=[], type=Path, metavar="FILE",
                        help="config file, as for snakemake (repeat to merge in order; none: the demo's config.yaml)")
    parser.add_argument("--skip", nargs="+", action="extend", default=[], choices=CHECKS, metavar="CHECK",
                        help=f"checks to leave out: {', '.join(CHECKS)}")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(),
                        help="where the workflow runs: config paths are relative to it, results/ goes in it "
                             "(default: here)")
    parser.add_argument("--out", type=Path, help="also write the table as TSV to this file")


def main(args: argparse.Namespace) -> int:
    """Run every check, print the table; exit status 1 if any check FAILs (warnings do not fail)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # never download, whatever the encoder check calls
    try:
        config = load_run_config(args.configfile)
    except ConfigError as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 1
    rows = run_preflight(config, args.workdir.resolve(), args.skip)
    print(format_table(rows))
    counts = {status: sum(row.status == status for row in rows) for status in (FAIL, WARN, OK, SKIPPED)}
    print("preflight: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(format_tsv(rows))
    return 1 if failed(rows) else 0
