"""A prepared downstream dataset as the evaluation tasks see it: labels, splits and texts by key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imitate.datasets.dataset import read_records


@dataclass(frozen=True)
class EvalDataset:
    """Labels (N, L) float32, split and report text of every kept image of one prepared dataset."""

    name: str
    kind: str
    label_names: tuple[str, ...]
    keys: list[str]
    splits: list[str]
    labels: np.ndarray
    texts: list[str | None]
    facts: dict[str, Any]

    def index(self) -> dict[str, int]:
        """Row of each key."""
        return {k: i for i, k in enumerate(self.keys)}

    def targets(self, keys: list[str]) -> np.ndarray:
        """Label rows of ``keys``, in that order (KeyError names a key the records lack)."""
        position = self.index()
        missing = [k for k in keys if k not in position]
        if missing:
            raise KeyError(f"dataset {self.name!r}: images {missing[:5]} are not in its records")
        return self.labels[[position[k] for k in keys]]

    def keys_of(self, split: str) -> list[str]:
        """Keys of the records in ``split``."""
        return [k for k, s in zip(self.keys, self.splits, strict=True) if s == split]


def load_eval_dataset(records: str | Path) -> EvalDataset:
    """Read a prepared ``records.parquet`` (:mod:`imitate.datasets.dataset`)."""
    table, facts = read_records(records)
    labels = table["labels"].to_pylist()
    width = len(facts["labels"])
    matrix = np.array(labels, dtype=np.float32).reshape(len(labels), width)
    return EvalDataset(
        name=facts["name"],
        kind=facts["kind"],
        label_names=tuple(facts["labels"]),
        keys=table["key"].to_pylist(),
        splits=table["split"].to_pylist(),
        labels=matrix,
        texts=table["text"].to_pylist(),
        facts=facts,
    )


def read_subsets(path: str | Path, seed: int | None = None) -> dict[float, list[str]]:
    """Training keys per subset fraction (percent), from a prepared ``subsets.parquet``: its one draw, or
    in a file drawn per evaluation seed (``evaluate.subsets_per_seed``: a ``seed`` column), that of ``seed``."""
    table = pq.read_table(path)
    if "seed" in table.column_names:
        drawn = sorted(set(table["seed"].to_pylist()))
        if seed not in drawn:
            raise ValueError(f"{path}: training subsets drawn for evaluation seeds {drawn}, not for seed {seed} "
                             f"(rerun the dataset rule with this evaluate.seeds)")
        table = table.filter(pc.equal(table["seed"], seed))
    out: dict[float, list[str]] = {}
    for fraction, key in zip(table["fraction"].to_pylist(), table["key"].to_pylist(), strict=True):
        out.setdefault(float(fraction), []).append(key)
    return out
