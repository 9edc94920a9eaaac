"""Section the report texts of a table source (``imitate source-table``'s reports.parquet), one per study.

With a ``report`` column, each text goes through exactly the parse of a MIMIC report file
(:func:`imitate.sections.extract.parse_report`, on its UTF-8 bytes): the same sections, flags, token counts
and rejects (``empty``, ``no_findings_impression_or_last_paragraph``), and ``text_sha256`` is the hash a
file of those bytes would have. With ``findings`` and/or ``impression`` columns nothing is parsed: each
text is stripped (null when blank), its tokens counted as the sectioner counts them, ``last_paragraph``
and ``comparison`` are null, and a study with neither text is rejected as ``empty``. The ``path`` of a
row is ``<table>:<row>``, the table row the study's text came from. Overrides apply as to report files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imitate.sections.extract import (
    REJECTS_SCHEMA,
    SECTIONS_SCHEMA,
    Override,
    _Reject,
    _Row,
    _to_table,
    load_overrides,
    parse_report,
)
from imitate.sections.parser import MODES
from imitate.sections.tokens import count_tokens

TEXT_COLUMNS = ("report", "findings", "impression")


def _columns_row(
    subject: int, study: int, where: str, findings: str | None, impression: str | None, override: Override | None
) -> _Row | _Reject:
    """A sections row from given Findings / Impression texts (or the study's override)."""
    digest = hashlib.sha256(f"{findings or ''}\0{impression or ''}".encode()).hexdigest()
    if override is not None:
        findings, impression = override
    findings = (findings or "").strip() or None
    impression = (impression or "").strip() or None
    if findings is None and impression is None:
        return _Reject(subject, study, where, "empty")
    return (subject, study, findings, impression, None, None, findings is not None, impression is not None,
            count_tokens(findings), count_tokens(impression), where, digest, override is not None, False)


def section_texts(
    reports: Path | pa.Table, *, mode: str = "reference", overrides: Path | None = None
) -> tuple[pa.Table, pa.Table]:
    """``(sections, rejects)`` of a reports table (``subject_id, study_id, where`` and ``report`` or
    ``findings``/``impression``); sections ordered by ``study_id``, rejects by ``study_id``."""
    if mode not in MODES:
        raise ValueError(f"unknown sectioning mode {mode!r}; expected one of {MODES}")
    table = reports if isinstance(reports, pa.Table) else _read(Path(reports))
    texts = [c for c in TEXT_COLUMNS if c in table.column_names]
    if not texts or ("report" in texts and len(texts) > 1):
        raise ValueError(f"{reports}: expected a report column, or findings and/or impression columns; got {texts}")
    override_texts: Mapping[int, Override] = load_overrides(overrides) if overrides is not None else {}
    rows: list[_Row] = []
    rejects: list[_Reject] = []
    for record in table.to_pylist():
        subject, study, where = record["subject_id"], record["study_id"], record["where"]
        if "report" in texts:
            data = (record["report"] or "").encode("utf-8")
            result = parse_report(data, subject, study, where, mode, override_texts)
        else:
            result = _columns_row(subject, study, where, record.get("findings"), record.get("impression"),
                                  override_texts.get(study))
        (rejects if isinstance(result, _Reject) else rows).append(result)
    sections = _to_table(rows, SECTIONS_SCHEMA).sort_by("study_id")
    return sections, _to_table(sorted(rejects, key=lambda r: r.study_id), REJECTS_SCHEMA)


def _read(path: Path) -> pa.Table:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such reports table")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise ValueError(f"{path}: cannot read the reports table: {err}") from err
