"""The cells of one table row as a record's fields: split, labels, box and mask, or the reason they are bad
(:mod:`imitate.datasets.table`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from imitate.datasets.masks import MASK_SEPARATOR, NO_MASK, encode_rle, rle_runs
from imitate.datasets.table_options import REJECT, UNCERTAIN, TableSpec
from imitate.io.table_paths import relative_path


class RowError(Exception):
    """A row that cannot become (part of) a record: its reject reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def split_of(spec: TableSpec, cells: Mapping[str, str]) -> str | None:
    """The row's split (None: blank or no split column, drawn later by patient)."""
    column = spec.columns.get("split")
    if column is None or not cells[column]:
        return None
    split = spec.split_values.get(cells[column].lower())
    if split is None:
        known = ", ".join(sorted(spec.split_values))
        raise RowError("unknown_split", f"{column} is {cells[column]!r} (known: {known}; option split_values)")
    return split


def _value(spec: TableSpec, label: str, column: str, text: str) -> float:
    """One 0/1 label cell after the value mapping and the blank and uncertain policies."""
    if not text:
        if spec.blank == "zero":
            return 0.0
        raise RowError("bad_label_value", f"{column} is blank (blank: reject)")
    target = spec.values.get(text, REJECT)
    if target == UNCERTAIN:
        policy = spec.uncertain[label]
        if policy == REJECT:
            raise RowError("bad_label_value", f"{column} is uncertain ({text!r}; uncertain: reject)")
        return 1.0 if policy == "ones" else 0.0
    if target == REJECT:
        known = ", ".join(repr(v) for v, t in spec.values.items() if t != REJECT)
        raise RowError("bad_label_value", f"{column} is {text!r} (expected {known} or blank; option values)")
    return float(target)


def _names(spec: TableSpec, column: str, text: str) -> list[float]:
    """The multi-hot (or one-hot) vector of a cell of class names."""
    names = [part.strip() for part in text.split(spec.separator)] if text else []
    if spec.kind == "multiclass" and len(names) != 1:
        raise RowError("bad_label_value", f"{column} is {text!r}: a multiclass row names one class")
    if not names and spec.blank == "reject":
        raise RowError("bad_label_value", f"{column} is blank (blank: reject)")
    unknown = [name for name in names if name not in spec.classes]
    if unknown:
        raise RowError("bad_label_value", f"{column} names {unknown[0]!r}, not one of classes {list(spec.classes)}")
    return [float(name in names) for name in spec.classes]


def labels_of(spec: TableSpec, cells: Mapping[str, str]) -> tuple[float, ...]:
    """The row's labels, one 0/1 per label name (multiclass: one-hot)."""
    if spec.label_column is not None:
        return tuple(_names(spec, spec.label_column, cells[spec.label_column]))
    labels = tuple(_value(spec, c, c, cells[c]) for c in spec.label_columns)
    if spec.kind == "multiclass" and sum(labels) != 1:
        raise RowError("bad_label_value", f"{sum(labels):g} of the one-hot columns {list(spec.label_columns)} are 1")
    return labels


def _box(values: Sequence[Any], shown: str) -> list[float]:
    """A checked [x0, y0, x1, y1]: four finite numbers, x0, y0 >= 0, x1 > x0, y1 > y0."""
    try:
        if len(values) != 4 or any(isinstance(v, bool) for v in values):
            raise ValueError
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise RowError("malformed_box", f"{shown}: not four numbers x0, y0, x1, y1") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
        raise RowError("malformed_box", f"{shown}: needs x0, y0 >= 0, x1 > x0 and y1 > y0")
    return [x0, y0, x1, y1]


def boxes_of(spec: TableSpec, cells: Mapping[str, str]) -> list[list[float]]:
    """The row's boxes: the four box columns (all blank: none) or the JSON list (blank: none)."""
    if "boxes" in spec.columns:
        texts = [cells[c] for c in spec.columns["boxes"]]
        if not any(texts):
            return []
        return [_box(texts, f"box {','.join(texts)} in {','.join(spec.columns['boxes'])}")]
    column = spec.columns.get("boxes_json")
    if column is None or not cells[column]:
        return []
    try:
        boxes = json.loads(cells[column])
    except json.JSONDecodeError:
        raise RowError("malformed_box", f"{column} is not JSON: {cells[column][:60]!r}") from None
    if not isinstance(boxes, list):
        raise RowError("malformed_box", f"{column} is not a JSON list of [x0, y0, x1, y1]: {cells[column][:60]!r}")
    return [_box(box if isinstance(box, list) else [box], f"{column} box {box!r}") for box in boxes]


def mask_of(spec: TableSpec, root: Path, cell: str) -> str:
    """The record's RLE (:mod:`imitate.datasets.masks`): the RLE cell checked, or the mask image encoded.

    A blank cell is an empty mask (``-1``). A mask image's non-zero pixels are the lesion.
    """
    if not cell or cell == NO_MASK:
        return NO_MASK
    if "mask_rle" in spec.columns:
        try:
            for component in cell.split(MASK_SEPARATOR):
                rle_runs(component)
        except ValueError as error:
            raise RowError("malformed_mask", f"{spec.columns['mask_rle']}: {error}") from None
        return cell
    relative = relative_path(cell, root)
    if relative is None:
        raise RowError("path_outside_root", f"mask {cell!r} climbs out of root with '..' or is absolute elsewhere")
    path = root / relative
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise RowError("malformed_mask", f"mask {cell!r} cannot be read ({type(error).__name__})") from None
    lesion = pixels.any(axis=2) if pixels.ndim == 3 else pixels != 0
    return encode_rle(lesion)
