"""The one training loop of every evaluation head: epochs, the best validation epoch, early stopping.

Each epoch trains once (``train_epoch(epoch)``, the caller's pass over its data) and is then scored on
the validation split (``validate()``). The state of the best epoch is copied to the CPU and restored
at the end, so the caller tests the model of that epoch. Ties go to the earliest epoch. With a
``patience``, training stops once that many epochs in a row have not improved on the best (MGCA's
EarlyStopping, which the paper's dense protocol follows); without one, every epoch runs.

Which score and which direction differ by task: the linear probe and fine-tuning maximise a
validation metric (macro AUC, or accuracy for multiclass), the dense heads minimise the validation
loss. The caller draws its own randomness inside ``train_epoch``, so merging the loops changed no
random draw.

Progress goes to the log as :class:`~imitate.io.progress.ProgressLog` lines over the epochs (each tenth of
them, or each minute), ending with the latest epoch's training loss and validation score.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from imitate.io.progress import ProgressLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochScore:
    """One epoch: the mean training loss and the validation score after it."""

    epoch: int
    train_loss: float
    val_score: float


@dataclass(frozen=True)
class FitResult:
    """The best epoch (numbered from 1), its validation score, and every epoch's record."""

    best_epoch: int
    best_score: float
    history: tuple[EpochScore, ...]


@dataclass(frozen=True)
class Selection:
    """How the best epoch is chosen: the score's name (for logs), its direction, and the patience."""

    score: str
    maximise: bool
    patience: int | None = None

    def better(self, score: float, best: float | None) -> bool:
        """Whether ``score`` improves strictly on ``best`` (a non-finite score never does)."""
        if not math.isfinite(score):
            return False
        return best is None or (score > best if self.maximise else score < best)


def fit(
    model: nn.Module,
    train_epoch: Callable[[int], tuple[float, int]],
    validate: Callable[[], float],
    *,
    epochs: int,
    selection: Selection,
    name: str,
) -> FitResult:
    """Train ``model`` for up to ``epochs`` epochs; leave it holding the best validation state.

    ``train_epoch(epoch)`` returns the epoch's mean training loss and the number of images it saw;
    ``validate()`` returns the validation score. RuntimeError when no epoch had a finite score.
    """
    history: list[EpochScore] = []
    best_state, best_score, best_epoch = None, None, 0
    progress = ProgressLog(log, name, epochs, "epochs")
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss, images = train_epoch(epoch)
        seconds = time.perf_counter() - start
        score = validate()
        history.append(EpochScore(epoch, train_loss, score))
        # the per-epoch line stays: benchmarks/gpu_check_dense.py times each epoch from it
        log.info("%s epoch %d: train loss %.4f, validation %s %.4f (training %.1f s, %.1f images/s)",
                 name, epoch, train_loss, selection.score, score, seconds, images / max(seconds, 1e-9))
        progress.advance()
        if selection.better(score, best_score):
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best_score, best_epoch = score, epoch
        elif selection.patience is not None and epoch - best_epoch >= selection.patience:
            log.info("%s: no better validation %s for %d epochs, stopping", name, selection.score, selection.patience)
            break
    if best_state is None or best_score is None:
        raise RuntimeError(f"{name}: the validation {selection.score} was never finite (diverged?)")
    model.load_state_dict(best_state)
    return FitResult(best_epoch, float(best_score), tuple(history))
