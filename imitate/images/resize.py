"""Anti-aliased resizing of 8-bit grayscale images to a target size, in one of three geometries.

``square`` stretches the image to ``size`` x ``size`` (the paper's 256 x 256; the official code's
skimage resize to R x R). ``shorter_side`` keeps the aspect ratio, the shorter side becoming ``size``
(the longer one is rounded). ``pad`` keeps the aspect ratio with the longer side at ``size`` and centres
the image on a black ``size`` x ``size`` square (MGCA's ``resize_img``: the shorter side is truncated,
the odd padding pixel goes right or below).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from imitate.images.crop import Box

REDUCING_GAP = 3.0
RESIZE_MODES = ("square", "shorter_side", "pad")


def placement(height: int, width: int, size: int, mode: str) -> tuple[tuple[int, int], Box]:
    """``(out_height, out_width)`` and the box ``[x0, y0, x1, y1]`` of the output the image fills."""
    if mode == "square":
        return (size, size), (0, 0, size, size)
    if mode == "shorter_side":
        if height <= width:
            shape = size, max(size, round(width * size / height))
        else:
            shape = max(size, round(height * size / width)), size
        return shape, (0, 0, shape[1], shape[0])
    if mode == "pad":
        # MGCA's int(): the shorter side is truncated, not rounded
        if height >= width:
            content_h, content_w = size, max(1, int(width * size / height))
        else:
            content_h, content_w = max(1, int(height * size / width)), size
        left, top = (size - content_w) // 2, (size - content_h) // 2
        return (size, size), (left, top, left + content_w, top + content_h)
    raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")


def resize_image(
    array: np.ndarray, size: int, mode: str, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """Resize a uint8 HxW ``array`` to ``size`` in geometry ``mode`` (:data:`RESIZE_MODES`).

    Pillow's filters widen their support by the scale factor when shrinking, so downscaling is
    anti-aliased. A large reduction first box-averages by an integer factor down to at least
    ``REDUCING_GAP`` times the target size (Pillow's ``reducing_gap``), which a 2,500 x 3,000 -> 256
    resize runs 4x faster and changes by at most 2 grey levels (mean 0.17); a reduction under 6x is
    untouched by it. An image already of the output size is returned unchanged (not copied).
    """
    if size < 1:
        raise ValueError(f"resize_image: size must be >= 1, got {size}")
    if array.ndim != 2 or array.dtype != np.uint8:
        raise ValueError(f"resize_image: expected a uint8 HxW array, got {array.dtype} {array.shape}")
    height, width = array.shape
    shape, (x0, y0, x1, y1) = placement(height, width, size, mode)
    if (y1 - y0, x1 - x0) == (height, width) and shape == (height, width):
        return array
    resized = np.array(Image.fromarray(array).resize((x1 - x0, y1 - y0), resample, reducing_gap=REDUCING_GAP))
    if (y1 - y0, x1 - x0) == shape:
        return resized
    out = np.zeros(shape, np.uint8)
    out[y0:y1, x0:x1] = resized
    return out
