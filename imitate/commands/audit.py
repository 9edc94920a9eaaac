"""imitate audit: re-hash every recorded input and output and list each mismatch."""

from __future__ import annotations

import argparse
import logging
import sys

from imitate.provenance.audit import KINDS, audit

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate audit``."""
    parser.add_argument("root", nargs="?", default="results", help="results tree to audit (default: results)")


def main(args: argparse.Namespace) -> int:
    """Print one line per mismatch; exit 1 if there is any. Run it from the workflow's directory."""
    findings = audit(args.root)
    for f in findings:
        print(f"{f.kind}\t{f.path}\t{f.detail}\t(record {f.record})")
    if findings:
        kinds = sorted({f.kind for f in findings})
        print(f"{len(findings)} mismatch(es): " + "; ".join(f"{k}: {KINDS[k]}" for k in kinds), file=sys.stderr)
        return 1
    log.info("audit of %s: every recorded input and output matches its record", args.root)
    return 0
