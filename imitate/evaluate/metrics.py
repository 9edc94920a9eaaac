"""Ranking metrics computed from scratch (and checked against scikit-learn in the tests)."""

from __future__ import annotations

import numpy as np


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


def macro_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Mean AUC over the labels that have both classes in ``y_true`` (NaN if none has)."""
    aucs = per_label_auc(y_true, scores)
    valid = aucs[~np.isnan(aucs)]
    return float(valid.mean()) if len(valid) else float("nan")
