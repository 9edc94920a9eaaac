"""imitate manifest: metadata x split x sections -> images / studies / rejects Parquet + counts.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from imitate.manifest.build import TEXT_MODES, build_manifest, write_manifest
from imitate.provenance import stage_run

OUTPUTS = ("images.parquet", "studies.parquet", "rejects.parquet", "counts.json")


def _image_tree(value: str) -> dict[str, str]:
    """Parse ``DIR:EXT`` (e.g. ``mimic-cxr-jpg/2.0.0/files:.jpg``)."""
    directory, sep, ext = value.rpartition(":")
    if not sep or not directory or not ext:
        raise argparse.ArgumentTypeError(f"expected DIR:EXT, got {value!r}")
    return {"dir": directory, "ext": ext}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate manifest``."""
    parser.add_argument("--sections", type=Path, required=True, help="sections.parquet of the sections stage")
    parser.add_argument("--metadata", type=Path, required=True, help="mimic-cxr-2.0.0-metadata.csv.gz")
    parser.add_argument("--split", type=Path, required=True, help="mimic-cxr-2.0.0-split.csv.gz")
    parser.add_argument("--root", type=Path, required=True, help="directory the image trees are relative to")
    parser.add_argument("--image-tree", type=_image_tree, action="append", required=True, dest="image_trees",
                        metavar="DIR:EXT", help="image tree searched for <dicom_id><EXT>; repeat, first hit wins")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the manifest files go")
    parser.add_argument("--views", nargs="+", default=["PA", "AP"], help="ViewPosition values kept")
    parser.add_argument("--min-tokens", type=int, default=3, help="least tokens of Findings + Impression")
    parser.add_argument("--text-mode", choices=TEXT_MODES, default="hierarchical",
                        help="hierarchical: Findings and Impression apart; mgca: MGCA's single text")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def main(args: argparse.Namespace) -> int:
    """Run the manifest stage."""
    inputs = {"sections": args.sections, "metadata": args.metadata, "split": args.split}
    # a tree that does not exist holds no images; it is still named in the settings
    trees = [args.root / tree["dir"] for tree in args.image_trees]
    inputs.update({f"image_tree_{i}": tree for i, tree in enumerate(trees) if tree.is_dir()})
    settings = {
        "image_trees": args.image_trees,
        "views": list(args.views),
        "min_tokens": args.min_tokens,
        "text_mode": args.text_mode,
    }
    outputs = [args.out_dir / name for name in OUTPUTS]
    with stage_run("manifest", inputs=inputs, settings=settings, outputs=outputs, run_id=args.run_id) as run:
        result = build_manifest(
            sections=args.sections,
            metadata=args.metadata,
            split=args.split,
            root=args.root,
            image_trees=args.image_trees,
            views=args.views,
            min_tokens=args.min_tokens,
            text_mode=args.text_mode,
        )
        write_manifest(result, args.out_dir, run.parquet_metadata())
    return 0
