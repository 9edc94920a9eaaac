"""The paper's augmentations on a whole batch at once, on whatever device the batch is on (the GPU).

The loader then only crops (a slice of a uint8 array, cheap) and the heavy per-pixel work runs on the
accelerator, so the CPU cores stop being the limit. Per sample, as the loader's ``paper`` pipeline
(:func:`imitate.train.data.build_train_transform`) after its crop: horizontal flip (p = 0.5), rotation
by a uniform angle in ±``rotation_degrees`` about the centre with nearest-neighbour sampling and black
corners, autocontrast (p = 0.5: each image stretched to its own min..max), then [0, 1] scaling, three
channels and the ImageNet normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from imitate.train.data import IMAGENET_MEAN, IMAGENET_STD


def augment_batch(
    images: Tensor,
    *,
    rotation_degrees: float,
    generator: torch.Generator,
    flip_p: float = 0.5,
    autocontrast_p: float = 0.5,
) -> Tensor:
    """uint8 B x 1 x H x W -> float32 B x 3 x H x W, augmented per sample and normalised.

    ``generator`` lives on the batch's device and draws every random choice, so a seeded generator
    gives the same batch every time.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"augment_batch: expected uint8 B x 1 x H x W, got {images.dtype} {tuple(images.shape)}")
    n, device = images.shape[0], images.device
    flip = torch.rand(n, generator=generator, device=device) < flip_p
    angles = (torch.rand(n, generator=generator, device=device) * 2 - 1) * math.radians(rotation_degrees)
    contrast = torch.rand(n, generator=generator, device=device) < autocontrast_p
    return apply_augmentations(images, flip, angles, contrast)


def apply_augmentations(images: Tensor, flip: Tensor, angles: Tensor, contrast: Tensor) -> Tensor:
    """The augmentations with the per-sample choices given: flip (bool), angle (radians), autocontrast (bool)."""
    x = images.float().div_(255.0)
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if bool((angles != 0).any()):
        x = _rotate(x, angles)
    x = torch.where(contrast[:, None, None, None], _autocontrast(x), x)
    return normalise(x)


def normalise(x: Tensor) -> Tensor:
    """[0, 1] one-channel images B x 1 x H x W -> the encoder's input: three channels, ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[None, :, None, None]
    return (x.expand(-1, 3, -1, -1) - mean) / std


def _rotate(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate each image by its angle (radians, counter-clockwise on screen) about its centre."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    height, width = x.shape[-2:]
    aspect = height / width  # affine_grid works in [-1, 1] coordinates, which stretch non-square images
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * aspect
    theta[:, 1, 0], theta[:, 1, 1] = sin / aspect, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _autocontrast(x: Tensor) -> Tensor:
    """Each image linearly stretched so its darkest pixel is 0 and its brightest 1 (flat images kept)."""
    low = x.amin(dim=(1, 2, 3), keepdim=True)
    high = x.amax(dim=(1, 2, 3), keepdim=True)
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp_min(1e-12), x)
