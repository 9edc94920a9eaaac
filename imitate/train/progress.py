"""Where a pretraining run stands, so that it can stop at any step and continue bit for bit.

The resumable checkpoint (``resume.pt`` beside the outputs, not a workflow output, so a failed or
preempted job does not lose it, nor the copy of the metrics log kept with it) holds the trainer state
plus a :class:`Progress`: the next batch to train, the losses of the epoch so far, the best epoch with
its whole model's weights (E_v, P(·) and the projectors; the run's exports are made from them), with
unfrozen text layers theirs too, and early stopping's count of epochs since the best one, so that a
resumed run stops where the whole would. The data position is the batch index: the loader of an epoch
is a function of (seed, epoch), so a resumed epoch replays its first batches unused and continues with
exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from torch import Tensor

RESUME_NAME = "resume.pt"
METRICS_NAME = "metrics.jsonl"
# the metrics log as of resume.pt: Snakemake deletes a failed job's outputs, the metrics log among them
METRICS_COPY_NAME = "resume.metrics.jsonl"
BEST_TEXT_KEY = "best_text_encoder"  # the best epoch's trained text layers, when there are any


@dataclass
class Progress:
    """The next batch to train (``epoch``, ``batch``) and what the run has found so far."""

    epoch: int = 0
    batch: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_loss: float | None = None
    best_model: dict[str, Tensor] | None = None  # the ImitateModel state_dict of ``best_epoch``
    best_text: dict[str, Tensor] | None = None  # its trained text layers (unfrozen text encoder only)
    stale_epochs: int = 0  # validated epochs since the best one (all of them while none was finite)
    stopped_early: bool = False

    def note_validation(self, epoch: int, val_loss: float) -> bool:
        """Record epoch ``epoch``'s validation loss; True when it is the best so far (strictly, and finite)."""
        improved = math.isfinite(val_loss) and (self.best_val_loss is None or val_loss < self.best_val_loss)
        if improved:
            self.best_epoch, self.best_val_loss, self.stale_epochs = epoch, val_loss, 0
        else:
            self.stale_epochs += 1
        return improved

    def out_of_patience(self, patience: int | None) -> bool:
        """Whether ``patience`` epochs in a row have not improved on the best (never with None)."""
        return patience is not None and self.stale_epochs >= patience

    def train_loss(self) -> float:
        """Mean of the finite training losses of the current epoch."""
        return sum(self.epoch_losses) / len(self.epoch_losses) if self.epoch_losses else math.nan

    def as_state(self) -> dict[str, Any]:
        return {
            "position": {"epoch": self.epoch, "batch": self.batch},
            "epoch_losses": list(self.epoch_losses),
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "best_model": self.best_model,
            "stale_epochs": self.stale_epochs,
            "stopped_early": self.stopped_early,
            **({} if self.best_text is None else {BEST_TEXT_KEY: self.best_text}),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Progress:
        if "best_model" not in state:
            raise ValueError(
                f"this {RESUME_NAME} was written by an older imitate that kept only the best encoder, not "
                "the best model; delete it to start afresh"
            )
        return cls(
            state["position"]["epoch"],
            state["position"]["batch"],
            list(state["epoch_losses"]),
            state["best_epoch"],
            state["best_val_loss"],
            state["best_model"],
            state.get(BEST_TEXT_KEY),
            state["stale_epochs"],
            state["stopped_early"],
        )


def check_same_config(saved: Mapping[str, Any], current: Mapping[str, Any], checkpoint: Path) -> None:
    """A run resumes only under the configuration it started with."""
    differ = sorted(key for key in set(saved) | set(current) if _plain(saved.get(key)) != _plain(current.get(key)))
    if differ:
        raise ValueError(
            f"{checkpoint} was written by a run with other settings ({', '.join(differ)} differ); "
            f"delete it to start afresh with the new ones"
        )


def _plain(value: Any) -> Any:
    """Tuples and lists compare equal (a checkpoint may hold either)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def open_metrics(path: Path, resumed_step: int | None) -> IO[str]:
    """The metrics log, open for appending and reading back: new, or, when resuming, cut back to the records
    up to ``resumed_step``.

    Steps run after the last checkpoint of an interrupted run are run again, so their records go. A log
    deleted since (Snakemake removes the outputs of a failed job) is taken from the copy beside ``resume.pt``.
    """
    source = path if path.exists() else path.with_name(METRICS_COPY_NAME)
    if resumed_step is None or not source.exists():
        return path.open("w+")
    kept = [line for line in source.read_text().splitlines() if json.loads(line).get("step", 0) <= resumed_step]
    path.write_text("".join(line + "\n" for line in kept))
    return path.open("a+")


def copy_metrics(metrics: IO[str], resume_path: Path) -> None:
    """Copy the metrics log beside ``resume_path``, read through the open log: Snakemake may have deleted the
    file already (the job's shell dies of the SIGTERM that the run survives to save its state)."""
    metrics.seek(0)
    resume_path.with_name(METRICS_COPY_NAME).write_text(metrics.read())


def remove_resume(resume_path: Path) -> None:
    """Delete the resume state and its copy of the metrics log."""
    for path in (resume_path, resume_path.with_name(METRICS_COPY_NAME)):
        path.unlink(missing_ok=True)
