"""The IMITATE pretraining loop, in one process or one per GPU under ``torchrun`` (rank 0 writes).

Per step (:class:`~imitate.train.trainer.Trainer`): two augmented views -> ``ImitateModel`` ->
``ImitateLoss`` -> AdamW, the learning rate following a linear warm-up and a cosine decay per step; a
step whose loss is NaN or infinite is skipped (no update) and counted, and after
``max_skipped_steps`` in a row the run stops. After every epoch the validation loss is computed on the
validate split with the same batches and channel draws each time (fixed loader epoch, forked RNG), the
model of the best epoch so far is kept, and the resumable state is written (``resume.pt``, see
:mod:`imitate.train.progress`); SIGTERM/SIGINT write it too, mid-epoch. After ``patience`` epochs in a
row without a better validation loss (rank 0's, so every rank stops after the same epoch) the run stops
early (the paper's early stopping); the learning-rate schedule still spans the configured ``epochs``.

Outputs in ``out_dir`` at the end: ``checkpoint.pt`` (the full final state; ``torch.load(weights_only=
True)``), ``encoder.safetensors`` (the best epoch's ResNet, torchvision keys, no ``fc``),
``model.safetensors`` (the best epoch's whole ``ImitateModel``, for zero-shot classification and
retrieval: :func:`imitate.models.files.load_model`), ``metrics.jsonl`` (one ``step``
record per batch, one ``epoch`` record per epoch) and ``model_card.json``. Epochs are numbered from 0.
With unfrozen text layers (Table XI) their final and best-epoch states are kept in ``checkpoint.pt`` only.
On CUDA the forward runs under bf16 autocast with channels_last tensors; on CPU it is float32 with
deterministic algorithms, so a rerun with the same seed, resumed or not, writes the same weights.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any, NamedTuple

import torch
from torch import Tensor
from tqdm import tqdm

from imitate.io.files import write_json
from imitate.models.files import (
    ENCODER_FILE,
    ENCODER_KEYS,
    MODEL_FILE,
    MODEL_METADATA_KEY,
    encoder_state,
    export_encoder,
    export_model,
)
from imitate.shards.reader import count_samples, shard_paths
from imitate.train.checkpoint import load_checkpoint, save_checkpoint
from imitate.train.data import build_pretrain_loader, steps_per_epoch
from imitate.train.distributed import Ranks, any_rank, weights_digest
from imitate.train.interrupt import InterruptedRunError, StopFlag, stop_on_signals
from imitate.train.progress import METRICS_NAME, RESUME_NAME, Progress, copy_metrics, open_metrics, remove_resume
from imitate.train.settings import PretrainConfig
from imitate.train.study_text import StudyText
from imitate.train.text import TextLayers, text_card, training_text
from imitate.train.trainer import Batch, Trainer, finite_or_none

log = logging.getLogger(__name__)

LoaderFactory = Callable[..., Iterable[Batch]]


class ShardSplit(NamedTuple):
    """The shards of one split and how many samples they hold."""

    paths: tuple[Path, ...]
    num_samples: int

    @classmethod
    def from_manifest(cls, manifest: str | Path, split: str) -> ShardSplit:
        """The ``split`` shards listed in a shard manifest (paths beside it)."""
        return cls(tuple(shard_paths(manifest, split)), count_samples(manifest, split))


SplitLoader = Callable[[ShardSplit, int, int], Iterable[Batch]]  # (split, epoch, batch_size) -> batches


@dataclass(frozen=True)
class PretrainResult:
    """What a run did; the artifacts are in ``out_dir``."""

    out_dir: Path
    epochs: int  # epochs run: fewer than configured after an early stop
    steps: int
    skipped_steps: int
    best_epoch: int
    best_val_loss: float


@dataclass
class _Run:
    """What the epochs of one run share: the trainer, where the run stands, where its resume state goes."""

    cfg: PretrainConfig
    trainer: Trainer
    progress: Progress
    text: dict[str, Any]
    resume_path: Path
    ranks: Ranks
    resumed: bool

    def save_resume(self, metrics: IO[str]) -> None:
        """Write the resumable state of ``progress`` to ``resume_path``, a copy of the metrics log first (rank 0)."""
        if self.ranks.is_main:
            copy_metrics(metrics, self.resume_path)
            save_checkpoint(self.resume_path, self.trainer.state(self.progress, self.text))


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch; on CPU also require deterministic algorithms (restored afterwards)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def _write_record(fh: IO[str], record: Mapping[str, Any]) -> None:
    fh.write(json.dumps(record, sort_keys=True) + "\n")
    fh.flush()


def _train_epoch(
    trainer: Trainer,
    batches: Iterable[Batch],
    steps: int,
    progress: Progress,
    metrics: IO[str],
    stop: StopFlag,
    max_skips: int,
) -> str | None:
    """Train from batch ``progress.batch`` of ``progress.epoch`` to the end of the epoch, or until a stop.

    Returns None at the end of the epoch, ``"signal"`` after a stop signal, ``"diverged"`` after
    ``max_skips`` consecutive non-finite losses; ``progress`` always names the next batch to train. The
    progress bar shows on a terminal only (``disable=None``); logs get the epoch lines instead.
    """
    last = time.perf_counter()
    remaining = itertools.islice(batches, progress.batch, None)
    bar = tqdm(remaining, total=steps - progress.batch, desc=f"epoch {progress.epoch}", disable=None, mininterval=5)
    for batch in bar:
        record = trainer.train_step(batch)
        progress.batch += 1
        now = time.perf_counter()
        record.update(epoch=progress.epoch, images_per_s=batch["view1"].shape[0] / (now - last))
        last = now
        _write_record(metrics, record)
        bar.set_postfix(step=record["step"], loss=record["total_loss"], img_s=round(record["images_per_s"]),
                        refresh=False)
        if record["total_loss"] is not None and not record["skipped"]:
            progress.epoch_losses.append(record["total_loss"])
        log.debug("epoch %d step %d: loss %s", progress.epoch, record["step"], record["total_loss"])
        if any_rank(stop.signal is not None, trainer.device):  # every rank stops at the same step
            return "signal"
        if trainer.consecutive_skips >= max_skips:
            return "diverged"
    return None


def pretrain(
    cfg: PretrainConfig,
    *,
    shards: ShardSplit,
    val_shards: ShardSplit,
    embeddings: str | Path | Mapping[int, StudyText],
    out_dir: str | Path,
    text_facts: Mapping[str, Any] | None = None,
    build_loader: LoaderFactory = build_pretrain_loader,
    resume: bool = False,
    ranks: Ranks | None = None,
    data: Mapping[str, str] | None = None,
    text_settings: Mapping[str, Any] | None = None,
) -> PretrainResult:
    """Pretrain IMITATE on ``shards``, select the epoch by the loss on ``val_shards``, write ``out_dir``.

    ``embeddings`` is the embeddings Parquet (or its loaded table); ``text_facts`` (what the embeddings
    were made with, :func:`imitate.embed.store.read_embedding_facts`) go into the checkpoint and the
    model card, so that embeddings paired with this model later can be checked against them.
    ``build_loader`` has :func:`imitate.train.data.build_pretrain_loader`'s signature. With ``resume``,
    a run continues from ``out_dir/resume.pt`` when there is one (see :mod:`imitate.train.progress`);
    SIGTERM or SIGINT stops it after the current step with that file written
    (:class:`~imitate.train.interrupt.InterruptedRunError`). Under ``torchrun`` every rank calls this with
    its ``ranks`` (:func:`imitate.train.distributed.init_distributed`); each trains on its share of the
    shards and only rank 0 writes files. ``data`` (name -> sha256 of the inputs) goes into the model card.
    With ``cfg.text_unfreeze`` > 0 the embeddings file must hold token ids and ``text_settings`` (the
    ``embed:`` block) names the text encoder whose last layers train too (:mod:`imitate.train.text`).
    """
    ranks = ranks or Ranks()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    text = dict(text_facts or {})
    table, text_dim, text_layers = training_text(cfg, embeddings, text_settings, text)
    cfg = replace(cfg, model=replace(cfg.model, text_dim=text_dim))
    steps = steps_per_epoch(shards.num_samples, cfg.batch_size, ranks.world_size)
    _log_plan(cfg, shards, val_shards, steps, device)
    loader = _split_loader(build_loader, cfg, table, ranks)
    with _seeded(cfg.seed, device), stop_on_signals() as stop:
        run = _start(cfg, device, steps, ranks, out_dir / RESUME_NAME, resume, text, text_layers)
        val_batches = loader(val_shards, 0, min(cfg.batch_size, val_shards.num_samples // ranks.world_size))
        metrics_path = out_dir / METRICS_NAME if ranks.is_main else Path(os.devnull)
        with open_metrics(metrics_path, run.trainer.step if run.resumed and ranks.is_main else None) as metrics:
            while run.progress.epoch < cfg.epochs and not run.progress.stopped_early:
                _run_epoch(run, loader, shards, val_batches, steps, metrics, stop)
    return _finish(run, out_dir, shards, val_shards, data)


def _log_plan(
    cfg: PretrainConfig, shards: ShardSplit, val_shards: ShardSplit, steps: int, device: torch.device
) -> None:
    """Log what the run will train on, for how long, and where."""
    log.info(
        "pretraining %s on %d images (%d steps/epoch x %d epochs), %d validation images, device %s",
        cfg.model.backbone, shards.num_samples, steps, cfg.epochs, val_shards.num_samples, device,
    )
    if cfg.crop_only:
        log.info("augmentations run on the GPU, on uint8 crops from the loader")


def _split_loader(
    build_loader: LoaderFactory, cfg: PretrainConfig, table: Mapping[int, StudyText], ranks: Ranks
) -> SplitLoader:
    """This rank's batches of a split for an epoch, by ``build_loader`` with the run's data settings."""

    def loader(split: ShardSplit, epoch: int, batch_size: int) -> Iterable[Batch]:
        return build_loader(
            [str(p) for p in split.paths],
            table,
            crop_size=cfg.crop_size,
            batch_size=batch_size,
            num_samples=split.num_samples,
            workers=cfg.workers,
            seed=cfg.seed,
            epoch=epoch,
            augment=cfg.augment,
            rotation_degrees=cfg.rotation_degrees,
            rank=ranks.rank,
            world_size=ranks.world_size,
            crop_only=cfg.crop_only,
        )

    return loader


def _start(
    cfg: PretrainConfig,
    device: torch.device,
    steps: int,
    ranks: Ranks,
    resume_path: Path,
    resume: bool,
    text: dict[str, Any],
    text_layers: TextLayers | None,
) -> _Run:
    """The run's trainer (its model drawn from the seeded RNG) and progress, from ``resume_path`` with ``resume``.

    A fresh run has rank 0 delete an older run's ``resume_path``, so that it is never continued as that one.
    """
    trainer = Trainer(cfg, device, cfg.epochs * steps, ranks, text_layers)
    progress, resumed = Progress(), resume and resume_path.exists()
    if resumed:
        progress = trainer.restore(load_checkpoint(resume_path), resume_path, text)
        log.info("resuming from %s at epoch %d, batch %d", resume_path, progress.epoch, progress.batch)
    elif ranks.is_main:
        remove_resume(resume_path)
    return _Run(cfg, trainer, progress, text, resume_path, ranks, resumed)


def _run_epoch(
    run: _Run,
    loader: SplitLoader,
    shards: ShardSplit,
    val_batches: Iterable[Batch],
    steps: int,
    metrics: IO[str],
    stop: StopFlag,
) -> None:
    """Train the rest of epoch ``run.progress.epoch``, validate, keep the best model, save the resume state.

    After a stop signal or ``max_skipped_steps`` non-finite losses in a row, the resume state is saved and
    :class:`~imitate.train.interrupt.InterruptedRunError` or RuntimeError raised.
    """
    cfg, trainer, progress = run.cfg, run.trainer, run.progress
    epoch, start = progress.epoch, time.perf_counter()
    batches = loader(shards, epoch, cfg.batch_size)
    stopped = _train_epoch(trainer, batches, steps, progress, metrics, stop, cfg.max_skipped_steps)
    if stopped is not None:
        run.save_resume(metrics)
        if stopped == "signal":
            raise InterruptedRunError(stop.signal or signal.SIGTERM, str(run.resume_path))
        raise RuntimeError(
            f"{cfg.max_skipped_steps} consecutive steps had a non-finite loss (step {trainer.step}); "
            f"the run stopped. State saved to {run.resume_path}; lower the learning rate or check the data"
        )
    train_loss, val = progress.train_loss(), trainer.validate(val_batches)
    improved = progress.note_validation(epoch, val["total_loss"])
    if improved:
        progress.best_model = _cpu_copy(trainer.model.state_dict())
        progress.best_text = None if trainer.text is None else _cpu_copy(trainer.text.trainable_state())
    seconds = time.perf_counter() - start
    # the record first: a kill between the two leaves it beyond the last checkpoint, so cut
    _write_record(metrics, _epoch_record(trainer, epoch, train_loss, val, improved, seconds))
    progress.epoch, progress.batch, progress.epoch_losses = epoch + 1, 0, []
    out_of_patience = run.ranks.is_main and progress.out_of_patience(cfg.patience)
    progress.stopped_early = any_rank(out_of_patience, trainer.device) and progress.epoch < cfg.epochs
    run.save_resume(metrics)
    log.info(
        "epoch %d: train loss %.4f, val loss %.4f%s (%.0f s)",
        epoch, train_loss, val["total_loss"], " (best)" if improved else "", seconds,
    )
    if progress.stopped_early:
        log.info("early stop after epoch %d: no better validation loss for %d epochs", epoch, cfg.patience)


def _finish(
    run: _Run, out_dir: Path, shards: ShardSplit, val_shards: ShardSplit, data: Mapping[str, str] | None
) -> PretrainResult:
    """After the last epoch: rank 0 writes the final state, the best epoch's exports and the model card.

    The resume state is deleted once they are written; a run whose validation loss was never finite
    exports nothing.
    """
    cfg, trainer, progress, ranks = run.cfg, run.trainer, run.progress, run.ranks
    if progress.best_model is None or progress.best_epoch is None or progress.best_val_loss is None:
        raise RuntimeError(f"{out_dir}: the validation loss was never finite; no encoder or model was written")
    best = (progress.best_epoch, progress.best_val_loss)
    log.info("rank %d of %d: final weights sha256 %s", ranks.rank, ranks.world_size, weights_digest(trainer.module))
    if ranks.is_main:
        save_checkpoint(out_dir / "checkpoint.pt", trainer.state(progress, run.text))
        export_encoder(out_dir / ENCODER_FILE, encoder_state(progress.best_model), cfg.model.backbone, best[0])
        export_model(out_dir / MODEL_FILE, progress.best_model, cfg.model, best[0], run.text)
        card = _model_card(cfg, trainer, progress, shards, val_shards, run.text)
        write_json(out_dir / "model_card.json", {**card, "data_sha256": dict(data or {})})
        remove_resume(run.resume_path)
    return PretrainResult(out_dir, progress.epoch, trainer.step, trainer.skipped, *best)


def _cpu_copy(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A detached, contiguous CPU copy that later steps cannot change."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _epoch_record(
    trainer: Trainer, epoch: int, train_loss: float, val: Mapping[str, float], best: bool, seconds: float
) -> dict[str, Any]:
    return {
        "type": "epoch",
        "epoch": epoch,
        "step": trainer.step,
        "train_loss": finite_or_none(train_loss),
        **{f"val_{k}": finite_or_none(v) for k, v in val.items()},
        "best": best,
        "seconds": seconds,
    }


def _model_card(
    cfg: PretrainConfig,
    trainer: Trainer,
    progress: Progress,
    shards: ShardSplit,
    val_shards: ShardSplit,
    text: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "config": asdict(cfg),
        "text_embeddings": dict(text),
        "text_unfreeze": cfg.text_unfreeze,
        "text_lr": cfg.text_layers_lr,
        "trainable_parameters": trainer.trainable_parameters(),
        **({} if trainer.text is None else {"text_encoder": text_card(trainer.text, cfg)}),
        "epochs_run": progress.epoch,
        "stopped_early_after_epoch": progress.epoch - 1 if progress.stopped_early else None,
        "steps": trainer.step,
        "skipped_steps": trainer.skipped,
        "best_epoch": progress.best_epoch,
        "best_val_loss": progress.best_val_loss,
        "train_images": shards.num_samples,
        "val_images": val_shards.num_samples,
        "encoder": {
            "file": ENCODER_FILE,
            "backbone": cfg.model.backbone,
            "epoch": progress.best_epoch,
            "keys": ENCODER_KEYS,
        },
        "model": {
            "file": MODEL_FILE,
            "epoch": progress.best_epoch,
            "keys": "ImitateModel state_dict",
            "metadata_key": MODEL_METADATA_KEY,
        },
    }
