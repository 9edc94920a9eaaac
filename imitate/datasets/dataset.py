"""One downstream dataset from raw files to frozen tables: records, rejects, splits and subsets.

:func:`prepare_dataset` runs the adapter, rejects records whose image file is missing, fills the
splits the dataset leaves open (by patient, seeded), fails on leakage and draws the nested training
subsets. Every input record ends in ``records`` or ``rejects``; the counts are checked to add up.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from imitate.datasets.base import LABELS_METADATA_KEY, DatasetAdapter, rejects_table
from imitate.datasets.splits import check_leakage, draw_splits, subsets_table
from imitate.io.files import write_json
from imitate.io.parquet import read_metadata, write_table

RECORDS_NAME, REJECTS_NAME, SUBSETS_NAME, COUNTS_NAME = (
    "records.parquet", "rejects.parquet", "subsets.parquet", "counts.json"
)


@dataclass(frozen=True)
class Prepared:
    """A prepared dataset: records with their split, rejects, training subsets and how it was made."""

    records: pa.Table
    rejects: pa.Table
    subsets: pa.Table
    facts: dict[str, Any]

    def counts(self) -> dict[str, Any]:
        """Input records, kept per split, rejected per reason and subset sizes, for counts.json."""
        splits = Counter(self.records["split"].to_pylist())
        reasons = Counter(self.rejects["reason"].to_pylist())
        draws = len(set(self.subsets["seed"].to_pylist())) if "seed" in self.subsets.column_names else 1
        subset_sizes = {f: n // draws for f, n in Counter(self.subsets["fraction"].to_pylist()).items()}
        return {
            "input_records": self.facts["n_input"],
            "records": self.records.num_rows,
            "rejected": self.rejects.num_rows,
            "by_split": dict(sorted(splits.items())),
            "rejects_by_reason": dict(sorted(reasons.items())),
            "train_subsets": {f"{f:g}": n for f, n in sorted(subset_sizes.items())},
        }


def _check_records(adapter: DatasetAdapter, records: pa.Table) -> None:
    where = f"dataset {adapter.name!r} ({type(adapter).__module__})"
    keys = records["key"].to_pylist()
    if any(k is None or k == "" for k in keys):
        raise ValueError(f"{where}: a record has no key")
    duplicated = [k for k, n in Counter(keys).items() if n > 1]
    if duplicated:
        raise ValueError(f"{where}: key(s) {sorted(duplicated)[:5]} appear more than once")
    if records["patient_id"].null_count or records["path"].null_count:
        raise ValueError(f"{where}: every record needs a patient_id and a path")
    width = len(adapter.label_names())
    lengths = set(pc.list_value_length(records["labels"]).to_pylist())
    if records.num_rows and lengths != {width}:
        raise ValueError(f"{where}: labels must have {width} entries ({adapter.label_names()}), got {lengths}")


def _split_missing_images(records: pa.Table, root: Path) -> tuple[pa.Table, pa.Table]:
    present = [(root / p).is_file() for p in records["path"].to_pylist()]
    missing = records.filter(pa.array([not p for p in present]))
    rejects = rejects_table([
        {"source": path, "key": key, "reason": "image_missing", "detail": str(root / path)}
        for key, path in zip(missing["key"].to_pylist(), missing["path"].to_pylist(), strict=True)
    ])
    return records.filter(pa.array(present)), rejects


def prepare_dataset(
    adapter: DatasetAdapter,
    *,
    seed: int,
    fractions: Sequence[float],
    split_draw: Mapping[str, float] | None = None,
    subset_seeds: Sequence[int] | None = None,
) -> Prepared:
    """Read ``adapter``'s raw files and freeze its splits and ``fractions`` training subsets (one draw, or
    one per evaluation seed of ``subset_seeds``: :func:`imitate.datasets.splits.subsets_table`)."""
    parsed = adapter.read()
    _check_records(adapter, parsed.records)
    if parsed.n_input != parsed.records.num_rows + parsed.rejects.num_rows:
        raise RuntimeError(
            f"dataset {adapter.name!r}: {parsed.n_input} input records but {parsed.records.num_rows} kept "
            f"+ {parsed.rejects.num_rows} rejected"
        )
    records, missing = _split_missing_images(parsed.records, adapter.root)
    draw = dict(adapter.split_draw if split_draw is None else split_draw)
    records = draw_splits(records, draw, seed).sort_by([("split", "ascending"), ("key", "ascending")])
    check_leakage(records, f"dataset {adapter.name!r}")
    rejects = pa.concat_tables([parsed.rejects, missing]).sort_by(
        [("reason", "ascending"), ("source", "ascending"), ("line", "ascending"), ("key", "ascending")]
    )
    facts = {**adapter.describe(), "split_draw": draw, "seed": seed, "fractions": [float(f) for f in fractions],
             "n_input": parsed.n_input}
    if subset_seeds is not None:
        facts["subset_seeds"] = sorted(set(subset_seeds))
    return Prepared(records, rejects, subsets_table(records, fractions, seed, subset_seeds), facts)


def write_prepared(
    prepared: Prepared, out_dir: str | Path, provenance: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write records, rejects and subsets (Parquet, with ``provenance`` and the dataset facts) and counts.json."""
    out_dir = Path(out_dir)
    metadata = {**(provenance or {}), LABELS_METADATA_KEY: json.dumps(prepared.facts, sort_keys=True)}
    paths = {
        "records": write_table(prepared.records, out_dir / RECORDS_NAME, metadata),
        "rejects": write_table(prepared.rejects, out_dir / REJECTS_NAME, metadata),
        "subsets": write_table(prepared.subsets, out_dir / SUBSETS_NAME, metadata),
    }
    paths["counts"] = write_json(out_dir / COUNTS_NAME, prepared.counts())
    return paths


def read_dataset_facts(path: str | Path) -> dict[str, Any]:
    """The dataset facts (name, kind, labels, options, seed) stored with a prepared table."""
    metadata = read_metadata(path)
    if LABELS_METADATA_KEY not in metadata:
        raise ValueError(f"{path}: not a prepared dataset table (no {LABELS_METADATA_KEY} metadata)")
    return json.loads(metadata[LABELS_METADATA_KEY])


def read_records(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A prepared records table and its dataset facts."""
    return pq.read_table(path), read_dataset_facts(path)
