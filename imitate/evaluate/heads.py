"""Training a dense task's head on a frozen encoder: AdamW, early stopping on the validation loss.

The paper's dense protocol (§IV-B, segmentation and detection): AdamW lr 5e-4, weight decay 1e-6, up to
50 epochs, stopping once the validation loss has not decreased for 10 epochs ("steps" in the paper; we
read it as epochs, as MGCA's EarlyStopping does). The state of the epoch with the lowest validation loss
(the earliest on ties) is the one tested (:func:`imitate.evaluate.fit.fit`).

The head sees the encoder's outputs (:mod:`imitate.evaluate.data.stage_batches`), so only the head is
optimised. The encoder's BatchNorm (``frozen_bn``, :mod:`imitate.models.frozen`) either stays in eval mode,
so the encoder stays as loaded and its outputs can be cached, or, as in MGCA's dense protocol (the default),
trains with the head: :func:`head_encoder` then gives the run its own copy of the encoder, whose outputs
depend on the batch and are never cached, and :func:`with_encoder` makes its running statistics part of the
head's saved best state. The loss of a batch is the task's (:data:`HeadLoss`). Epoch order and augmentation
are drawn from the seed, so a CPU run is repeatable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from imitate.evaluate.data.stage_batches import StageBatch, StageBatches, StageCache
from imitate.evaluate.device import autocast, deterministic_on_cpu
from imitate.evaluate.fit import FitResult, Selection, fit
from imitate.evaluate.settings import from_block
from imitate.models.frozen import FrozenStages, check_batchnorm

log = logging.getLogger(__name__)

HeadLoss = Callable[[nn.Module, StageBatch], Tensor]
T = TypeVar("T")
DEFAULT_CACHE_GIB = 4.0


@dataclass(frozen=True)
class HeadSettings:
    """Optimisation and input of a dense task (paper defaults); ``device`` is ``cpu`` or ``cuda``."""

    epochs: int = 50
    patience: int = 10
    lr: float = 5e-4
    weight_decay: float = 1e-6
    batch_size: int = 16
    input_size: int = 512
    workers: int = 0
    device: str = "cpu"
    seed: int = 0
    cache_gib: float = DEFAULT_CACHE_GIB  # stage outputs kept per encoder (imitate.evaluate.data.stage_batches)
    frozen_bn: str = "train"  # the frozen encoder's BatchNorm: "train" (MGCA's) or "eval" (imitate.models.frozen)

    def __post_init__(self) -> None:
        if min(self.epochs, self.patience, self.batch_size) < 1 or self.input_size < 32 or self.workers < 0:
            raise ValueError(f"need epochs, patience, batch_size >= 1, input_size >= 32, workers >= 0: {self}")
        if not self.cache_gib >= 0:
            raise ValueError(f"cache_gib must be >= 0, got {self.cache_gib}")
        check_batchnorm(self.frozen_bn, "frozen_bn")
        if torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


def dense_settings(cls: type[T], block: Mapping[str, Any], where: str, *, device: str, seed: int) -> T:
    """A dense task's settings ``cls`` from its block: the :class:`HeadSettings` keys (with ``device`` and
    ``seed``) make its ``head``, the other keys its own fields."""
    head_keys = {f.name for f in fields(HeadSettings)}
    head = from_block(HeadSettings, {k: v for k, v in block.items() if k in head_keys}, where, device=device, seed=seed)
    return from_block(cls, {k: v for k, v in block.items() if k not in head_keys}, where, head=head)


def stage_cache(encoder: FrozenStages, stages: Iterable[int], settings: HeadSettings) -> StageCache:
    """A cache of ``encoder``'s ``stages`` for a head trained with ``settings`` (its batch, device, budget)."""
    return StageCache(encoder, tuple(stages), batch_size=settings.batch_size, device=settings.device,
                      budget_bytes=int(settings.cache_gib * 2**30), workers=settings.workers)


def head_encoder(
    encoder: FrozenStages, stages: Iterable[int], settings: HeadSettings, cache: StageCache | None, *, name: str
) -> tuple[FrozenStages, StageCache]:
    """The encoder and cache a head trains with under ``settings.frozen_bn``.

    ``eval``: ``encoder`` itself and ``cache`` (a new one if None). ``train``: a copy of ``encoder`` whose
    BatchNorm follows the head's train/eval mode (the caller's running statistics stay as loaded for its next
    run), with a cache that stores nothing, since its outputs depend on the batch and on training so far.
    """
    if settings.frozen_bn == "eval":
        return encoder, cache if cache is not None else stage_cache(encoder, stages, settings)
    log.info("%s: frozen_bn train: the frozen encoder's BatchNorm normalises each training batch by its own "
             "statistics and updates its running ones (MGCA's), so its outputs are computed every epoch, "
             "not cached", name)
    encoder = encoder.with_batchnorm("train")
    return encoder, stage_cache(encoder, stages, replace(settings, cache_gib=0))


class WithEncoder(nn.Module):
    """A head and the encoder whose BatchNorm trains beside it: ``train()``/``eval()`` reach both and the state
    (the best epoch's, which :func:`fit_head` restores) holds the encoder's running statistics; ``forward``
    is the head's (the encoder runs in the stage batches)."""

    def __init__(self, head: nn.Module, encoder: FrozenStages) -> None:
        super().__init__()
        self.head = head
        self.encoder = encoder

    def forward(self, stages: list[Tensor]) -> Any:
        return self.head(stages)


def with_encoder(head: nn.Module, encoder: FrozenStages) -> nn.Module:
    """``head`` alone when ``encoder``'s BatchNorm stays in eval mode, else :class:`WithEncoder`."""
    return head if encoder.batchnorm == "eval" else WithEncoder(head, encoder)


def fit_head(
    head: nn.Module,
    head_loss: HeadLoss,
    train: StageBatches,
    val: StageBatches,
    settings: HeadSettings,
    *,
    name: str,
) -> FitResult:
    """Train ``head``'s trainable parameters on ``train``; leave it holding the lowest validation loss state."""
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"{name}: needs at least 2 training and 1 validation images, got {len(train)} and {len(val)}")
    device = torch.device(settings.device)
    trainable = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)

    def train_epoch(epoch: int) -> tuple[float, int]:
        epoch_seed = int(np.random.SeedSequence([settings.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator(device=device).manual_seed(epoch_seed)  # used only by augmented batches
        return _train_epoch(head, head_loss, train.epoch(epoch, shuffle=True, generator=generator), optimizer, device)

    with deterministic_on_cpu(device):
        return fit(head, train_epoch, lambda: validation_loss(head, head_loss, val, device), epochs=settings.epochs,
                   selection=Selection("loss", maximise=False, patience=settings.patience), name=name)


def _train_epoch(
    head: nn.Module,
    head_loss: HeadLoss,
    batches: Iterator[StageBatch],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[float, int]:
    """One pass over ``batches``: the mean loss per batch, and how many images the batches held."""
    head.train()
    total, count, images = 0.0, 0, 0
    for batch in batches:
        with autocast(device):
            loss = head_loss(head, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        count += 1
        images += len(batch[2])
    return total / max(count, 1), images


@torch.no_grad()
def validation_loss(head: nn.Module, head_loss: HeadLoss, images: StageBatches, device: torch.device) -> float:
    """The mean loss per batch of ``images``, in eval mode, without augmentation."""
    head.eval()
    losses = []
    for batch in images.epoch(0, shuffle=False):
        with autocast(device):
            losses.append(float(head_loss(head, batch)))
    return float(np.mean(losses)) if losses else math.inf
