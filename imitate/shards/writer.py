"""Image manifest -> deterministic WebDataset shards, a shard manifest and rejects.

The layout comes from :mod:`imitate.shards.plan` before any pixel is read. An image that then fails
to decode leaves a gap in its own shard instead of shifting samples into other shards.

Each sample is ``{key}.json`` (whitelisted identifiers and geometry only: no other DICOM header field
can reach a shard) and ``{key}.png`` (or ``.jpg``). Geometry: ``crop_box`` ``[x0, y0, x1, y1]`` is the
part of the original image the shard image shows (the whole image unless ``crop_nonzero``), resized to
``width`` x ``height`` (:mod:`imitate.images.resize`), so a point ``(x, y)`` of the shard image is ``(x0 +
x * (x1 - x0) / width, y0 + y * (y1 - y0) / height)`` in the original, whose size is ``orig_width`` x
``orig_height`` and whose pixel spacing (mm, row then column) is ``pixel_spacing`` when the DICOM states
one. Under ``pad`` the box reaches past the original's borders by the zero padding, so its corners are
fractional; the other modes keep integer boxes.

Tars are written with the ``tarfile`` module rather than ``webdataset.TarWriter`` so that every header
field (mtime, uid, gid, uname, gname, mode, format) is pinned here, the bytes can be hashed before they
are published, and each shard goes to a hidden temporary name renamed only once complete: a rerun is
byte-identical and a crash never leaves a half-written ``*.tar``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

import pyarrow as pa

from imitate.images.pixels import ImageError
from imitate.images.prepare import IMAGE_FORMATS, encode_image, prepare_image
from imitate.images.resize import RESIZE_MODES
from imitate.io.parquet import write_table
from imitate.io.progress import ProgressLog
from imitate.shards.plan import OPTIONAL_COLUMNS, ShardPlan, load_rows, plan_shards

log = logging.getLogger(__name__)

TAR_MTIME = 946_684_800  # 2000-01-01T00:00:00Z: fixed so that reruns give the same bytes
TAR_MODE = 0o444
SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
METADATA_KEY = "imitate.shards"

GEOMETRY_COLUMNS: dict[str, pa.DataType] = {
    "width": pa.int64(),
    "height": pa.int64(),
    "orig_width": pa.int64(),
    "orig_height": pa.int64(),
    "crop_x0": pa.float64(),
    "crop_y0": pa.float64(),
    "crop_x1": pa.float64(),
    "crop_y1": pa.float64(),
    "pixel_spacing_row": pa.float64(),
    "pixel_spacing_col": pa.float64(),
}
MANIFEST_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("key", pa.string()),
        *OPTIONAL_COLUMNS.items(),
        *GEOMETRY_COLUMNS.items(),
        ("shard_sha256", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema([("key", pa.string()), ("path", pa.string()), ("reason", pa.string())])


@dataclass(frozen=True)
class ShardCounts:
    """What one run of :func:`write_shards` did; ``images_in == samples + rejected``."""

    images_in: int
    samples: int
    rejected: int
    shards: int
    stale_removed: int
    samples_by_split: dict[str, int] = field(default_factory=dict)
    rejects_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    width: int
    height: int
    orig_width: int
    orig_height: int
    crop_box: tuple[float, float, float, float]
    pixel_spacing: tuple[float, float] | None


def write_shards(
    manifest: pa.Table | str | Path,
    root: str | Path,
    out_dir: str | Path,
    *,
    image_size: int,
    samples_per_shard: int = 1000,
    image_format: str = "png",
    jpeg_quality: int = 95,
    crop: bool = False,
    resize: str = "square",
    workers: int = 1,
    provenance: Mapping[str, str] | None = None,
) -> ShardCounts:
    """Write ``out_dir/{split}-{NNNNNN}.tar`` shards, ``manifest.parquet`` and ``rejects.parquet``.

    ``manifest`` (a table, or a Parquet / CSV file) needs ``key`` and ``path`` (relative to ``root``) and
    may have ``split, dicom_id, study_id, subject_id, view``. Images are decoded, cropped to their
    non-zero box when ``crop`` (:func:`imitate.images.crop.crop_nonzero`) and resized to ``image_size``
    in geometry ``resize`` (:func:`imitate.images.resize.resize_image`) by ``workers`` processes; the
    output does not depend on ``workers``. Shards of a previous run that are not part of this layout are
    removed. Both Parquet files carry ``provenance`` (the stage's record) and the shard settings as
    metadata.
    """
    _check_arguments(image_size, samples_per_shard, image_format, jpeg_quality, workers, resize)
    root, out_dir = Path(root), Path(out_dir)
    # Spawned workers take a few tenths of a second to import; they do it while the layout is planned.
    # Spawned rather than forked, they inherit no locks or threads from the caller; as usual with
    # spawn, a script calling this must guard its entry point with ``if __name__ == "__main__"``.
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        rows = load_rows(manifest)
        plans, rejects = plan_shards(rows, root, samples_per_shard)
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_outputs_of_previous_run(out_dir)
        encode = functools.partial(
            _encode, image_size=image_size, image_format=image_format, jpeg_quality=jpeg_quality, crop=crop,
            resize=resize,
        )
        samples, decode_rejects = _write_all(plans, root, out_dir, encode, image_format, pool)
    finally:
        if pool is not None:
            pool.terminate()
    rejects += decode_rejects
    stale = _remove_stale_shards(out_dir, {plan.name for plan in plans})
    rejects.sort(key=lambda r: (r["key"] or "", r["path"] or "", r["reason"]))
    settings = {
        "image_size": image_size,
        "samples_per_shard": samples_per_shard,
        "image_format": image_format,
        "jpeg_quality": jpeg_quality,
        "crop_nonzero": crop,
        "resize": resize,
    }
    metadata = {**(provenance or {}), METADATA_KEY: json.dumps(settings, sort_keys=True)}
    write_table(pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA), out_dir / "rejects.parquet", metadata)
    write_table(pa.Table.from_pylist(samples, schema=MANIFEST_SCHEMA), out_dir / "manifest.parquet", metadata)
    return _tally(len(rows), samples, rejects, len(plans), stale)


def _check_arguments(
    image_size: int, samples_per_shard: int, image_format: str, jpeg_quality: int, workers: int, resize: str
) -> None:
    """Raise ``ValueError`` for settings :func:`write_shards` cannot honour, before any work starts."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    if samples_per_shard < 1 or image_size < 1 or workers < 1:
        raise ValueError("samples_per_shard, image_size and workers must be >= 1")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")


def _tally(
    images_in: int, samples: list[dict[str, Any]], rejects: list[dict[str, Any]], shards: int, stale: int
) -> ShardCounts:
    """Count what a run did; every image read must have become a sample or a reject."""
    counts = ShardCounts(
        images_in=images_in,
        samples=len(samples),
        rejected=len(rejects),
        shards=shards,
        stale_removed=stale,
        samples_by_split=dict(sorted(Counter(s["split"] for s in samples).items())),
        rejects_by_reason=dict(sorted(Counter(r["reason"] for r in rejects).items())),
    )
    if counts.images_in != counts.samples + counts.rejected:
        raise RuntimeError(f"shard accounting broken: {counts}")
    return counts


def _write_all(
    plans: Sequence[ShardPlan],
    root: Path,
    out_dir: Path,
    encode: Callable[[str], _Encoded | ImageError],
    image_format: str,
    pool: Pool | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the shards in order, encoding the images in ``pool`` (in this process without one).

    All images go through one ordered ``imap``, so the workers never wait at a shard boundary while
    this process writes: it only appends already-compressed bytes, far faster than the workers
    produce them, so few results are ever queued.
    """
    samples: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    paths = [str(root / row["path"]) for plan in plans for row in plan.rows]
    results: Iterator[_Encoded | ImageError]
    results = map(encode, paths) if pool is None else pool.imap(encode, paths, chunksize=4)
    progress = ProgressLog(log, "shards", len(paths), "images")
    for plan in plans:
        shard_samples, shard_rejects = _write_shard(
            out_dir, plan, itertools.islice(results, len(plan.rows)), image_format
        )
        samples += shard_samples
        rejects += shard_rejects
        progress.advance(len(plan.rows), note=f"{len(samples):,} written, {len(rejects):,} rejected")
    return samples, rejects


def _encode(
    path: str, *, image_size: int, image_format: str, jpeg_quality: int, crop: bool, resize: str
) -> _Encoded | ImageError:
    """Decode, crop, resize and compress one image (runs in the worker processes; see
    :func:`imitate.images.prepare.prepare_image`)."""
    try:
        image = prepare_image(path, image_size=image_size, resize=resize, crop=crop)
    except ImageError as exc:
        return exc
    height, width = image.array.shape
    return _Encoded(
        encode_image(image.array, image_format, jpeg_quality), width, height, image.orig_width, image.orig_height,
        image.shown_box, image.pixel_spacing,
    )


def _write_shard(
    out_dir: Path, plan: ShardPlan, results: Iterator[_Encoded | ImageError], image_format: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write one shard under a temporary name, then publish it; returns its manifest rows and rejects."""
    samples: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    final = out_dir / plan.name
    tmp = out_dir / f".{plan.name}.tmp"
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for row, result in zip(plan.rows, results, strict=True):
                if isinstance(result, ImageError):
                    rejects.append({"key": row["key"], "path": row["path"], "reason": result.reason})
                    log.debug("rejected %s: %s", row["key"], result)
                    continue
                ids = {name: row[name] for name in ("key", *OPTIONAL_COLUMNS)}
                sample_json = {
                    **ids,
                    "width": result.width,
                    "height": result.height,
                    "orig_width": result.orig_width,
                    "orig_height": result.orig_height,
                    "crop_box": list(result.crop_box),
                    "pixel_spacing": result.pixel_spacing,
                }
                _add_member(tar, f"{row['key']}.json", _json_bytes(sample_json))
                _add_member(tar, f"{row['key']}.{image_format}", result.data)
                samples.append({"shard": plan.name, **ids, **_geometry_columns(result)})
        with open(tmp, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for sample in samples:
        sample["shard_sha256"] = digest
    log.debug("wrote %s: %d samples, %d rejected", plan.name, len(samples), len(rejects))
    return samples, rejects


def _geometry_columns(result: _Encoded) -> dict[str, Any]:
    x0, y0, x1, y1 = result.crop_box
    row_mm, col_mm = result.pixel_spacing or (None, None)
    return {
        "width": result.width,
        "height": result.height,
        "orig_width": result.orig_width,
        "orig_height": result.orig_height,
        "crop_x0": x0,
        "crop_y0": y0,
        "crop_x1": x1,
        "crop_y1": y1,
        "pixel_spacing_row": row_mm,
        "pixel_spacing_col": col_mm,
    }


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = TAR_MTIME
    info.mode = TAR_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _remove_outputs_of_previous_run(out_dir: Path) -> None:
    """Drop the old manifests (so a crash never leaves one describing other shards) and temp files."""
    for name in ("manifest.parquet", "rejects.parquet"):
        (out_dir / name).unlink(missing_ok=True)
    for tmp in sorted(out_dir.glob(".*.tar.tmp")):
        tmp.unlink()


def _remove_stale_shards(out_dir: Path, keep: set[str]) -> int:
    stale = sorted(p for p in out_dir.iterdir() if SHARD_NAME.match(p.name) and p.name not in keep)
    for path in stale:
        path.unlink()
        log.info("removed stale shard %s", path)
    return len(stale)
