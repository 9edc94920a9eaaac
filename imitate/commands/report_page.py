"""imitate report-page: a page of the Snakemake report (results, counts, provenance or run times) as one HTML file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imitate.report.benchmarks import benchmarks_body
from imitate.report.counts import counts_body
from imitate.report.html import write_page
from imitate.report.provenance import provenance_body
from imitate.report.results import results_body

log = logging.getLogger(__name__)

TITLES = {"results": "Results tables", "counts": "Counts and rejects of every data stage",
          "provenance": "Provenance of the results tables", "benchmarks": "Run time and memory of every job"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate report-page``: one subcommand per page."""
    pages = parser.add_subparsers(dest="page", required=True, metavar="PAGE")
    results = pages.add_parser("results", help=TITLES["results"])
    results.add_argument("tables", nargs="+", help="the results tables (Markdown) to show")
    counts = pages.add_parser("counts", help=TITLES["counts"])
    counts.add_argument("results", type=Path, help="the workflow's results folder")
    counts.add_argument("--datasets", nargs="*", default=[], help="the downstream datasets of the run")
    provenance = pages.add_parser("provenance", help=TITLES["provenance"])
    provenance.add_argument("tables", nargs="+", help="the results tables (CSV) whose records to show")
    benchmarks = pages.add_parser("benchmarks", help=TITLES["benchmarks"])
    benchmarks.add_argument("folder", type=Path, help="the folder of the jobs' benchmark TSV files")
    for page in (results, counts, provenance, benchmarks):
        page.add_argument("--out", type=Path, required=True, help="HTML file to write")


def main(args: argparse.Namespace) -> int:
    """Write the page."""
    if args.page == "results":
        body = results_body(args.tables)
    elif args.page == "counts":
        body = counts_body(args.results, args.datasets)
    elif args.page == "provenance":
        body = provenance_body(args.tables)
    else:
        body = benchmarks_body(args.folder)
    write_page(args.out, TITLES[args.page], body)
    log.info("%s: the %s page", args.out, args.page)
    return 0
