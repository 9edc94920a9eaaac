"""imitate export: a pretraining run -> a Hugging Face-style model folder with its model card."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.models.files import ENCODER_FILE, MODEL_FILE
from imitate.pretrained.export import RUN_CARD, export_run, push_to_hub
from imitate.pretrained.layout import CARD, CONFIG, ENCODER_WEIGHTS, MODEL_WEIGHTS
from imitate.provenance import stage_run
from imitate.provenance.lineage import read_record

log = logging.getLogger(__name__)

DEFAULT_TABLES = Path("results/tables")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate export``."""
    parser.add_argument("run_dir", type=Path, help="the pretraining output folder (e.g. results/pretrain)")
    parser.add_argument("out", type=Path, help="the folder to write (model.safetensors, config.json, README.md, …)")
    parser.add_argument("--tables", type=Path, default=None,
                        help=f"results tables to put in the card (default: {DEFAULT_TABLES} if it exists)")
    parser.add_argument("--prompts", type=json.loads, default=None,
                        help="JSON of evaluate.zero_shot ({templates, names}) the run used (default: the paper's)")
    parser.add_argument("--shards", type=Path, default=None,
                        help="the shard manifest pretraining read, if it moved (default: the recorded path)")
    parser.add_argument("--push-to-hub", metavar="REPO", default=None,
                        help="then upload the folder to this private Hugging Face repository (needs a token)")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Write the folder; upload it only when --push-to-hub is given."""
    tables = args.tables if args.tables is not None else (DEFAULT_TABLES if DEFAULT_TABLES.is_dir() else None)
    inputs = {name: args.run_dir / name for name in (MODEL_FILE, ENCODER_FILE, RUN_CARD)}
    if tables is not None:
        inputs |= {f"tables/{p.name}": p for p in sorted(tables.glob("*.csv")) + sorted(tables.glob("*.md"))}
    record = read_record(inputs[MODEL_FILE])
    shards = args.shards or (Path(record["inputs"]["shards"]["path"]) if record else None)
    if shards is not None:
        inputs["shards"] = shards
    outputs = [args.out / name for name in (ENCODER_WEIGHTS, MODEL_WEIGHTS, CONFIG, CARD)]
    settings = {"prompts": args.prompts, "tables": str(tables) if tables else None}
    with stage_run("export", inputs=inputs, settings=settings, outputs=outputs, run_id=args.run_id):
        exported = export_run(args.run_dir, args.out, tables_dir=tables, prompts=args.prompts,
                              shards_manifest=args.shards)
    print(f"{exported.folder}: {', '.join(p.name for p in exported.files)}; "
          f"results: {', '.join(exported.tables) or 'none'}")
    if args.push_to_hub:
        print(f"uploaded to {push_to_hub(exported.folder, args.push_to_hub)} (private)")
    return 0
