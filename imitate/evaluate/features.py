"""Frozen-encoder features over image shards, in shard order, for linear probing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from imitate.shards.reader import iter_samples
from imitate.train.data import build_eval_transform


@dataclass
class Features:
    """One row per image: its key, study and the encoder's pooled feature vector."""

    keys: list[str]
    study_ids: np.ndarray
    values: np.ndarray


def _batches(samples: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.inference_mode()
def extract_features(
    encoder: nn.Module, shards: Sequence[Path], *, crop_size: int, batch_size: int = 64
) -> Features:
    """Run ``encoder`` over every sample of ``shards`` with the evaluation transform (center crop)."""
    transform = build_eval_transform(crop_size)
    keys: list[str] = []
    study_ids: list[int] = []
    values: list[np.ndarray] = []
    for batch in _batches(iter_samples(shards), batch_size):
        images = torch.stack([transform(torch.from_numpy(s["image"])) for s in batch])
        values.append(encoder(images).float().numpy())
        keys.extend(s["key"] for s in batch)
        study_ids.extend(int(s["meta"]["study_id"]) for s in batch)
    if not values:
        raise ValueError(f"no samples in shards {[str(s) for s in shards]}")
    return Features(keys, np.asarray(study_ids, dtype=np.int64), np.concatenate(values))
