"""Batches of a frozen encoder's stage outputs, for the dense heads: encoded once where that is possible.

A dense head (U-Net decoder, YOLOv3 head) trains on a frozen encoder, so wherever the encoder's input is
the same every epoch (the validation and test images, and training images without augmentation) its
outputs are too. :class:`StageCache` encodes such images once and keeps their outputs, on the head's
device, for every later epoch, subset and run on the same encoder: early stopping then costs one head
pass over the validation set per epoch instead of an encoder pass, and detection (no augmentation)
trains its head on stored features alone. Augmented training batches still go through the encoder,
but only the images the augmentation drew (p = 0.5 in segmentation): the others are the stored inputs
unchanged, so their stored outputs are used. Any set that would take the cache past its memory budget
(segmentation at 512 px would keep ~48 MB of ResNet-50 outputs per image, the stem's included, half that in
bf16) is encoded batch by batch every epoch, as before; so is every set when the budget is 0 (an encoder
whose BatchNorm trains, :func:`imitate.evaluate.heads.head_encoder`).

A batch is ``(stages, masks, boxes)``: the kept stage outputs, the masks as float B x 1 x S x S (B x 1 x 0 x 0
for detection) and each image's boxes in input pixels. Shuffled epochs use the permutation of
:func:`imitate.evaluate.data.shard_images.epoch_batches` (same seed, same order, the same lone last image
dropped), so caching changes which values are stored, not which images form a batch. On CPU the stored
outputs equal those computed per batch up to float rounding (convolution kernels may block a batch
differently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

from imitate.evaluate.data.dense import DenseImages, collate_dense
from imitate.evaluate.data.shard_images import epoch_batches, epoch_loader
from imitate.evaluate.device import autocast
from imitate.images.transforms import normalise
from imitate.models.frozen import FrozenStages

log = logging.getLogger(__name__)

StageBatch = tuple[list[Tensor], Tensor, list[Tensor]]
# (images in [0, 1], masks, generator) -> the same, augmented together (segmentation's ShiftScaleRotate),
# and which images it drew (the others come back unchanged)
Augment = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor, Tensor]]


def model_input(images: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """uint8 B x 1 x S x S -> float [0, 1] on ``device`` (what augmentation takes) and the encoder's
    normalised three channels of it (channels_last on CUDA)."""
    unit = images.to(device, non_blocking=True).float().div_(255.0)
    return unit, _normalised(unit)


def _normalised(unit: Tensor) -> Tensor:
    x = normalise(unit)
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def _masks(masks: Tensor, device: torch.device) -> Tensor:
    """uint8 B x S x S masks (B x 0 x 0 without) -> float B x 1 x S x S on ``device``."""
    return masks.to(device, non_blocking=True)[:, None].float()


class StageCache:
    """Stage outputs of one frozen encoder, stored per image key up to ``budget_bytes``.

    ``stages`` are the indices of the encoder's outputs a head takes (segmentation all five, the stem's and
    the four stages', detection ``layer2``-``layer4``). One cache serves one input size and one encoder:
    build a new one per encoder.
    """

    def __init__(self, encoder: FrozenStages, stages: Sequence[int], *, batch_size: int, budget_bytes: int,
                 device: str | torch.device, workers: int = 0) -> None:
        if not stages or min(stages) < 0 or max(stages) >= len(encoder.channels):
            raise ValueError(f"StageCache: stages {list(stages)} are not among the encoder's "
                             f"{len(encoder.channels)}")
        if batch_size < 1 or budget_bytes < 0 or workers < 0:
            raise ValueError(f"StageCache needs batch_size >= 1, budget_bytes >= 0 and workers >= 0, got "
                             f"{batch_size}, {budget_bytes}, {workers}")
        self.encoder = encoder
        self.stages = tuple(stages)
        self.batch_size = batch_size
        self.workers = workers
        self.budget_bytes = budget_bytes
        self.device = torch.device(device)
        self.size: int | None = None
        self.used_bytes = 0
        self._stored: dict[str, tuple[list[Tensor], Tensor]] = {}

    def encode(self, x: Tensor) -> list[Tensor]:
        """The kept stage outputs of normalised inputs ``x`` (no gradients; bf16 under CUDA autocast)."""
        with autocast(self.device):
            outputs = self.encoder(x)
        return [outputs[i] for i in self.stages]

    def batches(self, images: DenseImages, *, augment: Augment | None = None) -> StageBatches:
        """``images`` as stage batches, their outputs stored first (if new and within the budget)."""
        if self.size is None:
            self.size = images.size
        if images.size != self.size:
            raise ValueError(f"StageCache holds {self.size}-px inputs; these images are {images.size} px")
        return StageBatches(self, images, augment, stored=self._store(images))

    def gather(self, keys: Sequence[str]) -> tuple[list[Tensor], Tensor]:
        """The stored stage outputs (one B x C x H x W tensor per stage) and float B x 1 x S x S masks of ``keys``."""
        kept = [self._stored[key] for key in keys]
        stages = [torch.stack([k[0][s] for k in kept]) for s in range(len(self.stages))]
        return stages, _masks(torch.stack([k[1] for k in kept]), self.device)

    def _store(self, images: DenseImages) -> bool:
        """Encode and keep the images not stored yet; False (nothing kept) if they do not fit the budget."""
        new = [i for i, key in enumerate(images.keys) if key not in self._stored]
        if not new:
            return True
        if not self.budget_bytes:  # caching off (e.g. an encoder whose BatchNorm trains): encode nothing here
            return False
        per_image = self._bytes_per_image(images)
        if self.used_bytes + per_image * len(new) > self.budget_bytes:
            log.info("stage cache: %d more images (%.1f MiB) exceed the %.1f MiB budget; encoding them every epoch",
                     len(new), per_image * len(new) / 2**20, self.budget_bytes / 2**20)
            return False
        for start in range(0, len(new), self.batch_size):
            rows = new[start:start + self.batch_size]
            image, mask, _ = collate_dense([images[(0, i)] for i in rows])
            stages = self.encode(model_input(image, self.device)[1])
            for j, i in enumerate(rows):
                self._stored[images.keys[i]] = ([s[j].clone() for s in stages], mask[j].to(self.device).clone())
        self.used_bytes += per_image * len(new)
        return True

    def _bytes_per_image(self, images: DenseImages) -> int:
        """Stage outputs and mask of one image, from the output shapes of a one-image pass."""
        image, mask, _ = collate_dense([images[(0, 0)]])
        stages = self.encode(model_input(image, self.device)[1])
        return sum(s[0].numel() * s.element_size() for s in stages) + mask[0].numel()


class StageBatches:
    """One set of images as batches of stage outputs, from the cache where it holds them (``stored``)."""

    def __init__(self, cache: StageCache, images: DenseImages, augment: Augment | None, *, stored: bool) -> None:
        self.cache = cache
        self.images = images
        self.augment = augment
        self.stored = stored

    def __len__(self) -> int:
        return len(self.images)

    def epoch(self, epoch: int, *, shuffle: bool, generator: torch.Generator | None = None) -> Iterator[StageBatch]:
        """One epoch of batches, augmented when the set has an augmentation and ``generator`` is given."""
        augment = self.augment if generator is not None else None
        if self.stored and augment is None:
            for rows in epoch_batches(len(self.images), self.images.seed, epoch, self.cache.batch_size,
                                      shuffle=shuffle):
                stages, masks = self.cache.gather([self.images.keys[i] for i in rows])
                yield stages, masks, [torch.from_numpy(self.images.boxes(i)) for i in rows]
            return
        cache = self.cache
        loader = epoch_loader(self.images, epoch=epoch, batch_size=cache.batch_size, workers=cache.workers,
                              shuffle=shuffle, pin_memory=cache.device.type == "cuda", collate_fn=collate_dense)
        for items, (images, masks, boxes) in zip(loader.batch_sampler, loader, strict=True):
            rows = [i for _, i in items]
            unit, x = model_input(images, cache.device)
            masks = _masks(masks, cache.device)
            if augment is None:
                yield cache.encode(x), masks, boxes
                continue
            unit, masks, drawn = augment(unit, masks, generator)
            if not self.stored:
                yield cache.encode(_normalised(unit)), masks, boxes
                continue
            stages, _ = cache.gather([self.images.keys[i] for i in rows])  # the undrawn images' outputs
            if bool(drawn.any()):
                for stage, fresh in zip(stages, cache.encode(_normalised(unit[drawn])), strict=True):
                    stage[drawn] = fresh
            yield stages, masks, boxes
