"""``imitate <stage>``: one subcommand per pipeline stage.

Each stage lives in ``imitate.commands.<module>`` and exposes ``add_arguments(parser)`` and
``main(args) -> int``. Only the module of the stage being run is imported, so a light stage never
pays for torch or transformers.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from imitate import __version__

# subcommand -> (module under imitate.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("demo_data", "write a synthetic MIMIC-CXR (images, reports, metadata/split/label CSVs) for the demo"),
    "source-table": ("source_table", "check a lab's table of images and reports into the sections and manifest inputs"),
    "sections": ("sections", "split every report into Findings / Impression (MIT-LCP parser) into sections.parquet"),
    "manifest": ("manifest", "join metadata (frontal views), the official split and report sections into a manifest"),
    "shards": ("shards", "decode, resize and pack the manifest's images into deterministic WebDataset shards"),
    "embed": ("embed", "embed Findings and Impression with a frozen text encoder into a Parquet store"),
    "embed-map": ("embed_map", "draw the t-SNE map of Findings vs Impression embeddings (the paper's Fig. 3)"),
    "pretrain": ("pretrain", "pretrain the IMITATE model and export its vision encoder"),
    "export": ("export", "write the pretrained model as a Hugging Face-style folder with its model card"),
    "classify": ("classify", "zero-shot: per-image probabilities of labels from an exported model"),
    "loss-curve": ("loss_curve", "plot the pretraining loss terms per step and the validation loss per epoch"),
    "dataset-demo": ("dataset_demo", "write a synthetic copy of a downstream dataset's raw files (real format)"),
    "dataset": ("dataset", "read a downstream dataset via its adapter; freeze splits (by patient) and subsets"),
    "evaluate": ("evaluate", "evaluate one method on one downstream task and dataset, over all seeds"),
    "tables": ("tables", "gather evaluation results into results/tables/<task>.csv and .md with provenance"),
    "report-page": ("report_page", "write a page of the report: results, stage counts, provenance or run times"),
    "ablation": ("ablation", "write one ablation table (experiments as rows) as CSV, Markdown and a plot"),
    "provenance": ("provenance", "print the lineage of an artifact down to the raw inputs, with hashes"),
    "audit": ("audit", "re-hash every recorded input and output; list mismatches (exit 1 if any)"),
    "catalog": ("catalog", "rebuild the DuckDB catalog of every provenance record (artifacts, edges)"),
    "preflight": ("preflight", "check a config's raw files, headers, encoder, weights, device and disk before a run"),
}


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the arguments of ``stage`` (if given) are registered in full."""
    parser = argparse.ArgumentParser(prog="imitate", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"imitate {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text.replace("%%", "%"))
        if name == stage:
            module = importlib.import_module(f"imitate.commands.{module_name}")
            module.add_arguments(command)
            command.set_defaults(func=module.main)
    return parser


def _stage(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if arg in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen stage; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_stage(argv)).parse_args(argv)
    # outputs derive from credentialed data (MIMIC data-use agreement): never readable by "other"
    os.umask(os.umask(0o027) | 0o027)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
