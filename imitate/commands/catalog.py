"""imitate catalog: build the DuckDB catalog (artifacts, edges) of every provenance record."""

from __future__ import annotations

import argparse
import logging

from imitate.provenance.catalog import build_catalog

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate catalog``."""
    parser.add_argument("root", nargs="?", default="results", help="results tree whose records to index")
    parser.add_argument("--out", default="results/provenance.duckdb", help="DuckDB file to (re)build")


def main(args: argparse.Namespace) -> int:
    """Rebuild the catalog."""
    n_artifacts, n_edges = build_catalog(args.root, args.out)
    log.info("catalog %s: %d artifacts, %d edges", args.out, n_artifacts, n_edges)
    return 0
