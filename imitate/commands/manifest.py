"""imitate manifest: metadata x split x sections -> images / studies / rejects Parquet + counts.json.

With a table source, ``--rows`` (its metadata.parquet, paths included) replaces --metadata, --split and
--image-tree, and ``--all-views`` keeps every view where the table has no view column.
"""

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
    parser.add_argument("--metadata", type=Path, default=None, help="mimic-cxr-2.0.0-metadata.csv.gz")
    parser.add_argument("--split", type=Path, default=None, help="mimic-cxr-2.0.0-split.csv.gz")
    parser.add_argument("--root", type=Path, required=True, help="directory the image trees are relative to")
    parser.add_argument("--image-tree", type=_image_tree, action="append", default=[], dest="image_trees",
                        metavar="DIR:EXT", help="image tree searched for <dicom_id><EXT>; repeat, first hit wins")
    parser.add_argument("--rows", type=Path, default=None,
                        help="a table source's metadata.parquet (imitate source-table) instead of the three above")
    parser.add_argument("--out-dir", type=Path, required=True, help="where the manifest files go")
    views = parser.add_mutually_exclusive_group()
    views.add_argument("--views", nargs="+", default=["PA", "AP"], help="ViewPosition values kept")
    views.add_argument("--all-views", action="store_true", help="keep every view (a table without a view column)")
    parser.add_argument("--min-tokens", type=int, default=3, help="least tokens of Findings + Impression")
    parser.add_argument("--text-mode", choices=TEXT_MODES, default="hierarchical",
                        help="hierarchical: Findings and Impression apart; mgca: MGCA's single text")
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def _check_sources(args: argparse.Namespace) -> None:
    if args.rows is None and not (args.metadata and args.split and args.image_trees):
        raise SystemExit("imitate manifest: give --metadata, --split and --image-tree, or --rows")
    if args.rows is not None and (args.metadata or args.split or args.image_trees):
        raise SystemExit("imitate manifest: --rows replaces --metadata, --split and --image-tree")


def main(args: argparse.Namespace) -> int:
    """Run the manifest stage."""
    _check_sources(args)
    views = None if args.all_views else list(args.views)
    if args.rows is not None:
        inputs = {"sections": args.sections, "rows": args.rows}
    else:
        inputs = {"sections": args.sections, "metadata": args.metadata, "split": args.split}
    # a tree that does not exist holds no images; it is still named in the settings
    trees = [args.root / tree["dir"] for tree in args.image_trees]
    inputs.update({f"image_tree_{i}": tree for i, tree in enumerate(trees) if tree.is_dir()})
    settings = {
        "image_trees": args.image_trees,
        "views": views,
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
            rows=args.rows,
            views=views,
            min_tokens=args.min_tokens,
            text_mode=args.text_mode,
        )
        write_manifest(result, args.out_dir, run.parquet_metadata())
    return 0
