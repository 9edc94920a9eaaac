"""Study-level CheXpert-style labels (1.0 / 0.0 / -1.0 / blank) turned into binary targets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import numpy as np


def uncertain_value(label: str, policy: Mapping[str, Sequence[str]]) -> float:
    """What -1.0 (uncertain) becomes for ``label``: 1 under U-Ones, 0 under U-Zeros."""
    ones, zeros = set(policy.get("ones", ())), set(policy.get("zeros", ()))
    if label in ones and label in zeros:
        raise ValueError(f"label {label!r} is in both uncertain.ones and uncertain.zeros")
    if label in ones:
        return 1.0
    if label in zeros:
        return 0.0
    raise ValueError(f"label {label!r} has no uncertainty policy: add it to uncertain.ones or uncertain.zeros")


def read_study_labels(
    path: str | Path, labels: Sequence[str], policy: Mapping[str, Sequence[str]]
) -> dict[int, np.ndarray]:
    """study_id -> float32 vector over ``labels``; blank counts as 0 (negative), -1 follows ``policy``."""
    con = duckdb.connect()
    header = con.execute("SELECT * FROM read_csv(?, header=true, all_varchar=true) LIMIT 0", [str(path)]).description
    names = [d[0] for d in header]
    missing = [lab for lab in ("study_id", *labels) if lab not in names]
    if missing:
        raise ValueError(f"{path}: label file lacks column(s) {', '.join(missing)}")
    columns = ", ".join(f'TRY_CAST("{lab}" AS DOUBLE)' for lab in labels)
    rows = con.execute(
        f"SELECT CAST(study_id AS BIGINT), {columns} FROM read_csv(?, header=true, all_varchar=true)", [str(path)]
    ).fetchall()
    uncertain = np.array([uncertain_value(lab, policy) for lab in labels], dtype=np.float32)
    out: dict[int, np.ndarray] = {}
    for study_id, *values in rows:
        raw = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        if study_id in out:
            raise ValueError(f"{path}: study {study_id} appears twice")
        out[int(study_id)] = np.where(np.isnan(raw), 0.0, np.where(raw == -1.0, uncertain, raw)).astype(np.float32)
    return out
