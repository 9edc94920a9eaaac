"""The pretraining manifest: MIMIC-CXR metadata x official split x report sections, in DuckDB.

Every metadata row (one image) ends up either in ``images`` or in ``rejects`` with the first reason
that applies, checked in this order:

1. ``invalid_dicom_id``: empty, or not usable as a WebDataset key (only letters, digits, ``-``, ``_``);
2. ``view_not_frontal``: ``ViewPosition`` not in ``views`` (PA and AP by default; empty counts as not);
3. ``no_split``: no row with the same ``dicom_id, study_id, subject_id`` in the split file;
4. ``no_sections``: the study (same ``subject_id, study_id``) is not in sections.parquet, i.e. it was
   rejected by the sections stage or has no report;
5. ``too_few_tokens``: Findings and Impression together have fewer than ``min_tokens`` tokens
   (:mod:`imitate.sections.tokens`; a ``min_tokens`` below 1 acts as 1, since a study needs some text);
6. ``image_file_missing``: ``<dicom_id><ext>`` is in the study folder of none of the image trees.

A table source (``imitate source-table``) gives its rows instead of the metadata and split CSVs: the
metadata.parquet of that stage, whose ``path`` column names each image file, so no tree is searched
(``image_file_missing``: no file at ``<root>/<path>``; ``images_by_tree`` counts the found files by
extension, ``*.jpg``). ``views=None`` keeps every view (a table without a view column).

Text of a kept study, ``text_mode="hierarchical"`` (the default):

* Findings are kept only if they have at least ``min_tokens`` tokens on their own; otherwise
  ``findings`` is null and ``has_findings`` false, while the Impression stays. So Findings
  ``"Normal."`` with Impression ``"No acute cardiopulmonary process."`` keeps only the Impression.
* Every study has an Impression: a study whose Impression is absent or has no token (``"___."``) uses
  its Findings as the Impression, and then has no separate Findings (``has_findings`` false), so the
  two alignment targets are never the same text.
* ``last_paragraph`` is not used, as in MGCA: a report with neither section has 0 tokens.

``text_mode="mgca"`` reproduces MGCA's single pretraining text: ``impression + " " + findings`` (the
present ones) in ``impression``, ``findings`` null. Unlike MGCA, validate and test stay separate splits.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import pyarrow as pa

from imitate.io.files import write_json
from imitate.io.parquet import write_table
from imitate.io.progress import ProgressLog

log = logging.getLogger(__name__)

REJECT_REASONS: tuple[str, ...] = (
    "invalid_dicom_id", "view_not_frontal", "no_split", "no_sections", "too_few_tokens", "image_file_missing",
)
TEXT_MODES: tuple[str, ...] = ("hierarchical", "mgca")
SPLITS: tuple[str, ...] = ("train", "validate", "test")

METADATA_TYPES = {"dicom_id": "VARCHAR", "subject_id": "BIGINT", "study_id": "BIGINT", "ViewPosition": "VARCHAR"}
SPLIT_TYPES = {"dicom_id": "VARCHAR", "study_id": "BIGINT", "subject_id": "BIGINT", "split": "VARCHAR"}
SECTION_COLUMNS = ("subject_id", "study_id", "findings", "impression", "n_tokens_findings", "n_tokens_impression")

IMAGES_SCHEMA = pa.schema([
    ("key", pa.string()), ("dicom_id", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()),
    ("view", pa.string()), ("split", pa.string()), ("path", pa.string()),
])
STUDIES_SCHEMA = pa.schema([
    ("subject_id", pa.int64()), ("study_id", pa.int64()), ("split", pa.string()), ("findings", pa.string()),
    ("impression", pa.string()), ("has_findings", pa.bool_()), ("n_images", pa.int64()),
])
REJECTS_SCHEMA = pa.schema(
    [("dicom_id", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()), ("reason", pa.string())]
)


@dataclass(frozen=True)
class ManifestResult:
    """The three manifest tables and the counts of every filter."""

    images: pa.Table
    studies: pa.Table
    rejects: pa.Table
    counts: dict[str, Any]


def _read_csv(con: duckdb.DuckDBPyConnection, name: str, path: Path, types: Mapping[str, str]) -> None:
    """Load the ``types`` columns of a (gzipped) CSV into table ``name``, every other column as text."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    source = "read_csv($path, header = true, all_varchar = true, delim = ',', quote = '\"', escape = '\"'"
    try:
        header = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source})", {"path": str(path)}).fetchall()]
        missing = sorted(set(types) - set(header))
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        typed = ", ".join(f"'{col}': '{kind}'" for col, kind in types.items())
        columns = ", ".join(f'"{col}"' for col in types)
        con.execute(f"CREATE TABLE {name} AS SELECT {columns} FROM {source}, types = {{{typed}}})", {"path": str(path)})
    except duckdb.Error as err:
        raise ValueError(f"{path}: cannot read: {str(err).splitlines()[0]}") from err


def _check_unique(con: duckdb.DuckDBPyConnection, table: str, key: str, path: Path) -> None:
    dup = con.execute(
        f"SELECT {key} FROM {table} WHERE {key} IS NOT NULL GROUP BY {key} HAVING count(*) > 1 ORDER BY {key} LIMIT 5"
    ).fetchall()
    if dup:
        raise ValueError(f"{path}: {key} not unique, e.g. {[row[0] for row in dup]}")


def _load_rows(con: duckdb.DuckDBPyConnection, rows: Path) -> None:
    """Tables ``meta`` (with ``path``) and ``split_rows`` from a table source's metadata.parquet."""
    if not rows.is_file():
        raise FileNotFoundError(f"{rows}: no such file")
    try:
        con.execute("CREATE TABLE meta AS SELECT dicom_id, subject_id, study_id, ViewPosition, path "
                    "FROM read_parquet($path)", {"path": str(rows)})
    except duckdb.Error as err:
        raise ValueError(f"{rows}: cannot read the table source's rows: {str(err).splitlines()[0]}") from err
    con.execute("CREATE TABLE split_rows AS SELECT dicom_id, study_id, subject_id, split FROM read_parquet($path) "
                "WHERE split IS NOT NULL", {"path": str(rows)})


def _load_inputs(
    con: duckdb.DuckDBPyConnection, sections: Path, metadata: Path, split: Path, rows: Path | None
) -> None:
    if rows is not None:
        _load_rows(con, rows)
        metadata = split = rows
    else:
        _read_csv(con, "meta", metadata, METADATA_TYPES)
        _read_csv(con, "split_rows", split, SPLIT_TYPES)
    if not sections.is_file():
        raise FileNotFoundError(f"{sections}: no such file")
    columns = ", ".join(SECTION_COLUMNS)
    try:
        con.execute(f"CREATE TABLE sections AS SELECT {columns} FROM read_parquet($path)", {"path": str(sections)})
    except duckdb.Error as err:
        raise ValueError(f"{sections}: cannot read sections: {str(err).splitlines()[0]}") from err
    _check_unique(con, "meta", "dicom_id", metadata)
    _check_unique(con, "split_rows", "dicom_id", split)
    _check_unique(con, "sections", "study_id", sections)
    bad = con.execute(
        "SELECT DISTINCT split FROM split_rows WHERE split IS NULL OR NOT list_contains($splits, split) "
        "ORDER BY split LIMIT 5", {"splits": list(SPLITS)}
    ).fetchall()
    if bad:
        raise ValueError(f"{split}: unknown split value(s) {[row[0] for row in bad]}; expected {list(SPLITS)}")


_LABEL_SQL = """
CREATE TABLE labelled AS
SELECT m.dicom_id, m.subject_id, m.study_id, m.ViewPosition AS view, s.split,
       sec.findings, sec.impression, sec.n_tokens_findings AS n_f, sec.n_tokens_impression AS n_i,
       CASE
         WHEN NOT coalesce(regexp_full_match(m.dicom_id, '[A-Za-z0-9_-]+'), false) THEN 'invalid_dicom_id'
         WHEN $filter_views AND (m.ViewPosition IS NULL OR NOT list_contains($views, m.ViewPosition))
           THEN 'view_not_frontal'
         WHEN s.split IS NULL THEN 'no_split'
         WHEN sec.study_id IS NULL THEN 'no_sections'
         WHEN sec.n_tokens_findings + sec.n_tokens_impression < $min_tokens THEN 'too_few_tokens'
       END AS reason
FROM meta m
LEFT JOIN split_rows s ON s.dicom_id = m.dicom_id AND s.study_id = m.study_id AND s.subject_id = m.subject_id
LEFT JOIN sections sec ON sec.study_id = m.study_id AND sec.subject_id = m.subject_id
"""


def _count(con: duckdb.DuckDBPyConnection, rows: str) -> str:
    """How many ``rows`` (a table, maybe with a WHERE clause) there are, as ``1,234``."""
    return f"{con.execute(f'SELECT count(*) FROM {rows}').fetchone()[0]:,}"


def _tree_dirs(image_trees: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """Validated ``(dir, ext)`` pairs: ``dir`` relative to the root, ``ext`` starting with a dot."""
    if not image_trees:
        raise ValueError("at least one image tree is needed")
    trees = []
    for tree in image_trees:
        directory, ext = PurePosixPath(tree["dir"]), tree["ext"]
        if directory.is_absolute() or ".." in directory.parts:
            raise ValueError(f"image tree dir {tree['dir']!r} must be relative to the root, without '..'")
        if not ext.startswith(".") or "/" in ext:
            raise ValueError(f"image tree ext {ext!r} must look like '.jpg'")
        trees.append((directory.as_posix(), ext))
    return trees


def _find_image(
    root: str, trees: list[tuple[str, str]], subject: int, study: int, dicom: str
) -> tuple[int, str] | None:
    """``(tree index, path relative to root)`` of the first tree holding the image, or ``None``."""
    study_dir = f"p{str(subject)[:2]}/p{subject}/s{study}"
    for i, (directory, ext) in enumerate(trees):
        rel = f"{directory}/{study_dir}/{dicom}{ext}"
        if os.path.isfile(os.path.join(root, rel)):
            return i, rel
    return None


def _resolve_images(
    con: duckdb.DuckDBPyConnection, root: Path, trees: list[tuple[str, str]] | None
) -> dict[str, int]:
    """Find the file of every image still kept (table ``resolved``); returns how many each tree gave (or,
    with the table source's paths, ``trees=None``, how many of each extension were found)."""
    if trees is None:
        candidates = con.execute(
            "SELECT l.dicom_id, m.path FROM labelled l JOIN meta m USING (dicom_id) WHERE l.reason IS NULL "
            "ORDER BY dicom_id"
        ).fetchall()
    else:
        candidates = con.execute(
            "SELECT dicom_id, subject_id, study_id FROM labelled WHERE reason IS NULL ORDER BY dicom_id"
        ).fetchall()
    dicoms, paths, hits = [], [], Counter()
    progress = ProgressLog(log, "manifest step 3/4, image files", len(candidates), "images")
    for dicom, *where in candidates:
        if trees is None:
            found = (PurePosixPath(where[0]).suffix, where[0]) if os.path.isfile(os.path.join(root, where[0])) else None
        else:
            found = _find_image(str(root), trees, *where, dicom)
        if found is not None:
            dicoms.append(dicom)
            paths.append(found[1])
            hits[found[0]] += 1
        progress.advance(note=f"{len(dicoms):,} found")
    _register_resolved(con, dicoms, paths)
    if trees is None:
        return {f"*{ext}": hits[ext] for ext in sorted(hits)}
    return {f"{directory}/*{ext}": hits[i] for i, (directory, ext) in enumerate(trees)}


def _register_resolved(con: duckdb.DuckDBPyConnection, dicoms: list[str], paths: list[str]) -> None:
    """Table ``final``: every labelled row with its found path and its final reason."""
    schema = pa.schema([("dicom_id", pa.string()), ("path", pa.string())])
    con.register("resolved", pa.table({"dicom_id": dicoms, "path": paths}, schema=schema))
    con.execute(
        "CREATE TABLE final AS SELECT l.*, r.path, "
        "coalesce(l.reason, CASE WHEN r.path IS NULL THEN 'image_file_missing' END) AS final_reason "
        "FROM labelled l LEFT JOIN resolved r USING (dicom_id)"
    )


def _tables(con: duckdb.DuckDBPyConnection, text_mode: str, min_tokens: int) -> tuple[pa.Table, ...]:
    """The ordered images, studies and rejects tables from table ``final``."""
    findings_sql, impression_sql = (
        (f"CASE WHEN n_i >= 1 AND n_f >= {min_tokens:d} THEN findings END",
         "CASE WHEN n_i >= 1 THEN impression ELSE findings END")
        if text_mode == "hierarchical" else ("NULL", "concat_ws(' ', impression, findings)")
    )
    images = con.sql(
        "SELECT dicom_id AS key, dicom_id, subject_id, study_id, view, split, path FROM final "
        "WHERE final_reason IS NULL ORDER BY split, study_id, dicom_id"
    ).to_arrow_table()
    studies = con.sql(
        f"SELECT subject_id, study_id, split, {findings_sql} AS findings, {impression_sql} AS impression, "
        f"{findings_sql} IS NOT NULL AS has_findings, n_images FROM ("
        " SELECT subject_id, study_id, split, any_value(findings) AS findings,"
        " any_value(impression) AS impression, any_value(n_f) AS n_f, any_value(n_i) AS n_i, count(*) AS n_images"
        " FROM final WHERE final_reason IS NULL GROUP BY subject_id, study_id, split"
        ") ORDER BY study_id"
    ).to_arrow_table()
    rejects = con.sql(
        "SELECT dicom_id, subject_id, study_id, final_reason AS reason FROM final WHERE final_reason IS NOT NULL "
        "ORDER BY study_id NULLS LAST, dicom_id NULLS LAST, subject_id NULLS LAST, reason"
    ).to_arrow_table()
    return images.cast(IMAGES_SCHEMA), studies.cast(STUDIES_SCHEMA), rejects.cast(REJECTS_SCHEMA)


def build_manifest(
    *,
    sections: Path,
    metadata: Path | None = None,
    split: Path | None = None,
    root: Path,
    image_trees: Sequence[Mapping[str, str]] = (),
    rows: Path | None = None,
    views: Sequence[str] | None = ("PA", "AP"),
    min_tokens: int = 3,
    text_mode: str = "hierarchical",
) -> ManifestResult:
    """Join metadata (kept ``views``) x split x sections, resolve image files, and explain every drop.

    ``rows`` (a table source's metadata.parquet) stands for ``metadata``, ``split`` and ``image_trees``."""
    if text_mode not in TEXT_MODES:
        raise ValueError(f"unknown text_mode {text_mode!r}; expected one of {TEXT_MODES}")
    if views is not None and not views:
        raise ValueError("at least one view is needed")
    if (rows is None) == (metadata is None or split is None):
        raise ValueError("give either metadata and split (with image trees) or a table source's rows")
    trees = _tree_dirs(image_trees) if rows is None else None
    min_tokens = max(int(min_tokens), 1)
    con = duckdb.connect(":memory:")
    try:
        _load_inputs(con, Path(sections), metadata and Path(metadata), split and Path(split), rows and Path(rows))
        log.info("manifest step 1/4, inputs read: %s metadata rows, %s split rows, %s sections",
                 *(_count(con, table) for table in ("meta", "split_rows", "sections")))
        con.execute(_LABEL_SQL, {"views": list(views or ()), "filter_views": views is not None,
                                 "min_tokens": min_tokens})
        log.info("manifest step 2/4, joined: %s images pass the view, split, sections and token filters",
                 _count(con, "labelled WHERE reason IS NULL"))
        by_tree = _resolve_images(con, Path(root), trees)
        mixed = con.execute(
            "SELECT study_id FROM final WHERE final_reason IS NULL GROUP BY study_id HAVING count(DISTINCT split) > 1 "
            "ORDER BY study_id LIMIT 5"
        ).fetchall()
        if mixed:
            raise ValueError(f"{split or rows}: a study's images are in several splits, e.g. {[r[0] for r in mixed]}")
        log.info("manifest step 4/4: sorting the images, studies and rejects tables")
        images, studies, rejects = _tables(con, text_mode, min_tokens)
        n_metadata = con.execute("SELECT count(*) FROM meta").fetchone()[0]
    finally:
        con.close()
    return ManifestResult(images, studies, rejects, _counts(images, studies, rejects, n_metadata, by_tree))


def _counts(
    images: pa.Table, studies: pa.Table, rejects: pa.Table, n_metadata: int, by_tree: dict[str, int]
) -> dict[str, Any]:
    """Every filter with its count; fails if metadata rows != kept images + rejects."""
    reasons = Counter(rejects.column("reason").to_pylist())
    image_splits = Counter(images.column("split").to_pylist())
    study_splits = Counter(studies.column("split").to_pylist())
    counts = {
        "metadata_rows": n_metadata,
        "images": images.num_rows,
        "studies": studies.num_rows,
        "studies_with_findings": sum(studies.column("has_findings").to_pylist()),
        "rejects": rejects.num_rows,
        "rejects_by_reason": {reason: reasons.get(reason, 0) for reason in REJECT_REASONS},
        "images_by_split": {s: image_splits.get(s, 0) for s in SPLITS},
        "studies_by_split": {s: study_splits.get(s, 0) for s in SPLITS},
        "images_by_tree": by_tree,
    }
    if images.num_rows + rejects.num_rows != n_metadata:
        raise RuntimeError(f"manifest counts do not add up: {counts}")
    return counts


def write_manifest(
    result: ManifestResult, out_dir: Path, metadata: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write images/studies/rejects Parquet (with ``metadata``, the stage's provenance) and counts.json
    (sorted keys) under ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "images": write_table(result.images, out_dir / "images.parquet", metadata),
        "studies": write_table(result.studies, out_dir / "studies.parquet", metadata),
        "rejects": write_table(result.rejects, out_dir / "rejects.parquet", metadata),
    }
    paths["counts"] = write_json(out_dir / "counts.json", result.counts)
    log.info(
        "manifest: %d metadata rows -> %d images, %d studies, %d rejects %s",
        result.counts["metadata_rows"], result.counts["images"], result.counts["studies"],
        result.counts["rejects"], result.counts["rejects_by_reason"],
    )
    return paths
