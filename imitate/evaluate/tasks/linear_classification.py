"""The linear classification task (Table III): frozen encoder features, a linear probe per subset and seed."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from imitate.evaluate.dataset import EvalDataset, read_subsets
from imitate.evaluate.encoders import Method, frozen_encoder
from imitate.evaluate.features import Features, extract_features
from imitate.evaluate.linear import ProbeSettings, linear_probe
from imitate.evaluate.rows import RunInfo, result_rows
from imitate.shards.reader import shard_paths

log = logging.getLogger(__name__)

TASK = "linear_classification"


@dataclass(frozen=True)
class FeatureSettings:
    """How images become features: the backbone, the center crop and the batch size."""

    backbone: str
    crop_size: int
    batch_size: int = 64
    device: str = "cpu"


def split_features(
    method: Method, seed: int, settings: FeatureSettings, shards_manifest: str | Path, weights: str | Path | None
) -> dict[str, Features]:
    """Features of the train, validate and test shards under ``method``'s frozen encoder."""
    encoder = frozen_encoder(method, settings.backbone, seed=seed, pretrained=weights).to(settings.device)
    return {
        split: extract_features(encoder, shard_paths(shards_manifest, split), crop_size=settings.crop_size,
                                batch_size=settings.batch_size, device=settings.device)
        for split in ("train", "validate", "test")
    }


def evaluate_linear(
    *,
    info: RunInfo,
    method: Method,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    subsets: str | Path,
    weights: str | Path | None,
    features: FeatureSettings,
    probe: ProbeSettings,
    seeds: Sequence[int],
) -> list[dict[str, object]]:
    """Probe ``method`` at every subset fraction and seed; one result row per metric.

    A pretrained encoder gives the same features for every seed, so they are computed once; a random
    encoder is drawn anew per seed (its spread is part of the baseline).
    """
    train_keys_by_fraction = read_subsets(subsets)
    rows: list[dict[str, object]] = []
    cached: dict[str, Features] | None = None
    for seed in seeds:
        if cached is None or method.is_random:
            cached = split_features(method, seed, features, shards_manifest, weights)
        feats = cached
        val = (feats["validate"].values, dataset.targets(feats["validate"].keys))
        test = (feats["test"].values, dataset.targets(feats["test"].keys))
        position = {k: i for i, k in enumerate(feats["train"].keys)}
        for fraction, keys in sorted(train_keys_by_fraction.items()):
            missing = [k for k in keys if k not in position]
            if missing:
                raise ValueError(f"{subsets}: {len(missing)} subset images are not in the train shards, "
                                 f"e.g. {missing[:3]} (rerun the dataset and shards stages)")
            idx = np.array(sorted(position[k] for k in keys), dtype=np.int64)
            train = (feats["train"].values[idx], dataset.targets([feats["train"].keys[i] for i in idx]))
            result = linear_probe(train, val, test, replace(probe, seed=seed),
                                  kind=dataset.kind, label_names=dataset.label_names)
            log.info("%s %s %g%% seed %d: %s (epoch %d)", dataset.name, method.name, fraction, seed,
                     result.metrics, result.best_epoch)
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=len(idx),
                                n_test=len(test[1]), best_epoch=result.best_epoch)
    return rows
