"""``imitate <stage>``: one subcommand per pipeline stage.

Each stage lives in ``imitate.commands.<module>`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from imitate import __version__

# subcommand name -> module under imitate.commands
COMMANDS: dict[str, str] = {
    "demo-data": "demo_data",
    "sections": "sections",
    "manifest": "manifest",
    "shards": "shards",
    "embed": "embed",
    "pretrain": "pretrain",
    "subsets": "subsets",
    "evaluate": "evaluate",
    "tables": "tables",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every stage registered."""
    parser = argparse.ArgumentParser(prog="imitate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imitate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"imitate.commands.{module_name}")
        stage = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(stage)
        stage.set_defaults(func=module.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen stage; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
