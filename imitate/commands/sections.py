"""imitate sections: MIMIC-CXR report tree (or a table source's report texts) -> sections.parquet + rejects.parquet."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imitate.provenance import stage_run
from imitate.sections.extract import extract_sections, write_sections
from imitate.sections.parser import MODES
from imitate.sections.texts import section_texts

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate sections``."""
    reports = parser.add_mutually_exclusive_group(required=True)
    reports.add_argument("reports_root", type=Path, nargs="?",
                         help="the files/ tree holding pXX/pXXXXXXXX/sXXXXXXXX.txt")
    reports.add_argument("--texts", type=Path, default=None,
                         help="instead of a tree: the reports.parquet of imitate source-table (a text per study)")
    parser.add_argument("--out", type=Path, required=True, help="sections Parquet to write")
    parser.add_argument("--rejects", type=Path, required=True, help="rejects Parquet to write")
    parser.add_argument("--mode", choices=MODES, default="reference",
                        help="reference: exactly the MIT-LCP parser; corrected: its quirks fixed")
    parser.add_argument("--workers", type=int, default=1, help="parsing processes")
    parser.add_argument("--overrides", type=Path, default=None,
                        help="CSV study_id,findings,impression used instead of parsing those studies")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the sections stage."""
    inputs = {"reports": args.texts or args.reports_root}
    if args.overrides is not None:
        inputs["overrides"] = args.overrides
    settings = {"mode": args.mode, "overrides": str(args.overrides) if args.overrides else None}
    with stage_run(
        "sections", inputs=inputs, settings=settings, outputs=[args.out, args.rejects], run_id=args.run_id
    ) as run:
        if args.texts is not None:
            sections, rejects = section_texts(args.texts, mode=args.mode, overrides=args.overrides)
        else:
            sections, rejects = extract_sections(
                args.reports_root, mode=args.mode, workers=args.workers, overrides=args.overrides
            )
        counts = write_sections(sections, rejects, args.out, args.rejects, run.parquet_metadata())
    log.info("wrote %d sections to %s and %d rejects to %s",
             counts["sections"], args.out, counts["rejects"], args.rejects)
    return 0
