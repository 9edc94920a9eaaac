"""One radiograph file -> the uint8 image a shard stores: decode, optional crop, resize, compress.

The shard writer (:mod:`imitate.shards.writer`) and the exported model's preprocessing
(:mod:`imitate.pretrained.preprocess`) both call :func:`prepare_image`, so an image a user gives the
released model goes through exactly the steps the images it was trained and evaluated on went through.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imitate.images.crop import Box, crop_nonzero
from imitate.images.pixels import read_image
from imitate.images.resize import REDUCING_GAP, placement, resize_image

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
PNG_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class PreparedImage:
    """The resized uint8 H x W image, what it was cut from and the part of the original it shows."""

    array: np.ndarray
    orig_width: int
    orig_height: int
    shown_box: tuple[float, float, float, float]  # [x0, y0, x1, y1] of the original, padding included
    pixel_spacing: tuple[float, float] | None


def prepare_image(path: str | Path, *, image_size: int, resize: str, crop: bool) -> PreparedImage:
    """Decode ``path`` (DICOM, JPG, PNG), crop it to its non-zero box if ``crop``, resize it in geometry ``resize``.

    A JPEG may be decoded at reduced scale, its shorter side down to ``REDUCING_GAP`` times
    ``image_size`` (the margin Pillow's own resize keeps). Every mode scales each axis by at most
    ``image_size / shorter side`` (``square`` shrinks the longer axis more, ``pad`` both), so each axis
    keeps that margin over its output length. Not when cropping, whose box is kept in exact original
    pixels. Raises :class:`imitate.images.pixels.ImageError` for a file that is not one grayscale image.
    """
    pixels = read_image(path, None if crop else math.ceil(image_size * REDUCING_GAP))
    array, shown = fit_image(
        pixels.array, image_size=image_size, resize=resize, crop=crop, original=(pixels.orig_width, pixels.orig_height)
    )
    return PreparedImage(array, pixels.orig_width, pixels.orig_height, shown, pixels.pixel_spacing)


def fit_image(
    array: np.ndarray, *, image_size: int, resize: str, crop: bool, original: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A decoded uint8 H x W image cropped to its non-zero box if ``crop`` and resized in geometry ``resize``,
    and the box of the original image it shows. ``original`` is the (width, height) of an image that
    ``array`` decodes at reduced scale (never when cropping); by default the array's own."""
    if crop:
        array, box = crop_nonzero(array)
    else:
        width, height = original or (array.shape[1], array.shape[0])
        box = (0, 0, width, height)
    shown = _shown_box(box, placement(*array.shape, image_size, resize))
    return resize_image(array, image_size, resize), shown


def encode_image(array: np.ndarray, image_format: str, jpeg_quality: int) -> bytes:
    """The bytes a shard stores for a uint8 H x W image: PNG (lossless) or JPEG at ``jpeg_quality``."""
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(array).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif image_format == "jpg":
        Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        raise ValueError(f"image format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    return buffer.getvalue()


def _shown_box(crop_box: Box, placed: tuple[tuple[int, int], Box]) -> tuple[float, float, float, float]:
    """The original-pixel box the whole shard image shows: ``crop_box`` widened by any padding."""
    (out_height, out_width), (cx0, cy0, cx1, cy1) = placed
    if (cx0, cy0, cx1, cy1) == (0, 0, out_width, out_height):
        return crop_box
    x0, y0, x1, y1 = crop_box
    sx, sy = (x1 - x0) / (cx1 - cx0), (y1 - y0) / (cy1 - cy0)
    return x0 - cx0 * sx, y0 - cy0 * sy, x0 + (out_width - cx0) * sx, y0 + (out_height - cy0) * sy
