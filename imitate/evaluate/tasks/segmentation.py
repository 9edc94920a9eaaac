"""Segmentation on a frozen encoder (paper §IV-B, Table V): train a U-Net decoder, report test Dice.

The protocol, as the paper states it after MGCA [4]: images and masks at 512 x 512, the encoder frozen
and only smp's U-Net decoder trained (:mod:`imitate.models.unet`), AdamW lr 5e-4 / weight decay 1e-6, up to
50 epochs with early stopping on the validation loss (:func:`imitate.evaluate.heads.fit_head`),
batch 16 (RSNA) / 8 (SIIM); Dice at threshold 0.5 (:mod:`imitate.evaluate.metrics.dense`). The frozen
encoder's BatchNorm trains on the training batches as in MGCA (``frozen_bn``, :mod:`imitate.models.frozen`).

Loss: :func:`imitate.losses.segmentation.segmentation_loss` (``alpha x focal + Dice``).

Augmentation: "the same data augmentation techniques as in [4]", i.e. MGCA's albumentations
``ShiftScaleRotate(shift_limit=0, scale_limit=0.1, rotate_limit=10, p=0.5, border_mode=BORDER_CONSTANT)``
on the training images (mgca/datasets/segmentation_dataset.py): with p = 0.5 a scale in [0.9, 1.1] and a
rotation in [-10°, 10°] about the centre, no shift, zeros outside (black film, empty mask).
:func:`augment_pairs` draws the same affine per image for the image (bilinear) and its mask (nearest) on
the device, the whole batch at once.

SIIM's training set (MGCA, the paper's [4]): every positive image and as many random negatives
(:func:`balanced_keys`, applied by the caller before the images are built; ``negatives_per_positive``
in :class:`Settings` carries the ratio, None for RSNA, which keeps all images).

On CPU a run is repeatable for a seed (decoder initialisation, epoch order and augmentation are seeded,
deterministic algorithms enforced); on CUDA it runs in bf16 autocast with channels_last and is not bitwise
reproducible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imitate.evaluate.data.dense import DenseImages, is_positive
from imitate.evaluate.data.stage_batches import StageBatch, StageBatches, StageCache
from imitate.evaluate.dense import DenseJob, run_dense
from imitate.evaluate.device import autocast, deterministic_on_cpu, model_device
from imitate.evaluate.fit import EpochScore
from imitate.evaluate.heads import HeadSettings, dense_settings, fit_head, head_encoder, with_encoder
from imitate.evaluate.metrics.dense import DiceAccumulator
from imitate.evaluate.request import EvalRequest
from imitate.losses.segmentation import segmentation_loss
from imitate.models.frozen import FrozenStages
from imitate.models.unet import DECODER_CHANNELS, UNetHead

log = logging.getLogger(__name__)

AUGMENT_P = 0.5
SCALE_LIMIT = 0.1
ROTATION_DEGREES = 10.0


@dataclass(frozen=True)
class Settings:
    """A segmentation run: the head's optimisation and input, the loss weight, augmentation and threshold.

    ``negatives_per_positive`` is the training set's negatives per positive image for :func:`balanced_keys`
    (1 for SIIM as in MGCA; None keeps every image). ``decoder_channels`` are the widths of smp's five
    U-Net decoder blocks (smp's default by default; narrower ones make a CPU demo affordable).
    """

    head: HeadSettings = field(default_factory=HeadSettings)
    alpha: float = 10.0
    augment: bool = True
    threshold: float = 0.5
    negatives_per_positive: float | None = None
    decoder_channels: tuple[int, ...] = DECODER_CHANNELS

    def __post_init__(self) -> None:
        if not self.alpha >= 0 or not 0 < self.threshold < 1:
            raise ValueError(f"segmentation needs alpha >= 0 and 0 < threshold < 1, got {self.alpha}, {self.threshold}")
        if self.negatives_per_positive is not None and not self.negatives_per_positive >= 0:
            raise ValueError(f"negatives_per_positive must be >= 0 or None, got {self.negatives_per_positive}")

    @classmethod
    def from_block(cls, block: Mapping[str, Any], *, device: str, seed: int) -> Settings:
        """The settings of an ``evaluate.segmentation`` block (its head keys make the :class:`HeadSettings`)."""
        return dense_settings(cls, block, "evaluate.segmentation", device=device, seed=seed)


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == has no single truth value
class PreviewImage:
    """One test image at the input size with its ground truth and thresholded prediction."""

    key: str
    image: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray


@dataclass(frozen=True)
class SegmentationResult:
    """Test Dice (``dice``, ``dice_positive``, ``dice_negative``) of the best validation epoch, and the run."""

    metrics: dict[str, float]
    best_epoch: int
    n_train: int
    n_test: int
    history: tuple[EpochScore, ...]
    preview: tuple[PreviewImage, ...]


# ---------------------------------------------------------------- augmentation


def augment_pairs(images: Tensor, masks: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """MGCA's ShiftScaleRotate on float B x 1 x H x W images and masks, the same affine for both.

    With p = ``AUGMENT_P`` per image: a scale in 1 ± ``SCALE_LIMIT`` and a rotation within
    ±``ROTATION_DEGREES`` about the centre, no shift (MGCA's ``shift_limit=0``); images bilinear, masks
    nearest, zeros outside. Every draw comes from ``generator`` (on the images' device); images not
    drawn come back unchanged. Returns the images, the masks and which images were drawn (bool B).
    """
    if images.ndim != 4 or images.shape[1] != 1 or masks.shape != images.shape:
        raise ValueError(f"augment_pairs: expected images and masks of one shape B x 1 x H x W, "
                         f"got {tuple(images.shape)} and {tuple(masks.shape)}")
    n, device = images.shape[0], images.device

    def uniform(limit: float) -> Tensor:
        return (torch.rand(n, generator=generator, device=device) * 2 - 1) * limit

    drawn = torch.rand(n, generator=generator, device=device) < AUGMENT_P
    scale = 1 + uniform(SCALE_LIMIT)
    angle = uniform(math.radians(ROTATION_DEGREES))
    if not bool(drawn.any()):
        return images, masks, drawn
    with torch.autocast(device.type, enabled=False):  # the geometry in float32 under the caller's bf16 autocast
        images, masks = images.float(), masks.float()
        grid = F.affine_grid(_sampling_affine(scale, angle, images.shape[-2:]), list(images.shape),
                             align_corners=False)
        moved_images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        moved_masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    keep = drawn[:, None, None, None]
    return torch.where(keep, moved_images, images), torch.where(keep, moved_masks, masks), drawn


def _sampling_affine(scale: Tensor, angle: Tensor, size: torch.Size) -> Tensor:
    """B x 2 x 3 ``affine_grid`` matrices that scale the content by ``scale`` and rotate it by ``angle``
    (radians) about the centre.

    The content's map is ``u -> scale R(angle) u`` in pixels from the centre; a grid gives, for each output
    pixel, where to sample the input, so it holds the inverse, written in affine_grid's [-1, 1] coordinates
    (``D`` = half the side, per axis: ``D^-1 R^-1 D / scale``, no offset).
    """
    height, width = size
    half = torch.tensor([width / 2, height / 2], device=scale.device, dtype=scale.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    inverse = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / scale[:, None, None]
    linear = inverse * half[None, None, :] / half[None, :, None]
    return torch.cat([linear, torch.zeros_like(linear[:, :, :1])], dim=2)


# ---------------------------------------------------------------- training set


def balanced_keys(
    keys: Sequence[str],
    positive: Callable[[str], bool] | Collection[str],
    negatives_per_positive: float | None,
    seed: int,
) -> list[str]:
    """Every positive key and ``round(negatives_per_positive x positives)`` negatives drawn with ``seed``
    from the sorted negatives (all of them if there are fewer); None keeps every key. Sorted output.
    """
    if len(set(keys)) != len(keys):
        raise ValueError("balanced_keys: the keys repeat some images")
    if negatives_per_positive is None:
        return sorted(keys)
    if not negatives_per_positive >= 0:
        raise ValueError(f"negatives_per_positive must be >= 0 or None, got {negatives_per_positive}")
    is_positive = positive if callable(positive) else positive.__contains__
    positives = sorted(k for k in keys if is_positive(k))
    negatives = sorted(k for k in keys if not is_positive(k))
    wanted = round(negatives_per_positive * len(positives))
    if wanted < len(negatives):
        chosen = np.random.default_rng(seed).choice(len(negatives), size=wanted, replace=False)
        negatives = [negatives[i] for i in chosen]
    return sorted(positives + negatives)


# ---------------------------------------------------------------- the run


def segment(
    encoder: FrozenStages,
    train: DenseImages,
    val: DenseImages,
    test: DenseImages,
    settings: Settings,
    *,
    name: str,
    preview: int = 8,
    cache: StageCache | None = None,
) -> SegmentationResult:
    """Train smp's U-Net decoder on ``encoder`` with ``train`` (early stopping on ``val``), Dice on ``test``.

    The images must carry masks (``DenseImages(masks=True)``) at ``settings.head.input_size``. ``preview``
    test images come back for drawing: the first by key among those with a lesion, then the others.
    ``cache`` holds the encoder's outputs of images seen before (e.g. the same validation set for every
    subset); without it one is made for this run. With ``frozen_bn: train`` the run trains the BatchNorm of
    its own copy of ``encoder`` and caches nothing (:func:`imitate.evaluate.heads.head_encoder`).
    """
    head = settings.head
    stride = encoder.reductions[-1]
    if head.input_size % stride:
        raise ValueError(f"{name}: segmentation input_size must be a multiple of {stride}, got {head.input_size}")
    for split, images in (("train", train), ("validate", val), ("test", test)):
        if not images.masks:
            raise ValueError(f"{name}: the {split} images were built without masks; segmentation needs "
                             "DenseImages(..., masks=True)")
        if images.size != head.input_size:
            raise ValueError(f"{name}: the {split} images are {images.size} px, the settings' input_size "
                             f"is {head.input_size}")
    device = torch.device(head.device)
    encoder, cache = head_encoder(encoder, range(len(encoder.channels)), head, cache, name=name)
    with torch.random.fork_rng(devices=[]):  # the decoder's initialisation, without touching the caller's RNG
        torch.manual_seed(head.seed)
        decoder = UNetHead(encoder.backbone.name, encoder.channels, settings.decoder_channels).to(device)
    if device.type == "cuda":
        decoder = decoder.to(memory_format=torch.channels_last)
    decoder = with_encoder(decoder, encoder)

    def head_loss(decoder: nn.Module, batch: StageBatch) -> Tensor:
        stages, masks, _ = batch
        return segmentation_loss(decoder(stages).float(), masks, settings.alpha)

    with deterministic_on_cpu(device):
        train_batches = cache.batches(train, augment=augment_pairs if settings.augment else None)
        val_batches, test_batches = cache.batches(val), cache.batches(test)
    fit = fit_head(decoder, head_loss, train_batches, val_batches, head, name=name)
    with deterministic_on_cpu(device):
        metrics, shown = _test(decoder, test_batches, test, settings, preview)
    log.info("%s: best epoch %d, test %s", name, fit.best_epoch,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return SegmentationResult(metrics, fit.best_epoch, len(train), len(test), fit.history, shown)


@torch.inference_mode()
def _test(
    decoder: nn.Module, batches: StageBatches, test: DenseImages, settings: Settings, preview: int
) -> tuple[dict[str, float], tuple[PreviewImage, ...]]:
    """Dice of the thresholded predictions on ``test``, and the preview images (positives first, by key)."""
    decoder.eval()
    accumulator = DiceAccumulator()
    candidates: dict[bool, list[PreviewImage]] = {True: [], False: []}  # by "has a lesion"; each sorted by key
    start = 0
    for stages, masks, _ in batches.epoch(0, shuffle=False):
        with autocast(model_device(decoder)):
            logits = decoder(stages)
        predicted = (torch.sigmoid(logits.float()[:, 0]) > settings.threshold).cpu().numpy()
        truth = masks[:, 0].cpu().numpy().astype(bool)
        accumulator.add(predicted, truth)
        for offset in range(len(truth) if preview else 0):
            key = test.keys[start + offset]
            shown = candidates[bool(truth[offset].any())]
            if len(shown) < preview or key < shown[-1].key:
                image = test[(0, start + offset)][0][0].numpy()
                shown.append(PreviewImage(key, image, truth[offset].copy(), predicted[offset].copy()))
                shown.sort(key=lambda p: p.key)
                del shown[preview:]
        start += len(truth)
    return accumulator.metrics(), tuple((candidates[True] + candidates[False])[:preview])


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Segmentation rows for every fraction and seed; SIIM-style balanced training sets are drawn with the
    dataset's subset seed, so every method and every evaluation seed trains on the same images."""

    def train_and_test(job: DenseJob, settings: Settings) -> SegmentationResult:
        keys = balanced_keys(job.train_keys, lambda k: is_positive(job.targets[k]), settings.negatives_per_positive,
                             job.dataset.facts.get("seed", 0))
        return segment(job.encoder, job.train_images(keys), job.val, job.test, settings, name=job.name,
                       cache=job.cache)

    return run_dense(request, read_settings=Settings.from_block, stages=lambda encoder: range(len(encoder.channels)),
                     masks=True, train_and_test=train_and_test)
