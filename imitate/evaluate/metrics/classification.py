"""Classification metrics computed from scratch (and checked against scikit-learn in the tests), and the
metrics each kind of dataset reports.

``binary`` and ``multilabel`` datasets report ``auc_macro`` and ``auc:<label>`` and select epochs on
validation macro AUC; ``multiclass`` datasets (one-hot labels, e.g. COVIDx) report ``acc`` and
``auc_macro`` (one-vs-rest AUC of the softmax probabilities, averaged over the classes) and select on
validation accuracy, the paper's COVIDx metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imitate.datasets.base import KINDS


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic; NaN if only one class is present."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y_true.sum())
    n_neg = len(y_true) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def per_label_auc(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC of every column of an (N, K) label matrix; NaN for a column with one class only."""
    return np.array([roc_auc(y_true[:, k], scores[:, k]) for k in range(y_true.shape[1])])


def defined_mean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the values that are not NaN (NaN if none is): a macro mean over the labels that have one."""
    values = np.asarray(values, dtype=np.float64)
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if len(valid) else float("nan")


def macro_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUC over the labels that have both classes in ``y_true`` (NaN if none has)."""
    return defined_mean(per_label_auc(y_true, scores))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of predictions equal to the truth (class indices or 0/1 labels)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"accuracy needs two equal, non-empty shapes, got {y_true.shape} and {y_pred.shape}")
    return float((y_true == y_pred).mean())


def f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class of 0/1 vectors; 0 when there are no true and no predicted positives."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = int((y_true & y_pred).sum())
    denominator = int(y_true.sum()) + int(y_pred.sum())
    return 2.0 * tp / denominator if denominator else 0.0


def best_threshold_f1_acc(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """MedKLIP's F1 and accuracy of one label: the F1-maximising threshold of the precision-recall curve.

    As MedKLIP's test script: for each distinct score t, precision P and recall R of ``scores >= t`` (what
    scikit-learn's ``precision_recall_curve`` lists), F1 = 2RP / (R + P), 0 where R + P = 0; the threshold
    is the first maximum in increasing t (``np.argmax`` over that curve: ties go to the lowest threshold).
    The accuracy is then of ``scores > t``, MedKLIP's strict inequality, which counts the images scoring
    exactly t as negative. Both NaN when ``y_true`` has no positive (no recall).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(y_true.sum())
    if n_pos == 0:
        return float("nan"), float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # the last image of each distinct score
    tps = np.cumsum(y_true[order], dtype=np.float64)[last]
    precision, recall = tps / (last + 1), tps / n_pos
    denominator = recall + precision
    f1s = np.divide(2 * recall * precision, denominator, out=np.zeros_like(denominator), where=denominator != 0)
    best = len(f1s) - 1 - int(np.argmax(f1s[::-1]))  # descending scores here: the last maximum is the lowest t
    threshold = ranked[last[best]]
    return float(f1s[best]), float(((scores > threshold) == y_true).mean())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Unweighted mean over ``n_classes`` classes of the one-vs-rest F1 of class-index vectors."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([f1(y_true == k, y_pred == k) for k in range(n_classes)]))


def precision_at_k(relevant: np.ndarray, k: int) -> float:
    """Mean over queries of the share of relevant items among the top ``k`` (``relevant``: (Q, N) bool, ranked)."""
    relevant = np.asarray(relevant, dtype=bool)
    if not 1 <= k <= relevant.shape[1]:
        raise ValueError(f"Precision@{k} needs 1 <= k <= {relevant.shape[1]} candidates")
    return float(relevant[:, :k].mean())


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
    check_kind(kind)
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


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown dataset kind {kind!r}; kinds are {', '.join(KINDS)}")
