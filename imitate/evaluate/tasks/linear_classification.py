"""Linear classification (Table III): frozen encoder features, a linear probe per subset and seed.

The probe is one linear layer on the features, trained with AdamW and tested at the epoch chosen on
validation (:mod:`imitate.evaluate.fit`): ``binary`` and ``multilabel`` datasets get a sigmoid per label
and binary cross-entropy, ``multiclass`` datasets a softmax and cross-entropy; the validation score and
the test metrics per kind are :mod:`imitate.evaluate.metrics.classification`'s.

Features are standardised with the training subset's mean and standard deviation before the linear
layer. That is a fixed affine map, so the family of probes is unchanged; it only makes one learning rate
fit encoders whose feature scales differ by orders of magnitude (random init vs pretrained).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imitate.evaluate.data.features import Features, extract_features
from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.encoders import frozen_encoder
from imitate.evaluate.fit import FitResult, Selection, fit
from imitate.evaluate.metrics.classification import check_kind, class_indices, classification_metrics, validation_score
from imitate.evaluate.request import EvalRequest, fit_name, fits_progress
from imitate.evaluate.rows import result_rows
from imitate.evaluate.settings import from_block
from imitate.io.progress import ProgressLog
from imitate.shards.reader import count_samples, shard_paths

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Settings:
    """Optimisation of the linear head (paper §IV-B: AdamW 5e-4, betas 0.9/0.999, batch 8, 50 epochs).

    The weight decay is not in the paper; 1e-6 is MGCA's, whose protocol the paper follows.
    """

    epochs: int = 50
    lr: float = 5e-4
    batch_size: int = 8
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0

    @classmethod
    def from_block(cls, block: Mapping[str, Any], *, seed: int = 0) -> Settings:
        """The settings of an ``evaluate.linear_classification`` block."""
        return from_block(cls, block, "evaluate.linear_classification", seed=seed)


@dataclass(frozen=True)
class ProbeResult:
    """Test metrics of the probe chosen on validation, how it was chosen, and its test probabilities."""

    metrics: dict[str, float]
    fit: FitResult
    n_train: int
    n_test: int
    test_probabilities: np.ndarray


def _probabilities(kind: str, head: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        logits = head(x)
        return (torch.softmax(logits, 1) if kind == "multiclass" else torch.sigmoid(logits)).numpy()


def linear_probe(
    train: Split,
    val: Split,
    test: Split,
    settings: Settings,
    *,
    kind: str = "multilabel",
    label_names: Sequence[str],
    name: str = "linear probe",
) -> ProbeResult:
    """Fit a linear head on ``train`` (features, labels); choose the epoch on ``val``; score ``test``.

    Labels are (N, L) 0/1 matrices; for ``kind`` multiclass, one-hot rows.
    """
    check_kind(kind)
    if kind == "multiclass":
        for name, split in (("train", train), ("validate", val), ("test", test)):
            class_indices(split[1], name)
    x_train, y_train = train
    mean = x_train.mean(0, keepdims=True)
    std = x_train.std(0, keepdims=True) + 1e-6

    def prepare(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32))

    xt, xv, xs = prepare(x_train), prepare(val[0]), prepare(test[0])
    if kind == "multiclass":
        yt, loss_fn = torch.from_numpy(y_train.argmax(1)), nn.CrossEntropyLoss()
    else:
        yt, loss_fn = torch.from_numpy(y_train.astype(np.float32)), nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(settings.seed)
    with torch.random.fork_rng(devices=[]):  # the head's initialisation, without touching the caller's RNG
        torch.manual_seed(settings.seed)
        head = nn.Linear(xt.shape[1], y_train.shape[1])
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, betas=settings.betas,
                                  weight_decay=settings.weight_decay)

    def train_epoch(epoch: int) -> tuple[float, int]:
        head.train()
        total, batches = 0.0, 0
        for idx in torch.randperm(len(xt), generator=generator).split(settings.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
            total, batches = total + float(loss.detach()), batches + 1
        head.eval()
        return total / max(batches, 1), len(xt)

    selection = Selection("accuracy" if kind == "multiclass" else "macro AUC", maximise=True)
    result = fit(head, train_epoch, lambda: validation_score(kind, val[1], _probabilities(kind, head, xv)),
                 epochs=settings.epochs, selection=selection, name=name)
    test_probabilities = _probabilities(kind, head, xs)
    return ProbeResult(classification_metrics(kind, test[1], test_probabilities, label_names), result, len(xt),
                       len(xs), test_probabilities)


def split_features(request: EvalRequest, seed: int) -> dict[str, Features]:
    """Features of the train, validate and test shards under the request's frozen encoder for ``seed``."""
    encoder = frozen_encoder(request.method, request.backbone, seed=seed, pretrained=request.weights_file)
    encoder = encoder.to(request.device)
    drawn = f", random encoder of seed {seed}" if request.method.is_random else ""

    def progress(split: str) -> ProgressLog:
        return ProgressLog(log, f"{split} features{drawn}", count_samples(request.shards, split), "images")

    return {
        split: extract_features(encoder, shard_paths(request.shards, split), crop_size=request.crop_size,
                                batch_size=request.batch_size, device=request.device, progress=progress(split))
        for split in ("train", "validate", "test")
    }


def _subset(feats: Features, keys: Sequence[str], dataset: EvalDataset, subsets: Path) -> Split:
    """The training features and labels of one subset's ``keys``, in shard order."""
    position = {k: i for i, k in enumerate(feats.keys)}
    missing = [k for k in keys if k not in position]
    if missing:
        raise ValueError(f"{subsets}: {len(missing)} subset images are not in the train shards, "
                         f"e.g. {missing[:3]} (rerun the dataset and shards stages)")
    idx = np.array(sorted(position[k] for k in keys), dtype=np.int64)
    return feats.values[idx], dataset.targets([feats.keys[i] for i in idx])


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Probe the method at every subset fraction and seed; one result row per metric.

    A pretrained encoder gives the same features for every seed, so they are computed once; a random
    encoder is drawn anew per seed (its spread is part of the baseline).
    """
    dataset = request.dataset()
    info = request.run_info(dataset)
    rows: list[dict[str, object]] = []
    feats: dict[str, Features] | None = None
    fits = fits_progress(request, log)
    for seed in request.seeds:
        fractions = request.training_subsets(seed)
        if feats is None or request.method.is_random:
            feats = split_features(request, seed)
        val = (feats["validate"].values, dataset.targets(feats["validate"].keys))
        test = (feats["test"].values, dataset.targets(feats["test"].keys))
        settings = Settings.from_block(request.settings, seed=seed)
        for fraction, keys in sorted(fractions.items()):
            train = _subset(feats["train"], keys, dataset, request.subsets)
            result = linear_probe(train, val, test, settings, kind=dataset.kind, label_names=dataset.label_names,
                                  name=f"linear probe, {fit_name(request, seed, fraction)}")
            log.info("%s %s %g%% seed %d: %s (epoch %d)", dataset.name, request.method.name, fraction, seed,
                     result.metrics, result.fit.best_epoch)
            fits.advance()
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=len(train[0]),
                                n_test=len(test[1]), best_epoch=result.fit.best_epoch)
    return rows
