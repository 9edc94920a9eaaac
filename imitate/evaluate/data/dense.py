"""Images, masks and boxes of a prepared dataset at a dense task's square input size.

Geometry: a shard image shows the part ``crop`` = ``[x0, y0, x1, y1]`` of the original image (the
whole image unless the shards were cropped to the non-zero box; past its borders by the zero padding
of ``pad`` shards), resized to the shard size (:mod:`imitate.shards.writer`). Dense tasks squash it to
``size`` x ``size`` (the paper resizes images and masks to 512 x 512; MGCA squashes to 224), so an
original point ``(x, y)`` is at ``((x - x0) * size / (x1 - x0), (y - y0) * size / (y1 - y0))`` in the
input. Boxes are mapped with that affine map and back (:meth:`Geometry.to_input`,
:meth:`Geometry.to_original`); a run-length mask is decoded at the original size recorded in the shard
manifest and sampled at the input pixels' centres (nearest neighbour, background in the padding); a
dataset without masks gets its boxes filled (RSNA's segmentation targets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from imitate.datasets.masks import NO_MASK, box_mask, decode_rle
from imitate.evaluate.data.shard_images import ImageMember, read_image
from imitate.images.resize import resize_image

# Bilinear (anti-aliased when shrinking), as dense inputs have always been made from the shard images:
# the shards' Lanczos would move every dense result for no gain at these small scale factors.
DENSE_RESAMPLE = Image.Resampling.BILINEAR
_GEOMETRY = ("key", "orig_width", "orig_height", "crop_x0", "crop_y0", "crop_x1", "crop_y1")


@dataclass(frozen=True)
class Geometry:
    """Where a shard image comes from: the original image's size and the part of it the shard shows."""

    orig_width: int
    orig_height: int
    crop: tuple[float, float, float, float]

    def _scale(self, size: int) -> tuple[float, float]:
        x0, y0, x1, y1 = self.crop
        return size / (x1 - x0), size / (y1 - y0)

    def to_input(self, boxes: np.ndarray, size: int) -> np.ndarray:
        """``(N, 4)`` boxes ``[x0, y0, x1, y1]`` in original pixels -> in the ``size`` x ``size`` input."""
        sx, sy = self._scale(size)
        shift = np.array(self.crop[:2] * 2, dtype=np.float64)
        return ((np.asarray(boxes, np.float64).reshape(-1, 4) - shift) * [sx, sy, sx, sy]).astype(np.float32)

    def to_original(self, boxes: np.ndarray, size: int) -> np.ndarray:
        """The inverse of :meth:`to_input`: input boxes back in original pixels."""
        sx, sy = self._scale(size)
        shift = np.array(self.crop[:2] * 2, dtype=np.float64)
        return (np.asarray(boxes, np.float64).reshape(-1, 4) / [sx, sy, sx, sy] + shift).astype(np.float32)

    def mask_to_input(self, mask: np.ndarray, size: int) -> np.ndarray:
        """An original-size bool mask sampled at the centres of the ``size`` x ``size`` input pixels."""
        if mask.shape != (self.orig_height, self.orig_width):
            raise ValueError(f"mask of shape {mask.shape} for an image of {self.orig_height}x{self.orig_width}")
        x0, y0, x1, y1 = self.crop
        centres = (np.arange(size) + 0.5) / size
        cols = np.floor(x0 + centres * (x1 - x0)).astype(np.int64)
        rows = np.floor(y0 + centres * (y1 - y0)).astype(np.int64)
        inside_cols = (cols >= 0) & (cols < self.orig_width)
        inside_rows = (rows >= 0) & (rows < self.orig_height)
        sampled = mask[np.ix_(np.clip(rows, 0, self.orig_height - 1), np.clip(cols, 0, self.orig_width - 1))]
        return sampled & inside_rows[:, None] & inside_cols[None, :]


def read_geometry(shard_manifest: str | Path) -> dict[str, Geometry]:
    """The geometry of every sample of a shard manifest, by key."""
    table = pq.read_table(shard_manifest, columns=list(_GEOMETRY)).to_pydict()
    return {
        key: Geometry(w, h, (cx0, cy0, cx1, cy1))
        for key, w, h, cx0, cy0, cx1, cy1 in zip(*(table[c] for c in _GEOMETRY), strict=True)
    }


@dataclass(frozen=True)
class DenseTarget:
    """What a record says is where: its boxes (original pixels) and its run-length mask, if any."""

    boxes: np.ndarray
    mask_rle: str | None


def read_dense_targets(records: str | Path) -> dict[str, DenseTarget]:
    """Boxes and masks of a prepared ``records.parquet``, by key."""
    table = pq.read_table(records, columns=["key", "boxes", "mask_rle"]).to_pydict()
    return {
        key: DenseTarget(np.asarray(boxes or [], np.float32).reshape(-1, 4), rle)
        for key, boxes, rle in zip(table["key"], table["boxes"], table["mask_rle"], strict=True)
    }


def is_positive(target: DenseTarget) -> bool:
    """Whether the record's target shows a lesion: a non-empty mask, or boxes when it has no mask."""
    if target.mask_rle is not None:
        return target.mask_rle.strip() != NO_MASK
    return len(target.boxes) > 0


def has_dense_targets(targets: Mapping[str, DenseTarget]) -> bool:
    """Whether any record has a box or a non-empty mask (a dataset with neither cannot be scored)."""
    return any(is_positive(t) for t in targets.values())


def input_mask(target: DenseTarget, geometry: Geometry, size: int) -> np.ndarray:
    """The ``size`` x ``size`` bool target mask: the decoded run-length mask, else the filled boxes."""
    if target.mask_rle is not None:
        return geometry.mask_to_input(decode_rle(target.mask_rle, geometry.orig_height, geometry.orig_width), size)
    return box_mask(geometry.to_input(target.boxes, size), size, size)


class DenseImages(Dataset):
    """Shard images at ``size`` x ``size`` with their targets: item ``(epoch, i)`` is ``keys[i]``'s
    ``(image uint8 1 x S x S, mask uint8 S x S, boxes float32 N x 4 in input pixels)``.

    ``masks=False`` skips rendering the masks (detection), giving an empty 0 x 0 mask. ``seed`` orders
    shuffled epochs (:func:`imitate.evaluate.data.shard_images.epoch_loader`); nothing here is random.
    """

    def __init__(
        self,
        keys: Sequence[str],
        targets: Mapping[str, DenseTarget],
        geometry: Mapping[str, Geometry],
        index: Mapping[str, ImageMember],
        size: int,
        *,
        masks: bool,
        seed: int,
    ) -> None:
        for name, table in (("shards", index), ("shard manifest", geometry), ("records", targets)):
            missing = [k for k in keys if k not in table]
            if missing:
                raise KeyError(f"images {missing[:5]} are not in the {name} ({len(missing)} missing)")
        self.keys = list(keys)
        self.targets = [targets[k] for k in self.keys]
        self.geometry = [geometry[k] for k in self.keys]
        self.members = [index[k] for k in self.keys]
        self.size = size
        self.masks = masks
        self.seed = seed

    def __len__(self) -> int:
        return len(self.keys)

    def boxes(self, i: int) -> np.ndarray:
        """Image ``i``'s boxes in input pixels."""
        return self.geometry[i].to_input(self.targets[i].boxes, self.size)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        _, i = item
        image = resize_image(read_image(self.members[i], self.keys[i]), self.size, "square", DENSE_RESAMPLE)
        mask = input_mask(self.targets[i], self.geometry[i], self.size) if self.masks else np.zeros((0, 0), bool)
        return (torch.from_numpy(image)[None], torch.from_numpy(mask.astype(np.uint8)),
                torch.from_numpy(self.boxes(i)))


def collate_dense(items: Sequence[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Stack images (B x 1 x S x S) and masks (B x S x S); boxes stay a list (their counts differ)."""
    images, masks, boxes = zip(*items, strict=True)
    return torch.stack(images), torch.stack(masks), list(boxes)
