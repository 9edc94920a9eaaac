"""Linear probing of frozen features: one linear layer, the epoch chosen on validation.

``binary`` and ``multilabel`` datasets get a sigmoid per label and binary cross-entropy; the epoch is
chosen on validation macro AUC and the test metrics are ``auc_macro`` and ``auc:<label>``.
``multiclass`` datasets (one-hot labels, e.g. COVIDx) get a softmax and cross-entropy; the epoch is
chosen on validation accuracy (the paper's COVIDx metric) and the test metrics are ``acc`` and
``auc_macro``, the one-vs-rest AUC of the softmax probabilities averaged over the classes. Ties go to
the earliest epoch.

Features are standardised with the training subset's mean and standard deviation before the linear
layer. That is a fixed affine map, so the family of probes is unchanged; it only makes one learning rate
fit encoders whose feature scales differ by orders of magnitude (random init vs pretrained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from imitate.datasets.base import KINDS
from imitate.evaluate.metrics import accuracy, macro_auc, per_label_auc

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class ProbeSettings:
    """Optimisation of the linear head (paper §IV-B: AdamW 5e-4, betas 0.9/0.999, batch 8, 50 epochs).

    The weight decay is not in the paper; 1e-6 is MGCA's, whose protocol the paper follows.
    """

    epochs: int = 50
    lr: float = 5e-4
    batch_size: int = 8
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0


@dataclass(frozen=True)
class ProbeResult:
    """Test metrics of the probe chosen on validation, how it was chosen, and its test probabilities.

    ``val_scores`` holds the validation score (macro AUC, or accuracy for multiclass) of every epoch.
    """

    metrics: dict[str, float]
    best_epoch: int
    best_val_score: float
    val_scores: tuple[float, ...]
    n_train: int
    n_test: int
    test_probabilities: np.ndarray


def class_indices(labels: np.ndarray, where: str) -> np.ndarray:
    """Class index of every row of a one-hot (N, C) label matrix; ValueError naming ``where`` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.isin(labels, (0.0, 1.0)).all() or not (labels.sum(1) == 1).all():
        raise ValueError(f"{where}: multiclass labels must be one-hot rows (exactly one 1 per image)")
    return labels.argmax(1)


def classification_metrics(
    kind: str, labels: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str]
) -> dict[str, float]:
    """Test metrics of one kind of dataset, by name: see the module docstring."""
    _check_kind(kind)
    if len(label_names) != labels.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {labels.shape[1]} label columns")
    if kind == "multiclass":
        truth = class_indices(labels, "test")
        return {"acc": accuracy(truth, probabilities.argmax(1)), "auc_macro": macro_auc(labels, probabilities)}
    per_label = per_label_auc(labels, probabilities)
    return {"auc_macro": macro_auc(labels, probabilities)} | {
        f"auc:{name}": float(auc) for name, auc in zip(label_names, per_label, strict=True)
    }


def validation_score(kind: str, labels: np.ndarray, probabilities: np.ndarray) -> float:
    """What selects the epoch: accuracy for multiclass, macro AUC otherwise."""
    if kind == "multiclass":
        return accuracy(labels.argmax(1), probabilities.argmax(1))
    return macro_auc(labels, probabilities)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; kinds are {', '.join(KINDS)}")


def _probabilities(kind: str, head: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        logits = head(x)
        return (torch.softmax(logits, 1) if kind == "multiclass" else torch.sigmoid(logits)).numpy()


def linear_probe(
    train: Split,
    val: Split,
    test: Split,
    settings: ProbeSettings,
    *,
    kind: str = "multilabel",
    label_names: Sequence[str],
) -> ProbeResult:
    """Fit a linear head on ``train`` (features, labels); choose the epoch on ``val``; score ``test``.

    Labels are (N, L) 0/1 matrices; for ``kind`` multiclass, one-hot rows.
    """
    _check_kind(kind)
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
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=settings.lr, betas=settings.betas, weight_decay=settings.weight_decay
    )
    best = (-np.inf, 0, {k: v.clone() for k, v in head.state_dict().items()})
    scores = []
    for epoch in range(1, settings.epochs + 1):
        head.train()
        for idx in torch.randperm(len(xt), generator=generator).split(settings.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(xt[idx]), yt[idx]).backward()
            optimizer.step()
        head.eval()
        scores.append(validation_score(kind, val[1], _probabilities(kind, head, xv)))
        if np.isfinite(scores[-1]) and scores[-1] > best[0]:
            best = (scores[-1], epoch, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    test_probabilities = _probabilities(kind, head, xs)
    return ProbeResult(
        metrics=classification_metrics(kind, test[1], test_probabilities, label_names),
        best_epoch=best[1],
        best_val_score=float(best[0]),
        val_scores=tuple(float(s) for s in scores),
        n_train=len(xt),
        n_test=len(xs),
        test_probabilities=test_probabilities,
    )
