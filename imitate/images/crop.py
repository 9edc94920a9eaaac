"""The official IMITATE crop: the bounding box of the non-zero pixels, stretched to the 8-bit range.

The authors' preprocessing crops each JPG to the box holding its non-zero pixels (black borders and
collimation go) and min-max scales the crop by 256 before casting to uint8, so each image's brightest
pixel wraps to 0. Here the crop is the same and the stretch maps the minimum to 0 and the maximum to
255 (rounded), so nothing wraps.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, ends exclusive


def nonzero_box(array: np.ndarray) -> Box | None:
    """The smallest box holding every non-zero pixel of an HxW array; None when all are zero."""
    rows = np.flatnonzero(array.any(axis=1))
    if rows.size == 0:
        return None
    columns = np.flatnonzero(array.any(axis=0))
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def crop_nonzero(array: np.ndarray) -> tuple[np.ndarray, Box]:
    """Crop a uint8 HxW image to :func:`nonzero_box` and stretch the crop to 0..255.

    Returns the new image and the box it was cut from, in the input's pixel coordinates. An all-zero
    image is returned whole (there is nothing to crop to); a flat crop is returned unstretched.
    """
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"crop_nonzero: expected a uint8 HxW array, got {array.dtype} {array.shape}")
    height, width = array.shape
    box = nonzero_box(array) or (0, 0, width, height)
    x0, y0, x1, y1 = box
    crop = array[y0:y1, x0:x1]
    low, high = int(crop.min()), int(crop.max())
    if high == low or (low, high) == (0, 255):
        return crop, box
    stretched = (crop.astype(np.float32) - low) * np.float32(255.0 / (high - low))
    return np.rint(stretched).astype(np.uint8), box
