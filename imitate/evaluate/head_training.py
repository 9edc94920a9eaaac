"""Training a task head on a frozen encoder: AdamW, early stopping on the validation loss, best state kept.

The paper's dense protocol (§IV-B, segmentation and detection): AdamW lr 5e-4, weight decay 1e-6, up to
50 epochs, stopping once the validation loss has not decreased for 10 epochs ("steps" in the paper; we
read it as epochs, as MGCA's EarlyStopping does). The state of the epoch with the lowest validation loss
(the earliest on ties) is the one tested. Only parameters with ``requires_grad`` are optimised, so the
encoder stays as loaded.

The loss of a batch is the task's (:data:`BatchLoss`): it gets the model, the batch and, in training,
a generator for the batch's augmentation on the device (None in validation). Epoch order and
augmentation are drawn from the seed, so a CPU run is repeatable.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from imitate.evaluate.dense_data import DenseImages, collate_dense
from imitate.evaluate.runtime import autocast, deterministic_on_cpu, model_device
from imitate.evaluate.shard_images import epoch_loader

log = logging.getLogger(__name__)

Batch = tuple[Tensor, Tensor, list[Tensor]]
BatchLoss = Callable[[nn.Module, Batch, "torch.Generator | None"], Tensor]


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

    def __post_init__(self) -> None:
        if min(self.epochs, self.patience, self.batch_size) < 1 or self.input_size < 32 or self.workers < 0:
            raise ValueError(f"need epochs, patience, batch_size >= 1, input_size >= 32, workers >= 0: {self}")
        if torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class EpochLoss:
    """One epoch: the mean training and validation loss per batch."""

    epoch: int
    train_loss: float
    val_loss: float


@dataclass(frozen=True)
class FitResult:
    """The best epoch (lowest validation loss), its loss, and every epoch's losses."""

    best_epoch: int
    best_val_loss: float
    history: tuple[EpochLoss, ...]


def batches(images: DenseImages, settings: HeadSettings, epoch: int, *, shuffle: bool) -> torch.utils.data.DataLoader:
    """One epoch of ``images`` in batches (a seeded permutation when ``shuffle``)."""
    return epoch_loader(images, epoch=epoch, batch_size=settings.batch_size, workers=settings.workers,
                        shuffle=shuffle, pin_memory=torch.device(settings.device).type == "cuda",
                        collate_fn=collate_dense)


def fit_head(
    model: nn.Module,
    batch_loss: BatchLoss,
    train: DenseImages,
    val: DenseImages,
    settings: HeadSettings,
    *,
    augment: bool,
    name: str,
) -> FitResult:
    """Train ``model``'s trainable parameters on ``train``; leave it holding the best validation state."""
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"{name}: needs at least 2 training and 1 validation images, got {len(train)} and {len(val)}")
    device = torch.device(settings.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    history: list[EpochLoss] = []
    best_state, best = None, (math.inf, 0)
    with deterministic_on_cpu(device):
        for epoch in range(1, settings.epochs + 1):
            generator = None
            if augment:
                epoch_seed = int(np.random.SeedSequence([settings.seed, epoch]).generate_state(1)[0])
                generator = torch.Generator(device=device).manual_seed(epoch_seed)
            train_loss = _train_epoch(model, batch_loss, batches(train, settings, epoch, shuffle=True), optimizer,
                                      generator)
            val_loss = validation_loss(model, batch_loss, val, settings)
            history.append(EpochLoss(epoch, train_loss, val_loss))
            log.info("%s epoch %d: train loss %.4f, validation loss %.4f", name, epoch, train_loss, val_loss)
            if val_loss < best[0]:
                best = (val_loss, epoch)
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            elif epoch - best[1] >= settings.patience:
                log.info("%s: no better validation loss for %d epochs, stopping", name, settings.patience)
                break
    if best_state is None:
        raise RuntimeError(f"{name}: the validation loss was never finite (diverged?)")
    model.load_state_dict(best_state)
    return FitResult(best[1], best[0], tuple(history))


def _train_epoch(
    model: nn.Module,
    batch_loss: BatchLoss,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None,
) -> float:
    model.train()
    total, count = 0.0, 0
    for batch in loader:
        with autocast(model_device(model)):
            loss = batch_loss(model, batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        count += 1
    return total / max(count, 1)


@torch.no_grad()
def validation_loss(model: nn.Module, batch_loss: BatchLoss, images: DenseImages, settings: HeadSettings) -> float:
    """The mean loss per batch of ``images``, in eval mode, without augmentation."""
    model.eval()
    losses = []
    for batch in batches(images, settings, 0, shuffle=False):
        with autocast(model_device(model)):
            losses.append(float(batch_loss(model, batch, None)))
    return float(np.mean(losses)) if losses else math.inf
