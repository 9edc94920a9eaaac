"""Image-to-text retrieval on a 5x200 set (paper §IV-B, Table VII, following GLoRIA).

The queries are the test images; the candidates are the reports of the same records, one per image.
Candidates are ranked by the cosine similarity of the joint embeddings, most similar first; equal
similarities keep the candidates' order (a stable sort), so the ranking is deterministic. A candidate is
relevant when its record has the query's class, and ``precision@K`` is the mean over the queries of the
share of relevant candidates among the top K (GLoRIA publishes no script for it; this is its definition).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.metrics.classification import precision_at_k
from imitate.evaluate.request import EvalRequest
from imitate.evaluate.settings import from_block
from imitate.evaluate.vision_language import (
    JointModel,
    TextTower,
    check_text_tower,
    embed_split,
    embed_texts,
    run_vision_language,
)

log = logging.getLogger(__name__)

PAPER_KS = (5, 10, 100)


def rank_candidates(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(Q, N) candidate indices per query, by decreasing cosine similarity of L2-normalised rows."""
    return np.argsort(-(queries @ candidates.T), axis=1, kind="stable")


def precision_at_ks(
    query_classes: np.ndarray, candidate_classes: np.ndarray, ranking: np.ndarray, ks: Sequence[int]
) -> dict[str, float]:
    """``precision@K`` for each of ``ks``, from a :func:`rank_candidates` ranking."""
    relevant = candidate_classes[ranking] == query_classes[:, None]
    return {f"precision@{k}": precision_at_k(relevant, k) for k in ks}


def retrieval_metrics(
    joint: JointModel,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    *,
    text: TextTower,
    crop_size: int,
    ks: Sequence[int] = PAPER_KS,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, float]:
    """Image-to-report ``precision@K`` of ``joint`` on the test split of a multiclass ``dataset``."""
    if dataset.kind != "multiclass":
        raise ValueError(f"dataset {dataset.name!r} is {dataset.kind}: retrieval needs one class per image")
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"retrieval: every K must be >= 1, got {list(ks)}")
    check_text_tower(joint, text)  # before the images, which take longer
    images = embed_split(joint, dataset, shards_manifest, crop_size=crop_size, batch_size=batch_size, device=device)
    too_large = [k for k in ks if k > len(images.keys)]
    if too_large:
        raise ValueError(
            f"dataset {dataset.name!r}: K = {too_large} exceed(s) the {len(images.keys)} test reports to rank"
        )
    no_text = [key for key, t in zip(images.keys, images.texts, strict=True) if t is None or not t.strip()]
    if no_text:
        raise ValueError(
            f"dataset {dataset.name!r}: {len(no_text)} of {len(images.keys)} test records have no report text "
            f"(e.g. {no_text[:3]}); retrieval needs one per image"
        )
    classes = images.class_indices()
    reports = embed_texts(joint, images.texts, text, device=device)
    log.info("retrieval %s: %d images against %d reports", dataset.name, len(images.keys), len(reports))
    return precision_at_ks(classes, classes, rank_candidates(images.embeddings, reports), ks)


@dataclass(frozen=True)
class Settings:
    """The ``evaluate.retrieval`` block: the K of each ``precision@K``."""

    k: tuple[int, ...] = PAPER_KS

    @classmethod
    def from_block(cls, block: Mapping[str, Any]) -> Settings:
        """The settings of an ``evaluate.retrieval`` block."""
        return from_block(cls, block, "evaluate.retrieval")


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Retrieval rows: the pretrained model once, a random model per seed."""
    ks = Settings.from_block(request.settings).k
    return run_vision_language(request, lambda joint, text, dataset: retrieval_metrics(
        joint, dataset, request.shards, ks=ks, text=text, crop_size=request.crop_size,
        batch_size=request.batch_size, device=request.device))
