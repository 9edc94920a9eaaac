"""Any labelled image table as a downstream dataset, by configuration alone (``adapter: table``).

Raw file: one CSV (``.csv``, ``.csv.gz``) or Parquet file (option ``table``, relative to ``root`` or
absolute) with one row per image, or per box (``columns.boxes``); images are DICOM, JPG or PNG at paths
relative to ``root``. The options (README, "Your own data"; checked by
:mod:`imitate.datasets.table_options`) name the kind, the column of each role and how cells map to
labels and splits. Without a split column, or where its cell is blank, the split is drawn by patient:
10 % validate and 20 % test by default (the config entry's ``split:`` overrides it).

The record is the image. With ``columns.boxes`` each row holds one box (blank box cells: none) and an
image's rows are grouped by path: they must agree on everything else (``conflicting_rows``), a bad row
rejects the image at its line, and ``n_input`` counts images (plus each row rejected before grouping).
Otherwise a row is an input of its own, and a later row of an image already seen is a ``duplicate_image``.
The key is ``columns.key`` (letters, digits, ``_`` and ``-`` only) or, without it, the file name's stem
made key-safe plus 12 hex digits of the path's SHA-256 (:func:`imitate.io.table_paths.path_key`, as the
table source of pretraining names its images).

Reject reasons, each with the table's file name and the row's line (CSV: its line in the file, the
header being line 1; Parquet: its 1-based row): ``malformed_row`` (CSV field count), ``missing_path``,
``path_outside_root`` (climbs out with ``..`` or is absolute elsewhere; also for a mask path), ``missing_patient_id``,
``invalid_key``, ``unknown_split``, ``bad_label_value``, ``malformed_box``, ``malformed_mask``,
``conflicting_rows``, ``duplicate_image``, ``duplicate_key``; ``image_missing`` comes from
:func:`imitate.datasets.dataset.prepare_dataset`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, raw_path, records_table, rejects_table
from imitate.datasets.table_cells import RowError, boxes_of, labels_of, mask_of, split_of
from imitate.datasets.table_file import TableRow, is_csv, read_rows
from imitate.datasets.table_options import BLANK_POLICIES, parse_options
from imitate.demo.label_table import write_label_table
from imitate.demo.mimic import write_demo_mimic
from imitate.io.table_paths import path_key, relative_path

KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class _Image:
    path: str
    line: int  # of its first row
    fields: tuple[Any, ...] | None = None  # key, patient, split, labels, text, mask cell of its first row
    boxes: list[list[float]] = field(default_factory=list)
    problem: tuple[int, str, str] | None = None  # line, reason, detail of its first bad row


class Adapter(DatasetAdapter):
    """One image table and a column mapping; ``kind`` comes from the options."""

    kind = "binary"  # replaced by options.kind in __init__
    defaults: Mapping[str, Any] = {
        "table": None, "kind": None, "columns": {}, "labels": None, "label_column": None, "classes": None,
        "separator": "|", "values": {}, "uncertain": "reject", "blank": BLANK_POLICIES[0], "split_values": {},
    }
    split_draw: Mapping[str, float] = {"validate": 0.1, "test": 0.2}

    def __init__(self, name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, root, options)
        self.spec = parse_options(name, self.options)
        self.kind = self.spec.kind  # per instance: the kind comes from config

    def label_names(self) -> tuple[str, ...]:
        return self.spec.label_names()

    def raw_files(self) -> dict[str, str]:
        return {"table": self.spec.table}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """The mapped columns, for a CSV table (a Parquet file's columns are checked when it is read)."""
        return {"table": self.spec.needed_columns()} if is_csv(self.spec.table) else {}

    def image_dirs(self) -> tuple[str, ...]:
        """The top folders of the table's image paths (none while the table cannot be read)."""
        try:
            rows = self._rows()
        except (OSError, ValueError):
            return ()
        paths = (relative_path(row.cells[self.spec.columns["path"]], self.root) for row in rows if row.problem is None)
        return tuple(sorted({p.split("/", 1)[0] if "/" in p else "." for p in paths if p}))

    def _rows(self) -> list[TableRow]:
        return read_rows(raw_path(self, "table"), self.spec.needed_columns(), f"the table of dataset {self.name!r}")

    def read(self) -> Parsed:
        source = self.spec.table
        images: dict[str, _Image] = {}
        rejects: list[dict[str, Any]] = []  # rows rejected before grouping count one input each
        for row in self._rows():
            path, problem = self._path(row, images)
            if problem is not None:
                rejects.append({"source": source, "line": row.line, "reason": problem[0], "detail": problem[1]})
                continue
            self._add_row(images.setdefault(path, _Image(path, row.line)), row)
        n_input = len(images) + len(rejects)
        records: list[dict[str, Any]] = []
        owner: dict[str, int] = {}
        for image in images.values():
            record, problem = self._record(image, owner)
            if problem is None:
                records.append(record)
                owner[record["key"]] = image.line
            else:
                key = image.fields[0] if image.fields else None
                rejects.append({"source": source, "line": problem[0], "key": key, "reason": problem[1],
                                "detail": problem[2]})
        return Parsed(records_table(records), rejects_table(rejects), n_input)

    def _path(self, row: TableRow, images: Mapping[str, _Image]) -> tuple[str, tuple[str, str] | None]:
        """The row's image path, or the (reason, detail) that rejects the row before grouping."""
        if row.problem is not None:
            return "", ("malformed_row", row.problem)
        cell = row.cells[self.spec.columns["path"]]
        if not cell:
            return "", ("missing_path", f"column {self.spec.columns['path']!r} is blank")
        path = relative_path(cell, self.root)
        if path is None:
            return "", ("path_outside_root", f"{cell!r} is absolute or climbs out of root with '..'")
        if path in images and "boxes" not in self.spec.columns:
            return "", ("duplicate_image", f"{path} is also the image of line {images[path].line}")
        return path, None

    def _add_row(self, image: _Image, row: TableRow) -> None:
        """Parse one row of ``image`` into it; the first bad row rejects the image."""
        if image.problem is not None:
            return
        try:
            fields = self._fields(image.path, row)
            box = boxes_of(self.spec, row.cells)
        except RowError as error:
            image.problem = (row.line, error.reason, error.detail)
            return
        if image.fields is None:
            image.fields = fields
        elif fields != image.fields:
            image.problem = (row.line, "conflicting_rows", f"differs from line {image.line} in more than its box")
            return
        image.boxes += box

    def _fields(self, path: str, row: TableRow) -> tuple[Any, ...]:
        """Key, patient, split, labels, text and mask cell of a row; RowError if one is bad."""
        columns, cells = self.spec.columns, row.cells
        patient = cells[columns["patient"]]
        if not patient:
            raise RowError("missing_patient_id", f"column {columns['patient']!r} is blank")
        key = cells[columns["key"]] if "key" in columns else path_key(path)
        if not KEY.match(key):
            raise RowError("invalid_key", f"{key!r}: keys hold letters, digits, '_' and '-' only")
        split = split_of(self.spec, cells)
        labels = labels_of(self.spec, cells)
        text = cells[columns["text"]] or None if "text" in columns else None
        mask = next((cells[columns[role]] for role in ("mask_rle", "mask_path") if role in columns), None)
        return key, patient, split, labels, text, mask

    def _record(self, image: _Image, owner: Mapping[str, int]) -> tuple[dict[str, Any], tuple[int, str, str] | None]:
        """The record of one image, or the (line, reason, detail) it is rejected for."""
        if image.problem is not None:
            return {}, image.problem
        key, patient, split, labels, text, mask_cell = image.fields
        if key in owner:
            return {}, (image.line, "duplicate_key", f"{key!r} is also the key of line {owner[key]}")
        try:
            mask = None if mask_cell is None else mask_of(self.spec, self.root, mask_cell)
        except RowError as error:
            return {}, (image.line, error.reason, error.detail)
        has_boxes = any(role in self.spec.columns for role in ("boxes", "boxes_json"))
        return {"key": key, "patient_id": patient, "path": image.path, "split": split, "labels": list(labels),
                "text": text, "boxes": image.boxes if has_boxes else None, "mask_rle": mask}, None

    def write_demo(self, spec: DemoSpec) -> None:
        """The demo MIMIC-CXR tree and its label table (:mod:`imitate.demo.label_table`) at option ``table``.

        The pipeline's own demo writes the same table beside its MIMIC-CXR (``imitate demo-data``); this
        one is for an entry with ``demo:``. The options must map the demo table's columns.
        """
        write_demo_mimic(self.root, n_studies=spec.n_images, seed=spec.seed, image_size=spec.image_size,
                         dicom_fraction=0.2, split_fractions={"train": 0.2, "validate": 0.1, "test": 0.7},
                         overwrite=True)
        write_label_table(self.root, self.spec.table)

