"""Encoder outputs over image shards, in shard order: one row per image, keyed like the records."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imitate.images.transforms import build_eval_transform
from imitate.io.progress import ProgressLog
from imitate.shards.reader import iter_samples


@dataclass
class Features:
    """One row per image: its key and the encoder's output vector."""

    keys: list[str]
    values: np.ndarray


def batches(samples: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Consecutive lists of ``size`` samples (the last may be shorter)."""
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
    encoder: Callable[[torch.Tensor], torch.Tensor],
    shards: Sequence[Path],
    *,
    crop_size: int,
    batch_size: int = 64,
    device: str = "cpu",
    progress: ProgressLog | None = None,
) -> Features:
    """Run ``encoder`` over every sample of ``shards`` with the evaluation transform (center crop);
    ``progress`` (of as many units as there are samples) is advanced after each batch."""
    transform = build_eval_transform(crop_size)
    keys: list[str] = []
    values: list[np.ndarray] = []
    for batch in batches(iter_samples(shards), batch_size):
        images = torch.stack([transform(torch.from_numpy(s["image"])) for s in batch]).to(device)
        values.append(encoder(images).float().cpu().numpy())
        keys.extend(s["key"] for s in batch)
        if progress is not None:
            progress.advance(len(batch))
    if not values:
        raise ValueError(f"no samples in shards {[str(s) for s in shards]}")
    return Features(keys, np.concatenate(values))
