"""A table of images and reports -> the inputs of the sections and manifest stages (``data.source: table``).

Each table row is one image. It lands either in ``metadata`` (the manifest's metadata and split rows,
with the image's path) or in ``rejects`` with the first reason that applies, in this order:

1. ``missing_path``, ``missing_patient``, ``missing_study``: the cell is blank;
2. ``path_outside_root``: an absolute path not under the root, or a relative one leaving it (``..``);
3. ``duplicate_image``: two rows with the same image id (or, without an image column, the same path);
   every copy is rejected, as there is no telling which one is right;
4. ``study_patient_conflict``: the study's rows name different patients;
5. ``study_report_conflict``: the study's rows give different report texts (blank counts as a text);
6. ``study_split_conflict``: the study's rows name different splits.

Every study of the kept rows gives one row of ``reports`` (its text, or its Findings / Impression), which
the sections stage sections like a MIMIC report file. Ids: a canonical decimal integer (``0``, ``123``,
no sign, no leading zero, below 2**63) is the int64 id itself; any other text is hashed to a stable
63-bit id (:func:`imitate.source.read.stable_id`) kept beside its original in ``ids``. The image id (the
WebDataset key) is the ``image`` column, else ``<file stem>-<12 hex of the path's SHA-256>`` with every
character but letters, digits, ``-`` and ``_`` made ``_``. Without a ``view`` column every image counts as
frontal (the manifest then filters no view). A split outside train/validate/test is left null (the
manifest's ``no_split``); without a ``split`` column, patients are drawn into the splits with ``seed``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from imitate.io.files import write_json
from imitate.io.parquet import write_table
from imitate.io.table_paths import path_key, relative_path
from imitate.source.read import Columns, int_ids, read_table

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "validate", "test")
REJECT_REASONS: tuple[str, ...] = (
    "missing_path", "missing_patient", "missing_study", "path_outside_root", "duplicate_image",
    "study_patient_conflict", "study_report_conflict", "study_split_conflict",
)
METADATA_SCHEMA = pa.schema([
    ("dicom_id", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()), ("ViewPosition", pa.string()),
    ("split", pa.string()), ("path", pa.string()), ("row", pa.int64()),
])
REJECTS_SCHEMA = pa.schema([
    ("row", pa.int64()), ("image", pa.string()), ("patient", pa.string()), ("study", pa.string()),
    ("path", pa.string()), ("reason", pa.string()),
])
IDS_SCHEMA = pa.schema([("kind", pa.string()), ("original", pa.string()), ("id", pa.int64())])


@dataclass(frozen=True)
class SourceResult:
    """The manifest's metadata rows, the reports per study, the rejected rows, the hashed ids and counts."""

    metadata: pa.Table
    reports: pa.Table
    rejects: pa.Table
    ids: pa.Table
    counts: dict[str, Any]


def _row_reason(row: Mapping[str, Any], root: Path) -> str | None:
    for role in ("path", "patient", "study"):
        if row[role] is None:
            return f"missing_{role}"
    return "path_outside_root" if relative_path(row["path"], root) is None else None


def _group_reasons(rows: list[dict[str, Any]], texts: tuple[str, ...]) -> dict[int, str]:
    """The reasons of steps 3-6 by row number, among ``rows`` (those that passed the row checks)."""
    reasons: dict[int, str] = {}
    per_key = Counter(row["image"] for row in rows if row["image"] is not None)  # blank: the manifest's invalid id
    reasons.update({row["row"]: "duplicate_image" for row in rows if per_key.get(row["image"], 0) > 1})
    by_study: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["row"] not in reasons:
            by_study[row["study"]].append(row)
    for study_rows in by_study.values():
        for reason, roles in (("study_patient_conflict", ("patient",)), ("study_report_conflict", texts),
                              ("study_split_conflict", ("split",))):
            if len({tuple(r[role] for role in roles) for r in study_rows}) > 1:
                reasons.update({r["row"]: reason for r in study_rows})
                break
    return reasons


def draw_splits(patients: list[int], fractions: Mapping[str, float], seed: int) -> dict[int, str]:
    """Patients (sorted, shuffled with ``seed``) cut into train, validate, test by their shares of patients."""
    order = np.random.default_rng(seed).permutation(np.array(sorted(set(patients)), dtype=np.int64))
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    cuts = np.round(np.cumsum([fractions.get(s, 0.0) / total for s in SPLITS]) * len(order)).astype(int)
    drawn, start = {}, 0
    for split, stop in zip(SPLITS, cuts, strict=True):
        drawn.update({int(p): split for p in order[start:stop]})
        start = stop
    return drawn


def build_source(
    table: Path, *, root: Path, columns: Columns, seed: int = 0, split_fractions: Mapping[str, float] | None = None
) -> SourceResult:
    """Read ``table``, check every row and return the sections and manifest inputs with the rejects."""
    rows = read_table(table, columns).to_pylist()
    texts = tuple(role for role in ("report", "findings", "impression") if getattr(columns, role))
    for row in rows:
        row["reason"] = _row_reason(row, root)
        if row["reason"] is None:
            row["path"] = relative_path(row["path"], root)
        row["image"] = row.get("image") if columns.image else (path_key(row["path"]) if row["path"] else None)
        row.setdefault("split", None)
        row.setdefault("view", None)
        if row["split"] is not None and row["split"] not in SPLITS:
            row["unknown_split"], row["split"] = row["split"], None
    groups = _group_reasons([r for r in rows if r["reason"] is None], texts)
    for row in rows:
        row["reason"] = row["reason"] or groups.get(row["row"])
    kept = [r for r in rows if r["reason"] is None]
    patient_ids, hashed_patients = int_ids([r["patient"] for r in kept], "patient", table)
    study_ids, hashed_studies = int_ids([r["study"] for r in kept], "study", table)
    drawn = None
    if columns.split is None:
        drawn = draw_splits(patient_ids, split_fractions or dict(zip(SPLITS, (0.7, 0.1, 0.2), strict=True)), seed)
    metadata = pa.table({
        "dicom_id": [r["image"] for r in kept], "subject_id": patient_ids, "study_id": study_ids,
        "ViewPosition": [r["view"] for r in kept],
        "split": [drawn[p] for p in patient_ids] if drawn is not None else [r["split"] for r in kept],
        "path": [r["path"] for r in kept], "row": [r["row"] for r in kept],
    }, schema=METADATA_SCHEMA)
    reports = _reports(metadata, kept, texts, table)
    rejects = pa.Table.from_pylist(
        [{name: r.get(name) for name in REJECTS_SCHEMA.names} for r in rows if r["reason"]], schema=REJECTS_SCHEMA
    )
    ids = pa.Table.from_pylist(
        [{"kind": kind, "original": o, "id": i} for kind, pairs in (("patient", hashed_patients),
                                                                     ("study", hashed_studies)) for o, i in pairs],
        schema=IDS_SCHEMA,
    )
    unknown = Counter(r["unknown_split"] for r in kept if "unknown_split" in r)
    if unknown:
        log.warning("%s: split value(s) outside %s left without a split: %s", table, SPLITS, dict(unknown))
    counts = _counts(len(rows), metadata, reports, rejects, ids, drawn is not None, unknown)
    return SourceResult(metadata, reports, rejects, ids, counts)


def _reports(metadata: pa.Table, kept: list[dict[str, Any]], texts: tuple[str, ...], table: Path) -> pa.Table:
    """One row per study (by study id): its patient, its texts, and ``where`` (the table and first row)."""
    first: dict[int, tuple[int, dict[str, Any]]] = {}
    for subject, study, row in zip(metadata["subject_id"].to_pylist(), metadata["study_id"].to_pylist(), kept,
                                   strict=True):
        first.setdefault(study, (subject, row))
    columns: dict[str, list[Any]] = {"subject_id": [], "study_id": [], **{t: [] for t in texts}, "where": []}
    for study in sorted(first):
        subject, row = first[study]
        columns["subject_id"].append(subject)
        columns["study_id"].append(study)
        for text in texts:
            columns[text].append(row[text])
        columns["where"].append(f"{table}:{row['row']}")
    schema = pa.schema([("subject_id", pa.int64()), ("study_id", pa.int64()), *((t, pa.string()) for t in texts),
                        ("where", pa.string())])
    return pa.table(columns, schema=schema)


def _counts(
    n_rows: int, metadata: pa.Table, reports: pa.Table, rejects: pa.Table, ids: pa.Table, drawn: bool,
    unknown: Counter,
) -> dict[str, Any]:
    """Every reason with its count; fails if table rows != kept rows + rejects."""
    reasons = Counter(rejects["reason"].to_pylist())
    kinds = Counter(ids["kind"].to_pylist())
    counts = {
        "rows": n_rows,
        "images": metadata.num_rows,
        "studies": reports.num_rows,
        "patients": len(set(metadata["subject_id"].to_pylist())),
        "rejects": rejects.num_rows,
        "rejects_by_reason": {reason: reasons.get(reason, 0) for reason in REJECT_REASONS},
        "hashed_ids": {kind: kinds.get(kind, 0) for kind in ("patient", "study")},
        "split": "drawn" if drawn else "column",
        "unknown_split_values": dict(sorted(unknown.items())),
    }
    if metadata.num_rows + rejects.num_rows != n_rows:
        raise RuntimeError(f"table source counts do not add up: {counts}")
    return counts


OUTPUTS = ("metadata.parquet", "reports.parquet", "rejects.parquet", "ids.parquet", "counts.json")


def write_source(result: SourceResult, out_dir: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write the four tables (with ``metadata``, the stage's provenance) and counts.json under ``out_dir``."""
    out_dir = Path(out_dir)
    for name, table in zip(OUTPUTS, (result.metadata, result.reports, result.rejects, result.ids), strict=False):
        write_table(table, out_dir / name, metadata)
    write_json(out_dir / "counts.json", result.counts)
    log.info("table source: %d rows -> %d images of %d studies, %d rejects %s", result.counts["rows"],
             result.counts["images"], result.counts["studies"], result.counts["rejects"],
             result.counts["rejects_by_reason"])
