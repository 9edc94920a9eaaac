"""RSNA Pneumonia Detection (stage 2 train): pneumonia yes/no per patient, with its opacity boxes.

Raw files: ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``), one row per box and a
single ``id,,,,,0`` row for a negative patient, numbers written as floats (``264.0``); images
``stage_2_train_images/<patientId>.dcm``, one per patient.

Accounting: the record, and so the unit of ``n_input``, is the patient (a row that names no patient
counts as one of its own, rejected as ``missing_patient_id``); the rows a patient's record collapses
from are logged, not counted. A record's label is the Target its rows share, its boxes
``[x, y, x + width, y + height]`` in pixels, one per positive row (none for a negative). A patient with
a bad row is rejected whole at that row's line: ``invalid_patient_id`` (characters a key or file name
cannot hold), ``malformed_row`` (not six fields), ``malformed_number``, ``positive_without_box``,
``negative_with_box``; or at its first line for ``conflicting_targets``. RSNA has no official split:
60/20/20 by patient, the paper's Table II (16,010 / 5,337 / 5,337 of the 26,684 patients). MGCA's
classification CSVs used 70/15/15, but its detection split and the paper's Table II are 60/20/20.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imitate.datasets.base import (
    DatasetAdapter,
    DemoSpec,
    Parsed,
    raw_path,
    records_table,
    rejects_table,
    write_csv,
)
from imitate.datasets.jpeg_dicom import FilmHeader, kaggle_uids, write_jpeg_dicom
from imitate.demo.canvas import Lesion
from imitate.demo.film import draw_film, film_rng, random_states, to_uint8

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("Pneumonia",)
HEADER: tuple[str, ...] = ("patientId", "x", "y", "width", "height", "Target")
PATIENT_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELD_OF_VIEW_MM = 430.0  # the longer side of a drawn film


@dataclass
class _Patient:
    patient_id: str
    line: int  # of its first row
    targets: list[int] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    problem: tuple[int, str, str] | None = None  # line, reason, detail of its first bad row


class Adapter(DatasetAdapter):
    """RSNA Pneumonia from ``stage_2_train_labels.csv``; images are ``<images>/<patientId>.dcm``."""

    kind = "binary"
    defaults: Mapping[str, Any] = {"labels": "stage_2_train_labels.csv", "images": "stage_2_train_images"}
    split_draw: Mapping[str, float] = {"validate": 0.2, "test": 0.2}

    def label_names(self) -> tuple[str, ...]:
        return LABELS

    def raw_files(self) -> dict[str, str]:
        return {"labels": self.options["labels"]}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        return {"labels": HEADER}

    def image_dirs(self) -> tuple[str, ...]:
        return (self.options["images"],)

    def read(self) -> Parsed:
        source = self.options["labels"]
        patients, rejects, n_rows = _read_rows(raw_path(self, "labels"), source)
        n_input = len(patients) + len(rejects)
        records = []
        for patient in patients:
            problem = patient.problem or _conflict(patient)
            if problem is not None:
                line, reason, detail = problem
                rejects.append({"source": source, "line": line, "key": patient.patient_id, "reason": reason,
                                "detail": detail})
                continue
            records.append({
                "key": patient.patient_id, "patient_id": patient.patient_id,
                "path": f"{self.options['images']}/{patient.patient_id}.dcm", "split": None,
                "labels": [float(patient.targets[0])], "boxes": patient.boxes,
            })
        log.info("%s: %d rows of %d patients: %d records, %d rejected", source, n_rows, n_input, len(records),
                 len(rejects))
        return Parsed(records_table(records), rejects_table(rejects), n_input)

    def write_demo(self, spec: DemoSpec) -> None:
        """Write the label CSV and one 8-bit JPEG Baseline DICOM per patient for ``spec.n_images`` films.

        28 % of the patients (at least one, if there are two) have pneumonia, drawn as a consolidation
        whose box is their row; every third of them has two rows instead, the boxes of the upper and
        the lower part (readers often boxed one opacity twice). The others have no consolidation but
        may show other findings. Positives are mostly AP films, as in the real set.
        """
        if spec.n_images < 1 or spec.image_size < 32:
            raise ValueError(f"demo needs n_images >= 1 and image_size >= 32, got {spec}")
        rows = [row for index, film in enumerate(_plan(spec)) for row in self._write_film(spec, index, film)]
        write_csv(raw_path(self, "labels"), HEADER, rows)

    def _write_film(self, spec: DemoSpec, index: int, plan: _Film) -> list[tuple[str, ...]]:
        """Draw and write film ``index``; its label rows."""
        rng = film_rng(spec.seed, 1, index)
        patient = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        states = {k: v for k, v in random_states(rng).items() if k != "Consolidation"}
        if plan.positive:
            states["Consolidation"] = True
        view = "AP" if rng.random() < (0.75 if plan.positive else 0.4) else "PA"
        film = draw_film(states, view, spec.image_size, rng)
        pixels = to_uint8(film.pixels)
        study, series, sop = kaggle_uids(plan.number, rng)
        sex, age = ("F" if rng.random() < 0.43 else "M"), int(rng.integers(18, 90))
        header = FilmHeader(patient, sex, age, view, study, series, sop, _FIELD_OF_VIEW_MM / max(pixels.shape))
        write_jpeg_dicom(self.root / self.options["images"] / f"{patient}.dcm", pixels, header)
        lesions = [lesion for lesion in film.lesions if lesion.label == "Consolidation"]
        boxes = _boxes(lesions[0], plan.twice) if lesions else []
        return [_box_row(patient, box) for box in boxes] or [(patient, "", "", "", "", "0")]


@dataclass(frozen=True)
class _Film:
    number: int  # in its UIDs
    positive: bool
    twice: bool  # boxed in two parts


def _plan(spec: DemoSpec) -> list[_Film]:
    """Which films are positive (28 %, at least one of two or more) and which of those get two boxes."""
    rng = film_rng(spec.seed, 0)
    n = spec.n_images
    numbers = rng.choice(np.arange(1000, 1000 + max(32_000, 2 * n)), n, replace=False)
    positives = rng.permutation(n)[: min(max(1, round(0.28 * n)), n - 1)]
    rank = {int(index): r for r, index in enumerate(positives)}
    return [_Film(int(numbers[i]), i in rank, rank.get(i, 1) % 3 == 0) for i in range(n)]


def _read_rows(path: Path, source: str) -> tuple[list[_Patient], list[dict[str, Any]], int]:
    """Rows grouped by patient (first-seen order), a reject per row naming no patient, the row count."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: RSNA label file not found")
    patients: dict[str, _Patient] = {}
    rejects: list[dict[str, Any]] = []
    n_rows = 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if tuple(header) != HEADER:
            raise ValueError(f"{path}: header {header} is not {list(HEADER)}")
        for fields in filter(None, reader):  # blank lines hold no row
            n_rows += 1
            line = reader.line_num
            patient_id = fields[0].strip()
            if not patient_id:
                rejects.append({"source": source, "line": line, "reason": "missing_patient_id", "detail": str(fields)})
                continue
            patient = patients.get(patient_id)
            if patient is None:
                patient = patients[patient_id] = _Patient(patient_id, line)
                if not PATIENT_ID.match(patient_id):
                    patient.problem = (line, "invalid_patient_id", repr(patient_id))
            if patient.problem is None:
                patient.problem = _add_row(patient, fields, line)
    return list(patients.values()), rejects, n_rows


def _add_row(patient: _Patient, fields: Sequence[str], line: int) -> tuple[int, str, str] | None:
    """Add one row's target and box to ``patient``; the (line, reason, detail) if the row is bad."""
    if len(fields) != len(HEADER):
        return line, "malformed_row", f"{len(fields)} fields"
    target, numbers = fields[5].strip(), [v.strip() for v in fields[1:5]]
    if target not in ("0", "1"):
        return line, "malformed_number", f"Target {target!r}"
    if target == "0":
        if any(numbers):
            return line, "negative_with_box", ",".join(numbers)
        patient.targets.append(0)
        return None
    if not all(numbers):
        return line, "positive_without_box", ",".join(numbers)
    try:
        x, y, width, height = (float(v) for v in numbers)
    except ValueError:
        return line, "malformed_number", ",".join(numbers)
    if not all(math.isfinite(v) for v in (x, y, width, height)) or min(x, y) < 0 or min(width, height) <= 0:
        return line, "malformed_number", f"box {','.join(numbers)} is not x, y >= 0 and width, height > 0"
    patient.targets.append(1)
    patient.boxes.append([x, y, x + width, y + height])
    return None


def _conflict(patient: _Patient) -> tuple[int, str, str] | None:
    if len(set(patient.targets)) > 1:
        return patient.line, "conflicting_targets", f"Targets {sorted(set(patient.targets))} in its rows"
    return None


def _boxes(lesion: Lesion, twice: bool) -> list[tuple[int, int, int, int]]:
    """The lesion's box ``(x0, y0, x1, y1)``, or the boxes of its upper and lower half when ``twice``."""
    y0, y1 = lesion.box[1], lesion.box[3]
    cut = (y0 + y1) // 2
    if not twice or cut <= y0:
        return [lesion.box]
    return [_mask_box(lesion.mask[:cut], 0), _mask_box(lesion.mask[cut:], cut)]


def _mask_box(mask: np.ndarray, top: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (exclusive ends) of a non-empty mask whose first row is image row ``top``."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), top + int(ys[0]), int(xs[-1]) + 1, top + int(ys[-1]) + 1


def _box_row(patient: str, box: tuple[int, int, int, int]) -> tuple[str, ...]:
    """A positive label row: ``patientId,x,y,width,height,1`` with RSNA's float formatting."""
    x0, y0, x1, y1 = box
    return (patient, *(f"{float(v):.1f}" for v in (x0, y0, x1 - x0, y1 - y0)), "1")
