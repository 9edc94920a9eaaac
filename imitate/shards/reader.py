"""Reading shards back: decode one sample, iterate samples in file order, find a split's shards."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander

IMAGE_EXTENSIONS = ("png", "jpg")


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode the bytes of a shard image into uint8 HxW; ``where`` names it in errors."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode != "L":
                raise ValueError(f"{where}: expected an 8-bit grayscale image, got mode {img.mode}")
            return np.array(img)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{where}: undecodable image: {exc}") from exc


def decode_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A WebDataset sample (``__key__``, ``__url__``, one image, ``json``) -> ``{key, image, meta}``."""
    key = sample["__key__"]
    where = f"{sample.get('__url__', '?')}: sample {key!r}"
    images = [ext for ext in IMAGE_EXTENSIONS if ext in sample]
    if len(images) != 1 or "json" not in sample:
        members = sorted(name for name in sample if not name.startswith("__"))
        raise ValueError(f"{where} needs one .png/.jpg and one .json, has {members}")
    meta = json.loads(sample["json"])
    if meta.get("key") != key:
        raise ValueError(f"{where}: its json names key {meta.get('key')!r}")
    return {"key": key, "image": decode_image(sample[images[0]], where), "meta": meta}


def tar_samples(shards: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Raw WebDataset samples (``__key__``, ``__url__``, one bytes value per extension) of local shards.

    WebDataset groups the tar members into samples; the files are opened here so that each one is
    closed as soon as its shard is read (or the iteration is abandoned), which WebDataset's opener
    leaves to the garbage collector.
    """
    return group_by_keys(tar_file_expander(_open(shards)))


def _open(shards: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    for path in shards:
        with open(path, "rb") as stream:
            yield {"url": str(path), "stream": stream}


def iter_samples(shards: Sequence[str | Path]) -> Iterator[dict[str, Any]]:
    """Every sample of ``shards``, in shard order then file order (deterministic, no shuffling)."""
    for sample in tar_samples(shards):
        yield decode_sample(sample)


def shard_paths(shard_manifest: str | Path, split: str) -> list[Path]:
    """The shards of ``split`` listed in a shard manifest, sorted, as paths beside the manifest."""
    table = pq.read_table(shard_manifest, columns=["shard", "split"])
    names = sorted(set(table.filter(pc.equal(table["split"], split))["shard"].to_pylist()))
    if not names:
        found = sorted(set(table["split"].to_pylist()))
        raise ValueError(f"{shard_manifest}: no shards for split {split!r} (splits present: {found})")
    return [Path(shard_manifest).parent / name for name in names]


def count_samples(shard_manifest: str | Path, split: str) -> int:
    """How many samples of ``split`` the shards hold (the ``num_samples`` of a training epoch)."""
    table = pq.read_table(shard_manifest, columns=["split"])
    return int(pc.sum(pc.equal(table["split"], split)).as_py() or 0)
