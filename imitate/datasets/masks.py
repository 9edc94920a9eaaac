"""The masks records carry: run-length strings (``mask_rle``) and filled boxes.

One encoding for every dataset: SIIM-ACR's. Pairs ``start length`` over the image flattened column by
column (column-major), where the first start is a 0-based offset and each later one the gap after the
previous run; ``-1`` (:data:`NO_MASK`) is an empty mask. A mask of several components (SIIM writes one
CSV row per component) keeps them joined by ``|`` (:data:`MASK_SEPARATOR`, never part of an RLE); they
are OR-ed when decoded. Masks are at the original image's size; :mod:`imitate.evaluate.data.dense`
maps them to a model's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NO_MASK = "-1"
MASK_SEPARATOR = "|"


def rle_runs(component: str) -> np.ndarray:
    """The (start, length) pairs of one mask component (starts relative); ValueError if malformed."""
    try:
        values = [int(v) for v in component.split()]
    except ValueError:
        raise ValueError(f"not a list of integers: {component[:40]!r}") from None
    if not values or len(values) % 2:
        raise ValueError(f"needs (start, length) pairs, got {len(values)} numbers")
    runs = np.array(values, dtype=np.int64).reshape(-1, 2)
    if (runs[:, 0] < 0).any() or (runs[:, 1] <= 0).any():
        raise ValueError("starts must be >= 0 and lengths > 0")
    return runs


def decode_rle(rle: str, height: int, width: int) -> np.ndarray:
    """The bool (height, width) mask of ``rle``: ``-1``, or components joined by ``|`` (OR-ed).

    SIIM's encoding: pairs (start, length) over the image flattened column by column; the first start
    is a 0-based offset, each later one the gap after the previous run.
    """
    flat = np.zeros(height * width, dtype=bool)
    text = rle.strip()
    if text != NO_MASK:
        for component in text.split(MASK_SEPARATOR):
            runs = rle_runs(component)
            end = int(runs.sum())
            if end > flat.size:
                raise ValueError(f"runs end at pixel {end}, past the {height}x{width} image")
            # gap, run, gap, run ...: one repeat of alternating False/True paints the whole component
            flat[:end] |= np.repeat(np.tile([False, True], len(runs)), runs.ravel())
    return flat.reshape(width, height).T  # a column-major view: no transposing copy


def encode_rle(mask: np.ndarray) -> str:
    """One component in SIIM's relative column-major encoding (``-1`` for an empty mask)."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).T.ravel()
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat.astype(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    if not starts.size:
        return NO_MASK
    gaps = starts - np.concatenate(([0], ends[:-1]))
    return " ".join(f"{gap} {length}" for gap, length in zip(gaps, ends - starts, strict=True))


def box_mask(boxes: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """The bool (height, width) mask of filled boxes ``[x0, y0, x1, y1]`` (pixels, continuous coordinates).

    A pixel is inside when its centre is: columns ``ceil(x0 - 0.5)`` up to ``ceil(x1 - 0.5)`` (exclusive),
    so integer boxes fill exactly ``x0 .. x1 - 1``, as RSNA's ``x, y, width, height`` boxes mean.
    """
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = (int(np.clip(np.ceil(v - 0.5), 0, width)) for v in (x0, x1))
        r0, r1 = (int(np.clip(np.ceil(v - 0.5), 0, height)) for v in (y0, y1))
        mask[r0:r1, c0:c1] = True
    return mask
