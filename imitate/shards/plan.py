"""Which sample goes to which shard, decided before any pixel is read.

Per split (sorted), the rows that pass the cheap checks (key, split, file present) are sorted by key and
cut into chunks of ``samples_per_shard``; chunk ``i`` of split ``s`` is ``{s}-{i:06d}.tar``. The layout
depends only on the manifest and the files' presence, so a rerun, or a run with another worker count,
puts every sample in the same shard at the same position.

Keys must not contain a dot: WebDataset splits an entry name at the first dot of its basename into key
and extension, so ``a.b.png`` would be read back as key ``a`` with extension ``b.png``. Such rows are
rejected (``key_has_dot``) rather than silently renamed, so a key always means the same thing in the
manifest, the shards and every table downstream.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SPLIT_ALL = "all"  # the split of every row when the manifest has no split column
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")

# Input columns beyond key/path that are carried into the samples, with their types.
OPTIONAL_COLUMNS: dict[str, pa.DataType] = {
    "dicom_id": pa.string(),
    "study_id": pa.int64(),
    "subject_id": pa.int64(),
    "view": pa.string(),
    "split": pa.string(),
}
INPUT_TYPES: dict[str, pa.DataType] = {"key": pa.string(), "path": pa.string(), **OPTIONAL_COLUMNS}


@dataclass(frozen=True)
class ShardPlan:
    """One shard to write: its file name and its rows, in the order they are stored."""

    name: str
    rows: tuple[dict[str, Any], ...]


def load_rows(manifest: pa.Table | str | Path) -> list[dict[str, Any]]:
    """Rows with every optional column present (null when absent; split ``all`` without a split column).

    ``manifest`` is a table or a Parquet / CSV file with at least ``key`` and ``path``.
    """
    if isinstance(manifest, pa.Table):
        table, source = manifest, "manifest table"
    else:
        source = str(manifest)
        try:
            if source.endswith(".parquet"):
                table = pq.read_table(manifest)
            else:
                table = pacsv.read_csv(manifest, convert_options=pacsv.ConvertOptions(column_types=INPUT_TYPES))
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{source}: unreadable manifest: {exc}") from exc
    missing = {"key", "path"} - set(table.column_names)
    if missing:
        raise ValueError(f"{source}: missing required column(s) {sorted(missing)}")
    columns = {}
    for name, dtype in INPUT_TYPES.items():
        if name not in table.column_names:
            continue
        try:
            columns[name] = table.column(name).cast(dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{source}: column {name!r} is not {dtype}: {exc}") from exc
    rows = pa.table(columns).to_pylist()
    defaults = {name: None for name in OPTIONAL_COLUMNS}
    if "split" not in columns:
        defaults["split"] = SPLIT_ALL
    return [{**defaults, **row} for row in rows]


def plan_shards(
    rows: Sequence[dict[str, Any]], root: Path, samples_per_shard: int
) -> tuple[list[ShardPlan], list[dict[str, Any]]]:
    """Assign every row to a shard, or to the rejects (``key, path, reason``)."""
    rejects: list[dict[str, Any]] = []

    def reject(row: Mapping[str, Any], reason: str) -> None:
        rejects.append({"key": row["key"], "path": row["path"], "reason": reason})

    checked = []
    for row in rows:
        reason = _key_or_split_problem(row)
        if reason:
            reject(row, reason)
        else:
            checked.append(row)
    # Every row of a repeated key is rejected: which of them the key should name cannot be told.
    repeated = {key for key, n in Counter(row["key"] for row in checked).items() if n > 1}
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in checked:
        if row["key"] in repeated:
            reject(row, "duplicate_key")
        elif not row["path"] or not (root / row["path"]).is_file():
            reject(row, "file_missing")
        else:
            by_split.setdefault(row["split"], []).append(row)
    plans = []
    for split in sorted(by_split):
        ordered = sorted(by_split[split], key=lambda row: row["key"])
        for index, start in enumerate(range(0, len(ordered), samples_per_shard)):
            plans.append(ShardPlan(f"{split}-{index:06d}.tar", tuple(ordered[start : start + samples_per_shard])))
    return plans, rejects


def _key_or_split_problem(row: Mapping[str, Any]) -> str | None:
    key, split = row["key"], row["split"]
    if not key or any(ch in key for ch in "/\\") or key != key.strip():
        return "key_invalid"
    if "." in key:
        return "key_has_dot"
    if split is None:
        return "split_missing"
    if not SPLIT_NAME.match(split):
        return "split_invalid"
    return None
