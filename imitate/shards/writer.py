"""Image manifest -> deterministic WebDataset shards, a shard manifest and rejects.

The layout is decided before any pixel is read: per split (sorted), the rows that pass the cheap checks
(key, split, file present) are sorted by key and cut into chunks of ``samples_per_shard``; chunk ``i``
of split ``s`` is ``{s}-{i:06d}.tar``. An image that then fails to decode leaves a gap in its own shard
instead of shifting samples into other shards.

Tars are written with the ``tarfile`` module rather than ``webdataset.TarWriter`` so that every header
field (mtime, uid, gid, uname, gname, mode, format) is pinned here, the bytes can be hashed before they
are published, and each shard goes to a hidden temporary name renamed only once complete: a rerun is
byte-identical and a crash never leaves a half-written ``*.tar``.

Keys must not contain a dot: WebDataset splits an entry name at the first dot of its basename into key
and extension, so ``a.b.png`` would be read back as key ``a`` with extension ``b.png``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from PIL import Image

from imitate.images.pixels import ImageError, read_image
from imitate.images.resize import resize_shorter
from imitate.parquet import write_table

log = logging.getLogger(__name__)

SPLIT_ALL = "all"  # the split of every row when the manifest has no split column
TAR_MTIME = 946_684_800  # 2000-01-01T00:00:00Z: fixed so that reruns give the same bytes
TAR_MODE = 0o444
SHARD_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{6}\.tar$")
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
PNG_COMPRESS_LEVEL = 6
METADATA_KEY = "imitate.shards"

# Input columns beyond key/path that are carried into the samples, with their types.
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {
    "dicom_id": pa.string(),
    "study_id": pa.int64(),
    "subject_id": pa.int64(),
    "view": pa.string(),
    "split": pa.string(),
}
INPUT_TYPES: dict[str, pa.DataType] = {"key": pa.string(), "path": pa.string(), **OPTIONAL_COLUMNS}
MANIFEST_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("key", pa.string()),
        *OPTIONAL_COLUMNS.items(),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("orig_width", pa.int64()),
        ("orig_height", pa.int64()),
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
class _ShardPlan:
    name: str
    rows: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class _Encoded:
    data: bytes
    width: int
    height: int
    orig_width: int
    orig_height: int
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
    workers: int = 1,
) -> ShardCounts:
    """Write ``out_dir/{split}-{NNNNNN}.tar`` shards, ``manifest.parquet`` and ``rejects.parquet``.

    ``manifest`` (a table, or a Parquet / CSV file) needs ``key`` and ``path`` (relative to ``root``) and
    may have ``split, dicom_id, study_id, subject_id, view``. Images are decoded and resized to shorter
    side ``image_size`` by ``workers`` processes; the output does not depend on ``workers``. Shards of a
    previous run that are not part of this layout are removed.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    if samples_per_shard < 1 or image_size < 1 or workers < 1:
        raise ValueError("samples_per_shard, image_size and workers must be >= 1")
    root, out_dir = Path(root), Path(out_dir)
    rows = _load_rows(manifest)
    plans, rejects = _plan(rows, root, samples_per_shard)
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_outputs_of_previous_run(out_dir)
    encode = functools.partial(
        _encode, image_size=image_size, image_format=image_format, jpeg_quality=jpeg_quality
    )
    samples, decode_rejects = _write_all(plans, root, out_dir, encode, image_format, workers)
    rejects += decode_rejects
    stale = _remove_stale_shards(out_dir, {plan.name for plan in plans})
    rejects.sort(key=lambda r: (r["key"] or "", r["path"] or "", r["reason"]))
    settings = {"image_size": image_size, "samples_per_shard": samples_per_shard,
                "image_format": image_format, "jpeg_quality": jpeg_quality}
    metadata = {METADATA_KEY: json.dumps(settings, sort_keys=True)}
    write_table(pa.Table.from_pylist(rejects, schema=REJECTS_SCHEMA), out_dir / "rejects.parquet", metadata)
    write_table(pa.Table.from_pylist(samples, schema=MANIFEST_SCHEMA), out_dir / "manifest.parquet", metadata)
    counts = ShardCounts(
        images_in=len(rows),
        samples=len(samples),
        rejected=len(rejects),
        shards=len(plans),
        stale_removed=stale,
        samples_by_split=dict(sorted(Counter(s["split"] for s in samples).items())),
        rejects_by_reason=dict(sorted(Counter(r["reason"] for r in rejects).items())),
    )
    if counts.images_in != counts.samples + counts.rejected:
        raise RuntimeError(f"shard accounting broken: {counts}")
    return counts


def _load_rows(manifest: pa.Table | str | Path) -> list[dict[str, Any]]:
    """Rows with every optional column present (null when absent; split ``all`` without a split column)."""
    if isinstance(manifest, pa.Table):
        table, source = manifest, "manifest table"
    else:
        source = str(manifest)
        try:
            if source.endswith(".parquet"):
                table = pq.read_table(manifest)
            else:
                table = pacsv.read_csv(manifest, convert_options=pacsv.ConvertOptions(column_types=INPUT_TYPES))
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{source}: unreadable manifest: {exc}") from exc
    missing = {"key", "path"} - set(table.column_names)
    if missing:
        raise ValueError(f"{source}: missing required column(s) {sorted(missing)}")
    columns = {}
    for name, dtype in INPUT_TYPES.items():
        if name not in table.column_names:
            continue
        try:
            columns[name] = table.column(name).cast(dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{source}: column {name!r} is not {dtype}: {exc}") from exc
    rows = pa.table(columns).to_pylist()
    defaults = {name: None for name in OPTIONAL_COLUMNS}
    if "split" not in columns:
        defaults["split"] = SPLIT_ALL
    return [{**defaults, **row} for row in rows]


def _plan(
    rows: Sequence[dict[str, Any]], root: Path, samples_per_shard: int
) -> tuple[list[_ShardPlan], list[dict[str, Any]]]:
    """Assign every row to a shard, or to the rejects with a reason."""
    rejects: list[dict[str, Any]] = []

    def reject(row: Mapping[str, Any], reason: str) -> None:
        rejects.append({"key": row["key"], "path": row["path"], "reason": reason})

    checked = []
    for row in rows:
        reason = _key_or_split_problem(row)
        if reason:
            reject(row, reason)
        else:
            checked.append(row)
    # Every row of a repeated key is rejected: which of them the key should name cannot be told.
    repeated = {key for key, n in Counter(row["key"] for row in checked).items() if n > 1}
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in checked:
        if row["key"] in repeated:
            reject(row, "duplicate_key")
        elif not row["path"] or not (root / row["path"]).is_file():
            reject(row, "file_missing")
        else:
            by_split.setdefault(row["split"], []).append(row)
    plans = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda row: row["key"])
        for index, start in enumerate(range(0, len(ordered), samples_per_shard)):
            chunk = tuple(ordered[start : start + samples_per_shard])
            plans.append(_ShardPlan(f"{split}-{index:06d}.tar", chunk))
    return plans, rejects


def _key_or_split_problem(row: Mapping[str, Any]) -> str | None:
    key, split = row["key"], row["split"]
    if not key or any(ch in key for ch in "/\\") or key != key.strip():
        return "key_invalid"
    if "." in key:
        return "key_has_dot"
    if split is None:
        return "split_missing"
    if not SPLIT_NAME.match(split):
        return "split_invalid"
    return None


def _write_all(
    plans: Sequence[_ShardPlan],
    root: Path,
    out_dir: Path,
    encode: Callable[[str], _Encoded | ImageError],
    image_format: str,
    workers: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Write the shards in order; images are encoded in ``workers`` spawned processes (in-process if 1).

    Spawned rather than forked workers inherit no locks or threads from the caller; as usual with
    spawn, a script calling this must guard its entry point with ``if __name__ == "__main__"``.
    """
    samples: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        for plan in plans:
            paths = [str(root / row["path"]) for row in plan.rows]
            if pool is None:
                results: Iterator[_Encoded | ImageError] = map(encode, paths)
            else:
                # ordered results; one shard in flight at a time bounds the memory held
                results = pool.imap(encode, paths, chunksize=max(1, len(paths) // (4 * workers)))
            shard_samples, shard_rejects = _write_shard(out_dir, plan, results, image_format)
            samples += shard_samples
            rejects += shard_rejects
    finally:
        if pool is not None:
            pool.terminate()
    return samples, rejects


def _encode(path: str, *, image_size: int, image_format: str, jpeg_quality: int) -> _Encoded | ImageError:
    """Decode, resize and compress one image (runs in the worker processes)."""
    try:
        pixels = read_image(path)
    except ImageError as exc:
        return exc
    array = resize_shorter(pixels.array, image_size)
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
    height, width = array.shape
    return _Encoded(
        buffer.getvalue(), width, height, pixels.orig_width, pixels.orig_height, pixels.pixel_spacing
    )


def _write_shard(
    out_dir: Path, plan: _ShardPlan, results: Iterator[_Encoded | ImageError], image_format: str
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
                meta = {name: row[name] for name in ("key", *OPTIONAL_COLUMNS)}
                meta.update(width=result.width, height=result.height,
                            orig_width=result.orig_width, orig_height=result.orig_height)
                sample_json = {**meta, "pixel_spacing": result.pixel_spacing}
                _add_member(tar, f"{row['key']}.json", _json_bytes(sample_json))
                _add_member(tar, f"{row['key']}.{image_format}", result.data)
                samples.append({"shard": plan.name, **meta})
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
