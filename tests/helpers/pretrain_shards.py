"""A tiny pretraining dataset on disk: real WebDataset shards, their manifest and an embeddings Parquet."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

from imitate.embed.store import METADATA_KEY

DIM = 12


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 44), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def write_tiny_dataset(root: Path) -> tuple[Path, Path]:
    """Two splits of real WebDataset shards, their manifest, and an embeddings Parquet (one study each)."""
    rows = []
    for split, n in (("train", 8), ("validate", 4)):
        name = f"{split}-000000.tar"
        with wds.TarWriter(str(root / name)) as sink:
            for i in range(n):
                study = 50000000 + len(rows)
                key = f"{split}{i:04d}"
                meta = {"key": key, "study_id": study, "split": split}
                sink.write({"__key__": key, "png": _png(len(rows)), "json": json.dumps(meta).encode()})
                rows.append({"shard": name, "key": key, "study_id": study, "split": split})
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest.parquet")
    rng = np.random.default_rng(0)
    studies = [r["study_id"] for r in rows]
    has_findings = [i % 3 != 0 for i in range(len(studies))]
    emb_type = pa.list_(pa.float16(), DIM)
    findings = [rng.normal(size=DIM).astype(np.float16).tolist() if f else None for f in has_findings]
    impression = [rng.normal(size=DIM).astype(np.float16).tolist() for _ in studies]
    table = pa.table(
        {
            "study_id": pa.array(studies, pa.int64()),
            "findings_emb": pa.array(findings, emb_type),
            "impression_emb": pa.array(impression, emb_type),
            "has_findings": pa.array(has_findings),
        }
    )
    facts = {"encoder": "tiny", "weights_sha256": "0" * 64, "dim": DIM, "pooling": "cls", "max_length": 32}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(facts)}), root / "embeddings.parquet")
    return root / "manifest.parquet", root / "embeddings.parquet"
