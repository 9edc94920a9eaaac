"""Deterministic, atomic Parquet writing: the same table always gives the same bytes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 65_536


def write_table(table: pa.Table, path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``table`` to ``path`` with zstd, fixed row groups and extra key-value ``metadata``.

    A stage passes its provenance record here (``StageRun.parquet_metadata()``), so every Parquet
    output says what made it. The file appears under its final name only once complete (temporary
    file, then rename).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(metadata or {})
    if extra:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in extra.items()})
        table = table.replace_schema_metadata(merged)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        row_group_size=ROW_GROUP_SIZE,
        write_statistics=True,
        store_schema=True,
    )
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """Return the key-value metadata of a Parquet file as ``str -> str`` (Arrow's schema key dropped)."""
    raw = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"ARROW:schema"}
