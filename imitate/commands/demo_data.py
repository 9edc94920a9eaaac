"""imitate demo-data: write the embedded synthetic MIMIC-CXR tree (real layout, drawn images)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.demo.exports import CHEXPERT, METADATA, SPLIT
from imitate.demo.label_table import LABEL_TABLE, write_label_table
from imitate.demo.mimic import SPLITS, write_demo_mimic
from imitate.demo.report_table import REPORT_TABLE, write_report_table
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def _split_fractions(text: str) -> dict[str, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {text!r}") from error
    if len(values) != len(SPLITS):
        raise argparse.ArgumentTypeError(f"expected {len(SPLITS)} shares ({','.join(SPLITS)}), got {text!r}")
    return dict(zip(SPLITS, values, strict=True))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate demo-data``; defaults match config.yaml's ``demo:`` block."""
    parser.add_argument("out", type=Path, help="the physionet.org/files directory to create")
    parser.add_argument("--n-studies", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=384, help="shorter side of the drawn images, pixels")
    parser.add_argument("--dicom-fraction", type=float, default=0.15, help="share of images written only as DICOM")
    parser.add_argument(
        "--split-fractions",
        type=_split_fractions,
        default=dict(zip(SPLITS, (0.7, 0.1, 0.2), strict=True)),
        help="train,validate,test shares of the studies (split by subject), default 0.7,0.1,0.2",
    )
    parser.add_argument("--workers", type=int, default=1, help="drawing processes (the output does not depend on it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT")


# the CSVs that carry the provenance record of the generated tree
RECORDED = (METADATA, SPLIT, CHEXPERT)


def main(args: argparse.Namespace) -> int:
    """Run the demo-data stage."""
    settings = {
        "n_studies": args.n_studies,
        "seed": args.seed,
        "image_size": args.image_size,
        "dicom_fraction": args.dicom_fraction,
        "split_fractions": args.split_fractions,
    }
    outputs = [args.out / p for p in (*RECORDED, LABEL_TABLE, REPORT_TABLE)]
    with stage_run("demo-data", inputs={}, settings=settings, outputs=outputs, seeds={"demo": args.seed}):
        counts = write_demo_mimic(args.out, workers=args.workers, overwrite=args.overwrite, **settings)
        write_label_table(args.out)
        write_report_table(args.out)
    log.info("demo-data counts: %s", json.dumps(counts.as_dict(), sort_keys=True))
    return 0
