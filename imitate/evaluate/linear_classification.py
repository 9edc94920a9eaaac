"""The linear classification task: frozen encoder features, linear probes at 1/10/100 % of train."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imitate.evaluate.encoders import frozen_encoder
from imitate.evaluate.features import Features, extract_features
from imitate.evaluate.labels import read_study_labels
from imitate.evaluate.linear import ProbeSettings, linear_probe, nested_subsets
from imitate.shards.reader import shard_paths

log = logging.getLogger(__name__)

TASK = "linear_classification"
RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("task", pa.string()),
        ("fraction", pa.float64()),
        ("method", pa.string()),
        ("seed", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("best_epoch", pa.int64()),
        ("run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class LinearTask:
    """What to evaluate: labels and their uncertainty policy, encoder geometry, probe optimisation."""

    labels: Sequence[str]
    uncertain: Mapping[str, Sequence[str]]
    backbone: str
    crop_size: int
    probe: ProbeSettings


def build_subsets(shard_manifest: str | Path, fractions: Sequence[float], seed: int) -> pa.Table:
    """The frozen training subsets: one row per (fraction, key) drawn from the manifest's train split."""
    manifest = pq.read_table(shard_manifest, columns=["key", "split"])
    keys = [k for k, s in zip(manifest["key"].to_pylist(), manifest["split"].to_pylist(), strict=True) if s == "train"]
    if not keys:
        raise ValueError(f"{shard_manifest}: no train samples to draw subsets from")
    subsets = nested_subsets(keys, list(fractions), seed)
    rows = [(float(f), k) for f in fractions for k in subsets[f]]
    return pa.table({"fraction": [r[0] for r in rows], "key": [r[1] for r in rows]})


def _labelled(features: Features, labels: Mapping[int, np.ndarray], split: str) -> tuple[Features, np.ndarray]:
    keep = np.array([int(s) in labels for s in features.study_ids], dtype=bool)
    if not keep.all():
        log.warning("%s: %d of %d images have no label row and are left out", split, (~keep).sum(), len(keep))
    kept = Features([k for k, m in zip(features.keys, keep, strict=True) if m], features.study_ids[keep],
                    features.values[keep])
    return kept, np.stack([labels[int(s)] for s in kept.study_ids]) if keep.any() else np.zeros((0, 0))


def evaluate_linear(
    *,
    method: str,
    weights: str | Path | None,
    shard_manifest: str | Path,
    labels_csv: str | Path,
    subsets: str | Path,
    task: LinearTask,
    dataset: str,
    run_id: str,
) -> pa.Table:
    """Probe ``method``'s frozen encoder at every subset fraction; long-format result rows."""
    encoder = frozen_encoder(method, task.backbone, weights=weights, seed=task.probe.seed)
    labels = read_study_labels(labels_csv, task.labels, task.uncertain)
    data = {}
    for split in ("train", "validate", "test"):
        feats = extract_features(encoder, shard_paths(shard_manifest, split), crop_size=task.crop_size)
        data[split] = _labelled(feats, labels, split)
        log.info("%s: %d labelled images, %d-d features", split, len(data[split][0].keys), feats.values.shape[1])
    subset_table = pq.read_table(subsets)
    subset_rows = list(zip(subset_table["fraction"].to_pylist(), subset_table["key"].to_pylist(), strict=True))
    train_feats, train_y = data["train"]
    position = {k: i for i, k in enumerate(train_feats.keys)}
    rows = []
    for fraction in sorted({f for f, _ in subset_rows}):
        chosen = [k for f, k in subset_rows if f == fraction and k in position]
        idx = np.array(sorted(position[k] for k in chosen), dtype=np.int64)
        result = linear_probe(
            (train_feats.values[idx], train_y[idx]),
            (data["validate"][0].values, data["validate"][1]),
            (data["test"][0].values, data["test"][1]),
            task.probe,
        )
        log.info("%s %g%%: %d train images, test macro AUC %.4f (epoch %d)", method, fraction, len(idx),
                 result.test_macro_auc, result.best_epoch)
        metrics = [("auc_macro", result.test_macro_auc)]
        metrics += [(f"auc:{lab}", float(v)) for lab, v in zip(task.labels, result.test_label_auc, strict=True)]
        for metric, value in metrics:
            rows.append((dataset, TASK, float(fraction), method, task.probe.seed, metric, value, result.n_train,
                         len(data["test"][0].keys), result.best_epoch, run_id))
    return pa.Table.from_pylist([dict(zip(RESULT_SCHEMA.names, r, strict=True)) for r in rows], schema=RESULT_SCHEMA)
