"""Zero-shot classification in the joint image-text space (paper §IV-B, Table VI), on the test split.

Prompts are the paper's: positive "<disease>" and negative "No <disease>", from config templates
(``{label}`` and ``No {label}``) with an optional display name per label (``Pleural_Thickening`` ->
``pleural thickening``).

Binary and multilabel datasets: per label, the softmax over an image's cosine similarities to the
positive and the negative prompt gives the probability of the label; the label is predicted when the
positive prompt is the more similar. Metrics per label ``auc:<label>``, ``f1:<label>``, ``acc:<label>``
and their means over the labels ``auc_macro``, ``f1_macro``, ``acc_macro`` (a label whose test images are
all of one class has no AUC and is left out of ``auc_macro``).

The paper's "macro average of AUC, F1 and ACC across all diseases" (Table VI) follows MedKLIP's test
script, which does not decide by the prompts: per label it takes the threshold on the positive
probability that maximises F1 on the test set and reports the accuracy at it
(:func:`imitate.evaluate.metrics.classification.best_threshold_f1_acc`). Those are ``f1_best:<label>``,
``acc_best:<label>``, ``f1_best_macro`` and ``acc_best_macro`` (means over the labels with a positive test
image), the columns to compare with the paper's F1 and ACC; being tuned on the test labels, they are an
upper bound on what a fixed decision rule reaches.

Multiclass datasets (one-hot labels, the 5x200 sets): one positive prompt per class, the softmax over
the classes gives the probabilities and the most similar class is predicted; ``acc`` is the top-1
accuracy. The per-class metrics are one-vs-rest on the one-hot columns and the ``*_macro`` metrics are
their means, exactly as for a multilabel dataset, so the column names are the same for every dataset.
Note that ``acc_macro`` (the mean one-vs-rest accuracy, ``1 - 2 (1 - acc) / C``) is then higher than
``acc``: quote ``acc`` for a multiclass set.

The softmax is over the raw cosines, without a temperature: that rescales the probabilities but
changes neither the AUC nor any prediction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.metrics.classification import accuracy, best_threshold_f1_acc, defined_mean, f1, roc_auc
from imitate.evaluate.request import EvalRequest
from imitate.evaluate.settings import from_block
from imitate.evaluate.vision_language import (
    EmbeddedSplit,
    JointModel,
    TextTower,
    embed_split,
    embed_texts,
    run_vision_language,
)

log = logging.getLogger(__name__)

PLACEHOLDER = "{label}"
PROMPT_KEYS = ("positive", "negative", "names")


@dataclass(frozen=True)
class Prompts:
    """Prompt templates (``{label}`` stands for the label's display name) and display names by label."""

    positive: str = "{label}"
    negative: str = "No {label}"
    names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for role in ("positive", "negative"):
            if PLACEHOLDER not in getattr(self, role):
                raise ValueError(f"zero-shot {role} prompt {getattr(self, role)!r} lacks the {PLACEHOLDER} placeholder")

    def positive_for(self, label: str) -> str:
        """The positive prompt of ``label``."""
        return self.positive.replace(PLACEHOLDER, self.names.get(label, label))

    def negative_for(self, label: str) -> str:
        """The negative prompt of ``label``."""
        return self.negative.replace(PLACEHOLDER, self.names.get(label, label))


def prompts_from_config(block: Mapping[str, Any]) -> Prompts:
    """:class:`Prompts` from a config block ``{positive, negative, names}`` (every key optional)."""
    unknown = sorted(set(block) - set(PROMPT_KEYS))
    if unknown:
        raise ValueError(f"zero-shot prompt settings: unknown key(s) {unknown}; allowed: {list(PROMPT_KEYS)}")
    return Prompts(**{k: dict(v) if k == "names" else str(v) for k, v in block.items()})


@dataclass(frozen=True)
class ZeroShotScores:
    """Per test image: its targets, the probability of each label (or class) and the predictions (0/1)."""

    kind: str
    label_names: tuple[str, ...]
    keys: list[str]
    labels: np.ndarray  # (N, L) 0/1
    probabilities: np.ndarray  # (N, L)
    predictions: np.ndarray  # (N, L) 0/1; multiclass: one-hot of the predicted class


def prompt_texts(kind: str, label_names: tuple[str, ...], prompts: Prompts) -> list[str]:
    """The prompts to embed: the positives, then (binary and multilabel) the negatives, in label order."""
    positives = [prompts.positive_for(label) for label in label_names]
    if kind == "multiclass":
        return positives
    return positives + [prompts.negative_for(label) for label in label_names]


def decide(kind: str, similarities: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and 0/1 predictions from the (N, prompts) cosine similarities of :func:`prompt_texts`."""
    sims = similarities.astype(np.float64)
    if kind == "multiclass":
        shifted = np.exp(sims - sims.max(axis=1, keepdims=True))
        predictions = np.zeros_like(sims)
        predictions[np.arange(len(sims)), sims.argmax(axis=1)] = 1.0  # ties: the first class
        return shifted / shifted.sum(axis=1, keepdims=True), predictions
    positive, negative = sims[:, :n_labels], sims[:, n_labels:]
    # the softmax over (positive, negative), as a logistic of the difference
    return 1.0 / (1.0 + np.exp(negative - positive)), (positive > negative).astype(np.float64)


def score_split(images: EmbeddedSplit, prompt_embeddings: np.ndarray) -> ZeroShotScores:
    """Zero-shot probabilities and predictions of embedded images against embedded :func:`prompt_texts`."""
    if not np.isin(images.labels, (0.0, 1.0)).all():
        raise ValueError(f"dataset {images.dataset!r}: zero-shot needs 0/1 labels")
    if images.kind == "multiclass":
        images.class_indices()  # the labels must be one-hot
    probabilities, predictions = decide(images.kind, images.embeddings @ prompt_embeddings.T, len(images.label_names))
    return ZeroShotScores(images.kind, images.label_names, images.keys, images.labels, probabilities, predictions)


def score_zero_shot(
    joint: JointModel,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    *,
    prompts: Prompts,
    text: TextTower,
    crop_size: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> ZeroShotScores:
    """Score every test image of ``dataset`` (its shards listed in ``shards_manifest``) against the prompts."""
    texts = prompt_texts(dataset.kind, dataset.label_names, prompts)
    prompt_embeddings = embed_texts(joint, texts, text, device=device)
    images = embed_split(joint, dataset, shards_manifest, crop_size=crop_size, batch_size=batch_size, device=device)
    log.info("zero-shot %s: %d test images, prompts %s", dataset.name, len(images.keys), texts)
    return score_split(images, prompt_embeddings)


def classification_metrics(scores: ZeroShotScores) -> dict[str, float]:
    """``auc_macro``, ``f1_macro``, ``acc_macro`` (multiclass: also ``acc``), ``f1_best_macro``,
    ``acc_best_macro``, then every per-label value."""
    y, p, pred = scores.labels, scores.probabilities, scores.predictions
    columns = range(len(scores.label_names))
    best = [best_threshold_f1_acc(y[:, k], p[:, k]) for k in columns]
    per_label = {
        "auc": [roc_auc(y[:, k], p[:, k]) for k in columns],
        "f1": [f1(y[:, k], pred[:, k]) for k in columns],
        "acc": [accuracy(y[:, k], pred[:, k]) for k in columns],
        "f1_best": [f1_best for f1_best, _ in best],
        "acc_best": [acc_best for _, acc_best in best],
    }
    undefined = [name for name, auc in zip(scores.label_names, per_label["auc"], strict=True) if np.isnan(auc)]
    if undefined:
        log.warning("labels %s have test images of one class only: no AUC", undefined)
    out = {
        "auc_macro": defined_mean(per_label["auc"]),
        "f1_macro": float(np.mean(per_label["f1"])),
        "acc_macro": float(np.mean(per_label["acc"])),
    }
    if scores.kind == "multiclass":
        out["acc"] = accuracy(y.argmax(axis=1), pred.argmax(axis=1))
    out |= {f"{metric}_macro": defined_mean(per_label[metric]) for metric in ("f1_best", "acc_best")}
    for metric, values in per_label.items():
        out.update({f"{metric}:{name}": value for name, value in zip(scores.label_names, values, strict=True)})
    return out


def zero_shot_metrics(
    joint: JointModel,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    *,
    prompts: Prompts,
    text: TextTower,
    crop_size: int,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, float]:
    """Zero-shot classification metrics of ``joint`` on the test split of ``dataset`` (see the module doc)."""
    scores = score_zero_shot(
        joint, dataset, shards_manifest, prompts=prompts, text=text, crop_size=crop_size, batch_size=batch_size,
        device=device,
    )
    return classification_metrics(scores)


@dataclass(frozen=True)
class Settings:
    """The ``evaluate.zero_shot`` block: prompt templates (``positive``, ``negative``) and display names."""

    templates: Mapping[str, str] = field(default_factory=lambda: {"positive": "{label}", "negative": "No {label}"})
    names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Settings:
        """The settings of an ``evaluate.zero_shot`` block."""
        return from_block(cls, block, "evaluate.zero_shot")

    def prompts(self) -> Prompts:
        """The :class:`Prompts` these settings describe."""
        return prompts_from_config({**self.templates, "names": dict(self.names)})


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Zero-shot rows: the pretrained model once, a random model per seed."""
    prompts = Settings.from_block(request.settings).prompts()
    return run_vision_language(request, lambda joint, text, dataset: zero_shot_metrics(
        joint, dataset, request.shards, prompts=prompts, text=text, crop_size=request.crop_size,
        batch_size=request.batch_size, device=request.device))
