"""Image-to-text retrieval on a 5x200-style set: ranking, Precision@K and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imitate.evaluate.tasks.retrieval import precision_at_ks, rank_candidates, retrieval_metrics
from imitate.evaluate.vision_language import TextTower, embed_images, embed_texts, random_vl_model
from imitate.shards.reader import shard_paths
from tests.helpers.joint_space import CROP, TINY, align, eval_dataset, one_hot, write_dataset_shards

CLASSES = ("Atelectasis", "Cardiomegaly", "Edema")
GROUPS = [0, 1, 2, 0, 1, 2]
REPORTS = [f"Report {i}: findings consistent with {CLASSES[c].lower()}." for i, c in enumerate(GROUPS)]


def five_by_two_hundred(tmp_path: Path, reports: list[str | None] = REPORTS):
    """A tiny 3x2 set: two test images per class, one report each; its shard manifest and dataset."""
    manifest = write_dataset_shards(tmp_path, {"test": GROUPS})
    return manifest, eval_dataset("multiclass", CLASSES, {"test": one_hot(GROUPS, 3)}, reports)


def test_ranking_is_by_decreasing_similarity_with_ties_in_candidate_order():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])
    candidates = np.array([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    np.testing.assert_array_equal(rank_candidates(queries, candidates), [[1, 3, 2, 0], [0, 2, 1, 3]])
    ranking = rank_candidates(queries, candidates)
    metrics = precision_at_ks(np.array([0, 1]), np.array([1, 0, 0, 1]), ranking, [1, 2, 3])
    assert metrics == {"precision@1": 1.0, "precision@2": 0.5, "precision@3": 0.5}


def test_images_aligned_to_their_class_reports_retrieve_them_first(tmp_path: Path, text: TextTower):
    manifest, dataset = five_by_two_hundred(tmp_path)
    joint = random_vl_model(TINY, seed=0)
    axes = np.eye(3, dtype=np.float32)
    align(joint, manifest, {k: axes[c] for k, c in zip(dataset.keys, GROUPS, strict=True)}, text,
          {r: axes[c] for r, c in zip(REPORTS, GROUPS, strict=True)})
    metrics = retrieval_metrics(joint, dataset, manifest, text=text, crop_size=CROP, ks=[1, 2, 3])
    assert metrics == {"precision@1": 1.0, "precision@2": 1.0, "precision@3": pytest.approx(2 / 3)}


def test_precision_at_k_counts_same_class_reports_among_the_top_k(tmp_path: Path, text: TextTower):
    manifest, dataset = five_by_two_hundred(tmp_path)
    joint = random_vl_model(TINY, seed=3)
    metrics = retrieval_metrics(joint, dataset, manifest, text=text, crop_size=CROP, ks=[1, 4])
    images = embed_images(joint, shard_paths(manifest, "test"), crop_size=CROP).values
    similarity = images @ embed_texts(joint, REPORTS, text).T
    for k in (1, 4):
        hits = [sum(GROUPS[j] == GROUPS[q] for j in sorted(range(6), key=lambda j: -similarity[q, j])[:k]) / k
                for q in range(6)]
        assert metrics[f"precision@{k}"] == pytest.approx(np.mean(hits))


def test_retrieval_needs_reports_classes_and_enough_candidates(tmp_path: Path, text: TextTower):
    manifest, dataset = five_by_two_hundred(tmp_path, [*REPORTS[:5], "  "])
    joint = random_vl_model(TINY, seed=0)
    with pytest.raises(ValueError, match=r"'tiny': 1 of 6 test records have no report text \(e.g. \['test05'\]"):
        retrieval_metrics(joint, dataset, manifest, text=text, crop_size=CROP, ks=[5])
    _, dataset = five_by_two_hundred(tmp_path)
    with pytest.raises(ValueError, match=r"K = \[10, 100\] exceed\(s\) the 6 test reports"):
        retrieval_metrics(joint, dataset, manifest, text=text, crop_size=CROP)
    binary = eval_dataset("binary", CLASSES[:1], {"test": np.array([[1], [0], [1], [0], [1], [0]])}, REPORTS)
    with pytest.raises(ValueError, match="dataset 'tiny' is binary: retrieval needs one class per image"):
        retrieval_metrics(joint, binary, manifest, text=text, crop_size=CROP)
    two_hot = eval_dataset("multiclass", CLASSES, {"test": np.ones((6, 3))}, REPORTS)
    with pytest.raises(ValueError, match=r"images \['test00', 'test01'.*\] have none or several"):
        retrieval_metrics(joint, two_hot, manifest, text=text, crop_size=CROP, ks=[1])
