"""Every image transform of training and evaluation, in one place.

Per image, in the DataLoader workers (torchvision v2 on uint8 H x W): pretraining's augmented views
(:func:`build_train_transform`), its random crop alone (:func:`crop_transform`), the evaluation center
crop (:func:`build_eval_transform`) and fine-tuning's random resized crop (:func:`kad_crop_transform`).
All end in the same input: [0, 1], three channels, ImageNet mean/std.

Per batch, on the batch's device: the paper's augmentations (:func:`augment_batch`) and fine-tuning's
flip and rotation (:func:`kad_augment`). The loader then only crops (a slice of a uint8 array, cheap)
and the heavy per-pixel work runs on the accelerator, so the CPU cores stop being the limit. Per sample,
as the loader's ``paper`` pipeline (:func:`build_train_transform`) after its crop: horizontal flip (p =
0.5), rotation by a uniform angle in ±``rotation_degrees`` about the centre with nearest-neighbour
sampling and black corners, autocontrast (p = 0.5: each image stretched to its own min..max), then [0,
1] scaling, three channels and the ImageNet normalisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTS = ("paper", "official")
KAD_AUGMENTS = ("kad", "none")  # fine-tuning: the random resized crop, or the center crop alone
KAD_CROP_SCALE = (0.2, 1.0)
KAD_ROTATION_DEGREES = 10.0


def _normalise() -> list[v2.Transform]:
    return [
        v2.ToDtype(torch.float32, scale=True),
        v2.Grayscale(num_output_channels=3),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        v2.ToPureTensor(),
    ]


def build_train_transform(crop_size: int, augment: str = "paper", rotation_degrees: float = 15.0) -> v2.Compose:
    """uint8 HxW (numpy or 1xHxW tensor) -> one augmented float32 3 x crop x crop view.

    ``paper`` (Sec. IV-A): random crop, horizontal flip, rotation in ±``rotation_degrees`` (the paper
    allows up to 180), autocontrast. ``official`` (the authors' code): random crop, horizontal and
    vertical flips, rotation ±30, perspective (0.5, p 0.5), autocontrast; its RandomGrayscale is a no-op
    on grayscale images and is left out, and its bicubic perspective is bilinear here because
    torchvision supports bicubic only for PIL images. Flips and autocontrast use p = 0.5.
    """
    if augment == "paper":
        steps = [
            v2.RandomCrop(crop_size),
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(rotation_degrees),
            v2.RandomAutocontrast(),
        ]
    elif augment == "official":
        steps = [
            v2.RandomCrop(crop_size),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomRotation(30),
            v2.RandomPerspective(distortion_scale=0.5, p=0.5, interpolation=v2.InterpolationMode.BILINEAR),
            v2.RandomAutocontrast(),
        ]
    else:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return v2.Compose([v2.ToImage(), *steps, *_normalise()])


def crop_transform(crop_size: int) -> v2.Compose:
    """uint8 HxW -> uint8 1 x crop x crop: the paper pipeline's random crop alone."""
    return v2.Compose([v2.ToImage(), v2.RandomCrop(crop_size), v2.ToPureTensor()])


def build_eval_transform(crop_size: int) -> v2.Compose:
    """uint8 HxW -> float32 3 x crop x crop: a center crop (no resize) and the training normalisation."""
    return v2.Compose([v2.ToImage(), v2.CenterCrop(crop_size), *_normalise()])



def kad_crop_transform(crop_size: int, augment: str) -> v2.Compose:
    """uint8 H x W -> uint8 1 x crop x crop for fine-tuning: ``kad``'s random resized crop (area
    ``KAD_CROP_SCALE``), or ``none``'s center crop."""
    if augment == "kad":
        crop = v2.RandomResizedCrop(crop_size, scale=KAD_CROP_SCALE, antialias=True)
    elif augment == "none":
        crop = v2.CenterCrop(crop_size)
    else:
        raise ValueError(f"finetune augment must be one of {', '.join(KAD_AUGMENTS)}, got {augment!r}")
    return v2.Compose([v2.ToImage(), crop, v2.ToPureTensor()])


def kad_augment(images: Tensor, generator: torch.Generator | None) -> Tensor:
    """uint8 B x 1 x H x W -> float32 B x 3 x H x W on the images' device, for fine-tuning.

    With a ``generator`` (on that device), each image is flipped with p = 0.5 and rotated by a uniform
    angle within ±``KAD_ROTATION_DEGREES``; without one, it is only normalised.
    """
    n, device = images.shape[0], images.device
    if generator is None:
        flip, angles = torch.zeros(n, dtype=torch.bool, device=device), torch.zeros(n, device=device)
    else:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        angles = (torch.rand(n, generator=generator, device=device) * 2 - 1) * math.radians(KAD_ROTATION_DEGREES)
    return apply_augmentations(images, flip, angles, torch.zeros(n, dtype=torch.bool, device=device))


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
