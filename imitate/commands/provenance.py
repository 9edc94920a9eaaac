"""imitate provenance: the lineage of an artifact down to the raw inputs, with hashes."""

from __future__ import annotations

import argparse
import json
import sys

from imitate.provenance.lineage import format_lineage, lineage, read_record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate provenance``."""
    parser.add_argument("artifact", help="a results table or any other recorded artifact")
    parser.add_argument("--json", action="store_true", help="print the lineage tree as JSON")


def main(args: argparse.Namespace) -> int:
    """Print the lineage of one artifact; exit 1 if it has no provenance record."""
    if read_record(args.artifact) is None:
        print(f"{args.artifact}: no provenance record (no sidecar, no Parquet metadata)", file=sys.stderr)
        return 1
    tree = lineage(args.artifact)
    print(json.dumps(tree, indent=2, sort_keys=True) if args.json else format_lineage(tree))
    return 0
