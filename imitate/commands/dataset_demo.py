"""imitate dataset-demo: write a synthetic copy of a downstream dataset's raw files, in its real format."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate dataset-demo``."""
    parser.add_argument("name", help="dataset name (as under datasets: in config.yaml)")
    parser.add_argument("--adapter", required=True, help="adapter module: imitate/datasets/<adapter>.py or dotted")
    parser.add_argument("--root", required=True, type=Path, help="directory to write the raw files under")
    parser.add_argument("--options", default="{}", help="adapter options as JSON (file names, sizes)")
    parser.add_argument("--n-images", type=int, required=True, help="images to draw")
    parser.add_argument("--image-size", type=int, default=128, help="shorter side of the drawn films, pixels")
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    """Run the dataset-demo stage."""
    options = json.loads(args.options)
    adapter = load_adapter(args.name, {"adapter": args.adapter, "root": args.root, "options": options})
    spec = DemoSpec(n_images=args.n_images, seed=args.seed, image_size=args.image_size)
    outputs = [args.root / rel for rel in adapter.raw_files().values()]
    settings = {"adapter": args.adapter, "options": adapter.options, "n_images": args.n_images,
                "image_size": args.image_size}
    with stage_run("dataset-demo", inputs={}, settings=settings, outputs=outputs, seeds={"demo": args.seed}):
        adapter.write_demo(spec)
        missing = [str(p) for p in outputs if not p.is_file()]
        if missing:
            raise RuntimeError(f"{args.adapter}: write_demo did not write its raw files {missing}")
    log.info("%s: demo raw files written under %s", args.name, args.root)
    return 0
