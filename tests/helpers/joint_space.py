"""Tiny evaluation sets in the joint image-text space, shared by the zero-shot and retrieval tests.

Drawn-noise films written as real shards, their :class:`EvalDataset`, and :func:`align`, which sets a
joint model's projectors so that chosen images and texts land exactly where a test wants them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch import nn

from imitate.embed.embeddings import embed_unique, normalise
from imitate.evaluate.data.features import extract_features
from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.vision_language import JointModel, TextTower
from imitate.models import ModelConfig
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards

CROP = 32
TINY = ModelConfig(backbone="resnet18", attn_dim=32, attn_heads=2, token_size=4, proj_dim=8, text_dim=384)


def write_dataset_shards(root: Path, splits: Mapping[str, Sequence[int]]) -> Path:
    """Shards of drawn-noise films ``{split}{i}`` whose brightness follows ``splits[split][i]``; the manifest."""
    rows = []
    for split, groups in splits.items():
        for i, group in enumerate(groups):
            key = f"{split}{i:02d}"
            rng = np.random.default_rng(len(rows))
            pixels = np.clip(rng.normal(60 + 50 * group, 30, (40, 36)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / f"{key}.png")
            rows.append({"key": key, "path": f"{key}.png", "split": split})
    write_shards(pa.Table.from_pylist(rows), root, root / "shards", image_size=CROP)
    return root / "shards" / "manifest.parquet"


def eval_dataset(
    kind: str, label_names: Sequence[str], splits: Mapping[str, np.ndarray], texts: Sequence[str] | None = None
) -> EvalDataset:
    """An :class:`EvalDataset` keyed like :func:`write_dataset_shards`, label rows per split."""
    keys = [f"{split}{i:02d}" for split, labels in splits.items() for i in range(len(labels))]
    return EvalDataset(
        name="tiny",
        kind=kind,
        label_names=tuple(label_names),
        keys=keys,
        splits=[split for split, labels in splits.items() for _ in labels],
        labels=np.concatenate(list(splits.values())).astype(np.float32),
        texts=list(texts) if texts is not None else [None] * len(keys),
        facts={},
    )


def one_hot(classes: Sequence[int], n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[list(classes)]


def linear_through(x: np.ndarray, y: np.ndarray) -> nn.Linear:
    """A linear map sending every row of ``x`` to the same row of ``y`` (the rows of ``x`` independent)."""
    x64, y64 = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    weight = (torch.linalg.pinv(x64) @ y64).T
    assert torch.allclose(x64 @ weight.T, y64, atol=1e-6)
    layer = nn.Linear(x.shape[1], y.shape[1], bias=False)
    layer.weight.data = weight.float()
    return layer


def align(
    joint: JointModel,
    manifest: Path,
    targets: Mapping[str, np.ndarray],
    text: TextTower,
    texts: Mapping[str, np.ndarray],
) -> None:
    """Replace both projectors so test image ``key`` lands on ``targets[key]`` and text ``t`` on ``texts[t]``."""
    pooled = extract_features(joint.model.encoder(), shard_paths(manifest, "test"), crop_size=CROP)
    joint.model.high_proj = linear_through(pooled.values, np.stack([targets[k] for k in pooled.keys]))
    names = list(texts)
    raw = embed_unique(text.encoder, [normalise(t) for t in names], text.settings, torch.device("cpu"))[0]
    joint.model.text_proj = linear_through(raw.astype(np.float16).astype(np.float32), np.stack(list(texts.values())))
