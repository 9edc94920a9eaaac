"""imitate shards: image manifest -> deterministic WebDataset shards + shard manifest + rejects."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from imitate.images.resize import RESIZE_MODES
from imitate.provenance import stage_run
from imitate.shards.writer import IMAGE_FORMATS, write_shards

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate shards``."""
    parser.add_argument("manifest", help="Parquet or CSV with at least key, path (relative to --root)")
    parser.add_argument("--root", required=True, help="directory the manifest's paths are relative to")
    parser.add_argument("--out", required=True, help="output directory for shards and manifests")
    parser.add_argument("--image-size", type=int, default=256, help="output size (see --resize)")
    parser.add_argument(
        "--resize", choices=RESIZE_MODES, default="square",
        help="square: stretch to size x size (the paper, the official code); shorter_side: keep the aspect, "
             "shorter side = size; pad: keep the aspect, longer side = size, zero-padded to a centred square (MGCA)",
    )
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--format", choices=sorted(IMAGE_FORMATS), default="png", help="png is lossless")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="with --format jpg")
    parser.add_argument(
        "--crop-nonzero", action="store_true",
        help="crop to the box of non-zero pixels and stretch it to 0..255 (the official preprocessing)",
    )
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (output does not change)")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the shards stage."""
    out = Path(args.out)
    # workers is left out of the recorded settings: it does not change a byte of the output.
    settings = {
        "image_size": args.image_size,
        "samples_per_shard": args.samples_per_shard,
        "format": args.format,
        "jpeg_quality": args.jpeg_quality,
        "crop_nonzero": args.crop_nonzero,
        "resize": args.resize,
    }
    with stage_run(
        "shards",
        inputs={"manifest": args.manifest, "images": args.root},
        settings=settings,
        outputs=[out / "manifest.parquet", out / "rejects.parquet"],
        run_id=args.run_id,
    ) as run:
        counts = write_shards(
            Path(args.manifest),
            Path(args.root),
            out,
            image_size=args.image_size,
            samples_per_shard=args.samples_per_shard,
            image_format=args.format,
            jpeg_quality=args.jpeg_quality,
            crop=args.crop_nonzero,
            resize=args.resize,
            workers=args.workers,
            provenance=run.parquet_metadata(),
        )
    log.info(
        "shards: %d images in = %d samples + %d rejected; %d shards (%d stale removed)",
        counts.images_in, counts.samples, counts.rejected, counts.shards, counts.stale_removed,
    )
    log.info("samples by split: %s; rejects by reason: %s", counts.samples_by_split, counts.rejects_by_reason)
    return 0
