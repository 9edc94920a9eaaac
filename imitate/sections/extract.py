"""Walk a MIMIC-CXR reports tree and extract Findings / Impression per study.

The tree is ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` (group folder, patient folder, one report per study),
walked in sorted order. Every entry under the root lands exactly once in ``sections`` or ``rejects``;
group and patient folders are only containers. Reject reasons:

* ``not_a_report_file``: a file that is not ``s<digits>.txt`` inside a patient folder (``.DS_Store``,
  the ``index.html`` of a wget mirror, a report at the wrong depth);
* ``is_directory``: a directory where a report or a container was expected (it is not descended);
* ``unreadable``: a dangling symlink, a special file, or an I/O error;
* ``empty``: no bytes, or only whitespace;
* ``no_findings_impression_or_last_paragraph``: the parser found none of the three;
* ``duplicate_study_id``: two otherwise valid reports share a study id (every copy is rejected, as
  there is no telling which one is right).

Text is read as Python's text mode reads it, as the reference does: CRLF and CR become LF; tabs stay.
Bytes that are not UTF-8 (MIMIC reports are plain ASCII, so they mean a damaged or foreign file; the
reference parser would crash on them) are decoded with U+FFFD replacement characters, and the row is
flagged ``utf8_replaced``: check those reports, or drop them with a filter on that column.
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
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from imitate.io.parquet import write_table
from imitate.io.progress import ProgressLog
from imitate.sections.parser import MODES, last_by_name, section_text
from imitate.sections.tokens import count_tokens

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
        ("utf8_replaced", pa.bool_()),
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
    "no_findings_impression_or_last_paragraph",
    "duplicate_study_id",
)

_GROUP = re.compile(r"p\d{2}")
_PATIENT = re.compile(r"p(\d+)")
_STUDY = re.compile(r"s(\d+)(?:\.txt)?")
_REPORT = re.compile(r"s\d+\.txt")
_OVERRIDE_ID = re.compile(r"s?(\d+)")
_CHUNKS_PER_WORKER = 8
_MIN_CHUNKS = 100  # the progress lines come per chunk
_READ_SIZE = 1 << 16
_TEXTS = ("findings", "impression", "last_paragraph", "comparison")

Override = tuple[str | None, str | None]  # (findings, impression)
# One sections row, in SECTIONS_SCHEMA order.
_Row = tuple[int, int, str | None, str | None, str | None, str | None, bool, bool, int, int, str, str, bool, bool]


class _Reject(NamedTuple):
    subject_id: int | None
    study_id: int | None
    path: str
    reason: str


def _ids(parts: tuple[str, ...]) -> tuple[int | None, int | None]:
    """(subject_id, study_id) read from a relative path, where its folders and name allow."""
    subject = _PATIENT.fullmatch(parts[1]) if len(parts) >= 2 else None
    study = _STUDY.fullmatch(parts[2]) if len(parts) == 3 else None
    return (int(subject.group(1)) if subject else None, int(study.group(1)) if study else None)


def _scan(directory: str, parts: tuple[str, ...], rejects: list[_Reject]) -> list[tuple[str, bool, bool]]:
    """Sorted ``(name, is_dir, is_file)`` of the entries of ``directory`` (the root folder when ``parts`` is
    empty); a folder under the root that cannot be listed is rejected."""
    try:
        with os.scandir(directory) as scan:
            return sorted((entry.name, entry.is_dir(), entry.is_file()) for entry in scan)
    except OSError as err:
        if not parts:
            raise
        log.warning("cannot list %s: %s", directory, err)
        rejects.append(_Reject(*_ids(parts), "/".join(parts), "unreadable"))
        return []


def _walk_containers(root: str) -> tuple[list[str], list[_Reject]]:
    """Sorted walk of the group level: patient folders (relative paths) and the entries rejected on sight.

    The entries inside patient folders are left to :func:`_parse_folders`, so that workers list them.
    """
    patients: list[str] = []
    rejects: list[_Reject] = []

    def visit(directory: str, parts: tuple[str, ...]) -> None:
        for name, is_dir, _ in _scan(directory, parts, rejects):
            rel = (*parts, name)
            path = "/".join(rel)
            if not is_dir:
                rejects.append(_Reject(*_ids(rel), path, "not_a_report_file"))
            elif not (_GROUP, _PATIENT)[len(parts)].fullmatch(name):
                rejects.append(_Reject(*_ids(rel), path, "is_directory"))
            elif parts:
                patients.append(path)
            else:
                visit(os.path.join(directory, name), rel)

    visit(root, ())
    return patients, rejects


def _read(path: str) -> bytes:
    # os.read on a raw descriptor: about half the cost of open() + read() for small files
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _parse_one(
    root: str, rel: str, subject: int, study: int, mode: str, overrides: Mapping[int, Override]
) -> _Row | _Reject:
    """A sections row for one report file, or its reject."""
    path = os.path.join(root, rel)
    try:
        data = _read(path)
    except OSError as err:
        log.warning("cannot read %s: %s", path, err)
        return _Reject(subject, study, rel, "unreadable")
    return parse_report(data, subject, study, rel, mode, overrides)


def parse_report(
    data: bytes, subject: int, study: int, rel: str, mode: str, overrides: Mapping[int, Override]
) -> _Row | _Reject:
    """A sections row for the bytes of one report (found at ``rel``), or its reject."""
    sha256 = hashlib.sha256(data).hexdigest()
    replaced = False
    if study in overrides:
        findings, impression = overrides[study]
        last_paragraph = comparison = None
    else:
        if not data.strip():
            return _Reject(subject, study, rel, "empty")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text, replaced = data.decode("utf-8", errors="replace"), True
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        sections, names, _ = section_text(text, mode)
        texts = last_by_name(sections, names, _TEXTS)
        findings, impression = texts.get("findings"), texts.get("impression")
        last_paragraph, comparison = texts.get("last_paragraph"), texts.get("comparison")
        if findings is None and impression is None and last_paragraph is None:
            return _Reject(subject, study, rel, "no_findings_impression_or_last_paragraph")
    return (
        subject,
        study,
        findings,
        impression,
        last_paragraph,
        comparison,
        findings is not None,
        impression is not None,
        count_tokens(findings),
        count_tokens(impression),
        rel,
        sha256,
        study in overrides,
        replaced,
    )


def _parse_folders(
    folders: list[str], *, root: str, mode: str, overrides: Mapping[int, Override]
) -> tuple[pa.Table, list[_Reject]]:
    """List and parse the patient folders ``folders``: their sections table (unsorted) and rejects."""
    rows: list[_Row] = []
    rejects: list[_Reject] = []
    for folder in folders:
        parts = tuple(folder.split("/"))
        subject = int(parts[1][1:])
        for name, is_dir, is_file in _scan(os.path.join(root, folder), parts, rejects):
            rel = f"{folder}/{name}"
            study = _STUDY.fullmatch(name)
            study_id = int(study.group(1)) if study else None
            if is_dir:
                rejects.append(_Reject(subject, study_id, rel, "is_directory"))
            elif study_id is None or not _REPORT.fullmatch(name):
                rejects.append(_Reject(subject, study_id, rel, "not_a_report_file"))
            elif not is_file:
                rejects.append(_Reject(subject, study_id, rel, "unreadable"))
            else:
                result = _parse_one(root, rel, subject, study_id, mode, overrides)
                (rejects if isinstance(result, _Reject) else rows).append(result)
    return _to_table(rows, SECTIONS_SCHEMA), rejects


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

    ``sections`` is ordered by ``study_id`` and ``rejects`` by ``path``. ``workers > 1`` lists and parses
    chunks of patient folders in a pool of spawned processes, with the same output (a script calling it
    then needs the usual ``if __name__ == "__main__":`` guard).
    """
    if mode not in MODES:
        raise ValueError(f"unknown sectioning mode {mode!r}; expected one of {MODES}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    root = Path(reports_root)
    if not root.is_dir():
        raise NotADirectoryError(f"reports root {root} is not a directory")
    override_texts = load_overrides(overrides) if overrides is not None else {}
    patients, rejects = _walk_containers(str(root))

    parse = partial(_parse_folders, root=str(root), mode=mode, overrides=override_texts)
    # chunks of patient folders, enough of them for the progress lines (the output does not depend on them)
    size = max(1, math.ceil(len(patients) / max(workers * _CHUNKS_PER_WORKER, _MIN_CHUNKS)))
    chunks = [patients[i : i + size] for i in range(0, len(patients), size)]
    with ExitStack() as stack:
        if workers > 1 and len(chunks) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            results = pool.map(parse, chunks)
        else:
            results = map(parse, chunks)
        parts = _collect(results, chunks)
    sections = pa.concat_tables([SECTIONS_SCHEMA.empty_table(), *(table for table, _ in parts)])
    for _, chunk_rejects in parts:
        rejects += chunk_rejects

    study_ids = sections.column("study_id").to_pylist()
    per_study = Counter(study_ids)
    unique = pa.array([per_study[s] == 1 for s in study_ids], type=pa.bool_())
    duplicates = sections.filter(pc.invert(unique)).select(["subject_id", "study_id", "path"]).to_pylist()
    rejects += [_Reject(d["subject_id"], d["study_id"], d["path"], "duplicate_study_id") for d in duplicates]
    sections = sections.filter(unique).sort_by("study_id").combine_chunks()
    rejects.sort(key=lambda r: r.path)

    overridden = sections.filter(sections.column("overridden")).column("study_id").to_pylist()
    unused = sorted(set(override_texts) - set(overridden))
    if unused:
        log.warning("%d override(s) matched no kept report: %s", len(unused), unused[:10])
    return sections, _to_table(rejects, REJECTS_SCHEMA)


def _collect(
    results: Iterator[tuple[pa.Table, list[_Reject]]], chunks: list[list[str]]
) -> list[tuple[pa.Table, list[_Reject]]]:
    """The parsed ``chunks`` in order, logging progress as they come."""
    progress = ProgressLog(log, "sections", sum(map(len, chunks)), "patient folders")
    parts, kept, rejected = [], 0, 0
    for chunk, part in zip(chunks, results, strict=True):
        parts.append(part)
        kept, rejected = kept + part[0].num_rows, rejected + len(part[1])
        progress.advance(len(chunk), note=f"{kept:,} reports with sections, {rejected:,} rejected entries")
    return parts


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
        "utf8_replaced": sum(sections.column("utf8_replaced").to_pylist()),
        "rejects": rejects.num_rows,
    }
    counts.update({f"rejects_{reason}": reasons.get(reason, 0) for reason in REJECT_REASONS})
    return counts


def write_sections(
    sections: pa.Table, rejects: pa.Table, out: Path, rejects_out: Path, metadata: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Write both tables as Parquet with ``metadata`` (the stage's provenance); returns (and logs)
    :func:`section_counts`."""
    write_table(sections, out, metadata)
    write_table(rejects, rejects_out, metadata)
    counts = section_counts(sections, rejects)
    log.info("sections: %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return counts
