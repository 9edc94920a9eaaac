"""Walk a MIMIC-CXR reports tree and extract Findings / Impression per study.

The tree is ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` (group folder, patient folder, one report per study),
walked in sorted order. Every entry under the root lands exactly once in ``sections`` or ``rejects``;
group and patient folders are only containers. Reject reasons:

* ``not_a_report_file``: a file that is not ``s<digits>.txt`` inside a patient folder (``.DS_Store``,
  the ``index.html`` of a wget mirror, a report at the wrong depth);
* ``is_directory``: a directory where a report or a container was expected (it is not descended);
* ``unreadable``: a dangling symlink, a special file, or an I/O error;
* ``empty``: no bytes, or only whitespace;
* ``not_utf8``: invalid UTF-8. Such a file is rejected, not kept with replacement characters: MIMIC-CXR
  reports are plain ASCII, so invalid bytes mean a damaged or foreign file, and the reference parser
  would crash on it;
* ``no_findings_impression_or_last_paragraph``: the parser found none of the three;
* ``duplicate_study_id``: two otherwise valid reports share a study id (every copy is rejected, as
  there is no telling which one is right).

Text is read as Python's text mode reads it, as the reference does: CRLF and CR become LF; tabs stay.
Each text column is the last section of that name, stripped, and null when absent or blank. Studies
listed in an overrides CSV (``study_id,findings,impression``; ``s``-prefixed ids accepted) take their
texts from it instead of the parser (``overridden`` is true, ``last_paragraph`` and ``comparison`` null);
their file only has to be readable.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from imitate.parquet import write_table
from imitate.sections.parser import MODES, last_by_name, section_text
from imitate.tokens import count_tokens

log = logging.getLogger(__name__)

SECTIONS_SCHEMA = pa.schema(
    [
        ("subject_id", pa.int64()),
        ("study_id", pa.int64()),
        ("findings", pa.string()),
        ("impression", pa.string()),
        ("last_paragraph", pa.string()),
        ("comparison", pa.string()),
        ("has_findings", pa.bool_()),
        ("has_impression", pa.bool_()),
        ("n_tokens_findings", pa.int32()),
        ("n_tokens_impression", pa.int32()),
        ("path", pa.string()),
        ("text_sha256", pa.string()),
        ("overridden", pa.bool_()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [("subject_id", pa.int64()), ("study_id", pa.int64()), ("path", pa.string()), ("reason", pa.string())]
)
REJECT_REASONS: tuple[str, ...] = (
    "not_a_report_file",
    "is_directory",
    "unreadable",
    "empty",
    "not_utf8",
    "no_findings_impression_or_last_paragraph",
    "duplicate_study_id",
)

_GROUP = re.compile(r"p\d{2}")
_PATIENT = re.compile(r"p(\d+)")
_STUDY = re.compile(r"s(\d+)(?:\.txt)?")
_REPORT = re.compile(r"s\d+\.txt")
_OVERRIDE_ID = re.compile(r"s?(\d+)")
_CHUNKS_PER_WORKER = 8

Override = tuple[str | None, str | None]  # (findings, impression)


class _Row(NamedTuple):
    subject_id: int
    study_id: int
    findings: str | None
    impression: str | None
    last_paragraph: str | None
    comparison: str | None
    has_findings: bool
    has_impression: bool
    n_tokens_findings: int
    n_tokens_impression: int
    path: str
    text_sha256: str
    overridden: bool


class _Reject(NamedTuple):
    subject_id: int | None
    study_id: int | None
    path: str
    reason: str


class _Candidate(NamedTuple):
    path: str  # relative to the reports root, POSIX
    subject_id: int
    study_id: int


def _ids(parts: tuple[str, ...]) -> tuple[int | None, int | None]:
    """(subject_id, study_id) read from a relative path, where its folders and name allow."""
    subject = _PATIENT.fullmatch(parts[1]) if len(parts) >= 2 else None
    study = _STUDY.fullmatch(parts[2]) if len(parts) == 3 else None
    return (int(subject.group(1)) if subject else None, int(study.group(1)) if study else None)


def _walk(root: Path) -> tuple[list[_Candidate], list[_Reject]]:
    """Sorted walk of the tree: report files to parse, and entries rejected on sight."""
    candidates: list[_Candidate] = []
    rejects: list[_Reject] = []

    def visit(directory: str, parts: tuple[str, ...]) -> None:
        with os.scandir(directory) as scan:
            children = sorted(scan, key=lambda e: e.name)
        for child in children:
            rel = (*parts, child.name)
            path = "/".join(rel)
            subject, study = _ids(rel)
            if child.is_dir():
                container = (_GROUP, _PATIENT)[len(parts)] if len(parts) < 2 else None
                if container is None or not container.fullmatch(child.name):
                    rejects.append(_Reject(subject, study, path, "is_directory"))
                    continue
                try:
                    visit(child.path, rel)
                except OSError as err:
                    log.warning("cannot list %s: %s", child.path, err)
                    rejects.append(_Reject(subject, study, path, "unreadable"))
            elif subject is None or study is None or not _REPORT.fullmatch(child.name):
                rejects.append(_Reject(subject, study, path, "not_a_report_file"))
            elif not child.is_file():
                rejects.append(_Reject(subject, study, path, "unreadable"))
            else:
                candidates.append(_Candidate(path, subject, study))

    visit(str(root), ())
    return candidates, rejects


def _row(c: _Candidate, findings: str | None, impression: str | None, last_paragraph: str | None,
         comparison: str | None, sha256: str, overridden: bool) -> _Row:
    return _Row(
        c.subject_id, c.study_id, findings, impression, last_paragraph, comparison,
        findings is not None, impression is not None, count_tokens(findings), count_tokens(impression),
        c.path, sha256, overridden,
    )


def _parse_one(root: str, c: _Candidate, mode: str, overrides: Mapping[int, Override]) -> _Row | _Reject:
    """A sections row for one report file, or its reject."""
    path = os.path.join(root, c.path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        log.warning("cannot read %s: %s", path, err)
        return _Reject(c.subject_id, c.study_id, c.path, "unreadable")
    sha256 = hashlib.sha256(data).hexdigest()
    if c.study_id in overrides:
        findings, impression = overrides[c.study_id]
        return _row(c, findings, impression, None, None, sha256, True)
    if not data.strip():
        return _Reject(c.subject_id, c.study_id, c.path, "empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _Reject(c.subject_id, c.study_id, c.path, "not_utf8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    sections, names, _ = section_text(text, mode)
    texts = last_by_name(sections, names)
    findings, impression, last_paragraph = texts.get("findings"), texts.get("impression"), texts.get("last_paragraph")
    if findings is None and impression is None and last_paragraph is None:
        return _Reject(c.subject_id, c.study_id, c.path, "no_findings_impression_or_last_paragraph")
    return _row(c, findings, impression, last_paragraph, texts.get("comparison"), sha256, False)


def _parse_chunk(
    chunk: list[_Candidate], *, root: str, mode: str, overrides: Mapping[int, Override]
) -> list[_Row | _Reject]:
    return [_parse_one(root, c, mode, overrides) for c in chunk]


def load_overrides(path: Path) -> dict[int, Override]:
    """Read an overrides CSV (``study_id,findings,impression``) into ``{study_id: (findings, impression)}``."""
    overrides: dict[int, Override] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"study_id", "findings", "impression"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: overrides CSV lacks column(s) {sorted(missing)}")
        for line, record in enumerate(reader, start=2):
            match = _OVERRIDE_ID.fullmatch((record["study_id"] or "").strip())
            if match is None:
                raise ValueError(f"{path}:{line}: bad study_id {record['study_id']!r}")
            study = int(match.group(1))
            if study in overrides:
                raise ValueError(f"{path}:{line}: study {study} is listed twice")
            findings = (record["findings"] or "").strip() or None
            impression = (record["impression"] or "").strip() or None
            if findings is None and impression is None:
                raise ValueError(f"{path}:{line}: study {study} has neither findings nor impression")
            overrides[study] = (findings, impression)
    return overrides


def extract_sections(
    reports_root: Path, *, mode: str = "reference", workers: int = 1, overrides: Path | None = None
) -> tuple[pa.Table, pa.Table]:
    """Parse every report under ``reports_root`` into ``(sections, rejects)`` tables.

    ``sections`` is ordered by ``study_id`` and ``rejects`` by ``path``. ``workers > 1`` parses chunks
    of files in a pool of spawned processes, with the same output (a script calling it then needs the
    usual ``if __name__ == "__main__":`` guard).
    """
    if mode not in MODES:
        raise ValueError(f"unknown sectioning mode {mode!r}; expected one of {MODES}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    root = Path(reports_root)
    if not root.is_dir():
        raise NotADirectoryError(f"reports root {root} is not a directory")
    override_texts = load_overrides(overrides) if overrides is not None else {}
    candidates, rejects = _walk(root)

    parse = partial(_parse_chunk, root=str(root), mode=mode, overrides=override_texts)
    if workers == 1 or len(candidates) < 2:
        results = parse(candidates)
    else:
        size = math.ceil(len(candidates) / (workers * _CHUNKS_PER_WORKER))
        chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [r for chunk in pool.map(parse, chunks) for r in chunk]

    rows = [r for r in results if isinstance(r, _Row)]
    rejects += [r for r in results if isinstance(r, _Reject)]
    per_study = Counter(r.study_id for r in rows)
    rejects += [_Reject(r.subject_id, r.study_id, r.path, "duplicate_study_id") for r in rows
                if per_study[r.study_id] > 1]
    rows = sorted((r for r in rows if per_study[r.study_id] == 1), key=lambda r: r.study_id)
    rejects.sort(key=lambda r: r.path)

    unused = sorted(set(override_texts) - {r.study_id for r in rows if r.overridden})
    if unused:
        log.warning("%d override(s) matched no kept report: %s", len(unused), unused[:10])
    return _to_table(rows, SECTIONS_SCHEMA), _to_table(rejects, REJECTS_SCHEMA)


def _to_table(rows: list[_Row] | list[_Reject], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def section_counts(sections: pa.Table, rejects: pa.Table) -> dict[str, int]:
    """Counts of a sectioning run: entries = sections + rejects, and each reject reason."""
    reasons = Counter(rejects.column("reason").to_pylist())
    counts = {
        "entries": sections.num_rows + rejects.num_rows,
        "sections": sections.num_rows,
        "with_findings": sum(sections.column("has_findings").to_pylist()),
        "with_impression": sum(sections.column("has_impression").to_pylist()),
        "overridden": sum(sections.column("overridden").to_pylist()),
        "rejects": rejects.num_rows,
    }
    counts.update({f"rejects_{reason}": reasons.get(reason, 0) for reason in REJECT_REASONS})
    return counts


def write_sections(sections: pa.Table, rejects: pa.Table, out: Path, rejects_out: Path) -> dict[str, int]:
    """Write both tables as Parquet; returns (and logs) :func:`section_counts`."""
    write_table(sections, out)
    write_table(rejects, rejects_out)
    counts = section_counts(sections, rejects)
    log.info("sections: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
