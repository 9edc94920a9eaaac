"""The exported model's image preprocessing: any radiograph -> the tensor it was evaluated on.

A file goes through the shard stage's own steps (:func:`imitate.images.prepare.prepare_image`: DICOM's
grayscale pipeline or Pillow, the optional crop to the non-zero box, the resize geometry and size of the
pretraining shards, and a JPEG round trip when the shards stored JPEG) and then the evaluation transform
(:func:`imitate.images.transforms.build_eval_transform`: the center crop, [0, 1], one grey channel
repeated to three, the ImageNet mean/std). So an image given here meets the model exactly as the test
images of the run's zero-shot and linear-probe tables did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imitate.images.prepare import IMAGE_FORMATS, encode_image, fit_image, prepare_image
from imitate.images.resize import RESIZE_MODES
from imitate.images.transforms import build_eval_transform
from imitate.shards.reader import decode_image

ImageInput = str | Path | np.ndarray | Image.Image


@dataclass(frozen=True)
class Preprocess:
    """Radiograph (a path, a uint8 H x W array or a PIL image) -> float32 3 x ``crop_size`` x ``crop_size``."""

    image_size: int
    resize: str
    crop_nonzero: bool
    crop_size: int
    image_format: str = "png"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"preprocess: resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"preprocess: image_format must be one of {sorted(IMAGE_FORMATS)}, got {self.image_format!r}"
            )
        if not 0 < self.crop_size <= self.image_size:
            raise ValueError(f"preprocess: crop_size {self.crop_size} must be in 1..image_size ({self.image_size})")

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> Preprocess:
        """The preprocessing an exported ``config.json`` records."""
        return cls(**{f.name: facts[f.name] for f in fields(cls)})

    def facts(self) -> dict[str, Any]:
        """What ``config.json`` records (:meth:`from_facts` reads it back)."""
        return asdict(self)

    def image(self, image: ImageInput) -> np.ndarray:
        """The uint8 ``image_size`` image the shards would have stored for ``image``."""
        if isinstance(image, str | Path):
            array = prepare_image(image, image_size=self.image_size, resize=self.resize, crop=self.crop_nonzero).array
        else:
            array = _grey(image)
            array, _ = fit_image(array, image_size=self.image_size, resize=self.resize, crop=self.crop_nonzero)
        if self.image_format == "png":  # lossless: the stored image is the array itself
            return array
        return decode_image(encode_image(array, self.image_format, self.jpeg_quality), "preprocess")

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return build_eval_transform(self.crop_size)(torch.from_numpy(self.image(image)))


def _grey(image: np.ndarray | Image.Image) -> np.ndarray:
    """A uint8 H x W array of a PIL image (converted to 8-bit grey) or of a uint8 array."""
    if isinstance(image, Image.Image):
        return np.array(image.convert("L"))
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 2:
        raise ValueError(
            f"preprocess: an array must be uint8 H x W (8-bit grey), got {array.dtype} {array.shape}; "
            "pass a file path to read DICOM, 16-bit PNG or colour files"
        )
    return array
