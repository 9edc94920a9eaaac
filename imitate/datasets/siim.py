"""SIIM-ACR Pneumothorax (stage 1 train): pneumothorax yes/no per image, with its run-length mask.

Raw files: ``train-rle.csv`` (header ``ImageId, EncodedPixels``, the second name with a leading space;
values are stripped, with or without one), one row per mask component and ``-1`` for an image without
pneumothorax; images ``dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm``,
found by indexing the tree once.

One record per ImageId (the unit of ``n_input``; rows that name no image count one each): positive
when its rows are masks, negative when its only rows are ``-1``. ``mask_rle`` keeps every component of
a positive image in file order joined by ``|``, and is ``-1`` for a negative one: SIIM's encoding is
the one every record uses (:mod:`imitate.datasets.masks`). The ImageId is a DICOM UID, so the key is
the ImageId with its dots replaced by ``_`` (keys may not hold dots); the reader checks the keys stay
unique.
``patient_id`` is the file's DICOM PatientID (several images share one), or the ImageId when the file
is not in the tree (``prepare_dataset`` then rejects the record as ``image_missing``). The split is
drawn by patient, 70/15/15: MGCA and GLoRIA split CSV rows, so one image's rows could straddle splits.

Reject reasons: ``missing_image_id``, ``malformed_row`` (not two fields), ``malformed_rle``,
``conflicting_rows`` (both ``-1`` and a mask), ``duplicate_key``, ``image_ambiguous`` (two files with
that name), ``dicom_unreadable``, ``dicom_no_patient_id``.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

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
from imitate.datasets.masks import MASK_SEPARATOR, NO_MASK, encode_rle, rle_runs
from imitate.demo.film import draw_film, film_rng, random_states, to_uint8

LABELS: tuple[str, ...] = ("Pneumothorax",)
HEADER: tuple[str, ...] = ("ImageId", " EncodedPixels")
_FIELD_OF_VIEW_MM = 430.0  # the longer side of a drawn film


def image_key(image_id: str) -> str:
    """The record key of an ImageId: its dots (a WebDataset key may hold none) replaced by ``_``."""
    return image_id.replace(".", "_")


@dataclass
class _Image:
    image_id: str
    line: int  # of its first row
    values: list[str]
    problem: tuple[int, str, str] | None = None  # line, reason, detail of its first bad row


class Adapter(DatasetAdapter):
    """SIIM-ACR Pneumothorax from ``train-rle.csv`` and the DICOM tree."""

    kind = "binary"
    defaults: Mapping[str, Any] = {"labels": "train-rle.csv", "images": "dicom-images-train"}
    split_draw: Mapping[str, float] = {"validate": 0.15, "test": 0.15}

    def label_names(self) -> tuple[str, ...]:
        return LABELS

    def raw_files(self) -> dict[str, str]:
        return {"labels": self.options["labels"]}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """``ImageId`` and ``EncodedPixels``, stripped (the real file writes the second with a leading space)."""
        return {"labels": tuple(name.strip() for name in HEADER)}

    def image_dirs(self) -> tuple[str, ...]:
        return (self.options["images"],)

    def read(self) -> Parsed:
        images, rejects = _read_rows(raw_path(self, "labels"), self.options["labels"])
        n_input = len(images) + len(rejects)
        files = _index_tree(self.root, self.options["images"])
        records: list[dict[str, Any]] = []
        owner: dict[str, str] = {}
        for image in images:
            record, problem = self._record(image, files, owner)
            if problem is None:
                records.append(record)
                owner[record["key"]] = image.image_id
            else:
                line, reason, detail = problem
                rejects.append({"source": self.options["labels"], "line": line, "key": image_key(image.image_id),
                                "reason": reason, "detail": detail})
        return Parsed(records_table(records), rejects_table(rejects), n_input)

    def _record(
        self, image: _Image, files: Mapping[str, list[str]], owner: Mapping[str, str]
    ) -> tuple[dict[str, Any], tuple[int, str, str] | None]:
        """The record of one image, or the (line, reason, detail) it is rejected for."""
        if image.problem is not None:
            return {}, image.problem
        negative = [v == NO_MASK for v in image.values]
        if any(negative) and not all(negative):
            return {}, (image.line, "conflicting_rows", f"{sum(negative)} of {len(negative)} rows are -1")
        key = image_key(image.image_id)
        if key in owner:
            return {}, (image.line, "duplicate_key", f"{owner[key]} has the same key")
        found = files.get(image.image_id, [])
        if len(found) > 1:
            return {}, (image.line, "image_ambiguous", ", ".join(found))
        path = found[0] if found else f"{self.options['images']}/{image.image_id}.dcm"
        patient = image.image_id
        if found:
            try:
                header = pydicom.dcmread(self.root / path, stop_before_pixels=True, specific_tags=["PatientID"])
            except (InvalidDicomError, OSError, EOFError, ValueError) as error:
                return {}, (image.line, "dicom_unreadable", f"{path}: {error}")
            patient = str(header.get("PatientID", "")).strip()
            if not patient:
                return {}, (image.line, "dicom_no_patient_id", path)
        positive = not all(negative)
        record = {"key": key, "patient_id": patient, "path": path, "split": None, "labels": [float(positive)],
                  "mask_rle": MASK_SEPARATOR.join(image.values) if positive else NO_MASK}
        return record, None

    def write_demo(self, spec: DemoSpec) -> None:
        """Write ``train-rle.csv`` and the DICOM tree for ``spec.n_images`` drawn frontal films.

        A quarter of the films (at least one, if there are two) show a pneumothorax whose drawn mask is
        the RLE; every third of them is written as two rows, its upper and lower part, as annotators
        sometimes split one. Patients have one to three images (the PatientID in the header ties them).
        """
        if spec.n_images < 1 or spec.image_size < 32:
            raise ValueError(f"demo needs n_images >= 1 and image_size >= 32, got {spec}")
        rows = [row for index, film in enumerate(_plan(spec)) for row in self._write_film(spec, index, film)]
        write_csv(raw_path(self, "labels"), HEADER, rows)

    def _write_film(self, spec: DemoSpec, index: int, plan: _Film) -> list[tuple[str, str]]:
        """Draw and write film ``index``; its label rows."""
        rng = film_rng(spec.seed, 1, index)
        states = {k: v for k, v in random_states(rng).items() if k != "Pneumothorax"}
        if plan.positive:
            states["Pneumothorax"] = True
        view = "PA" if rng.random() < 0.6 else "AP"
        film = draw_film(states, view, spec.image_size, rng)
        pixels = to_uint8(film.pixels)
        study, series, image_id = kaggle_uids(plan.number, rng)
        header = FilmHeader(plan.patient, plan.sex, plan.age, view, study, series, image_id,
                            _FIELD_OF_VIEW_MM / max(pixels.shape))
        write_jpeg_dicom(self.root / self.options["images"] / study / series / f"{image_id}.dcm", pixels, header)
        masks = [lesion.mask for lesion in film.lesions if lesion.label == "Pneumothorax"]
        components = _split_rows(masks[0]) if masks and plan.split else masks
        return [(image_id, encode_rle(mask)) for mask in components] or [(image_id, NO_MASK)]


@dataclass(frozen=True)
class _Film:
    patient: str  # the DICOM PatientID
    sex: str
    age: int
    number: int  # in its UIDs
    positive: bool
    split: bool  # mask written as two components


def _plan(spec: DemoSpec) -> list[_Film]:
    """Patients of one to three consecutive films; positives (25 %) and which of them are split in two."""
    rng = film_rng(spec.seed, 0)
    n = spec.n_images
    numbers = rng.choice(np.arange(1000, 1000 + max(32_000, 2 * n)), n, replace=False)
    positives = rng.permutation(n)[: min(max(1, round(0.25 * n)), n - 1)]
    rank = {int(index): r for r, index in enumerate(positives)}
    films: list[_Film] = []
    while len(films) < n:
        patient = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        sex, age = ("F" if rng.random() < 0.45 else "M"), int(rng.integers(18, 90))
        for i in range(len(films), min(n, len(films) + int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])))):
            films.append(_Film(patient, sex, age, int(numbers[i]), i in rank, rank.get(i, 1) % 3 == 0))
    return films


def _read_rows(path: Path, source: str) -> tuple[list[_Image], list[dict[str, Any]]]:
    """The label rows grouped by ImageId (first-seen order), and a reject per row naming no image."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: SIIM label file not found")
    images: dict[str, _Image] = {}
    rejects: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if header != [name.strip() for name in HEADER]:
            raise ValueError(f"{path}: header {header} is not {list(HEADER)}")
        for fields in filter(None, reader):  # blank lines hold no row
            line = reader.line_num
            image_id = fields[0].strip()
            if not image_id:
                rejects.append({"source": source, "line": line, "reason": "missing_image_id", "detail": str(fields)})
                continue
            image = images.setdefault(image_id, _Image(image_id, line, []))
            if image.problem is not None:
                continue
            if len(fields) != 2:
                image.problem = (line, "malformed_row", f"{len(fields)} fields")
                continue
            value = fields[1].strip()
            if value != NO_MASK:
                try:
                    rle_runs(value)
                except ValueError as error:
                    image.problem = (line, "malformed_rle", str(error))
                    continue
            image.values.append(value)
    return list(images.values()), rejects


def _index_tree(root: Path, images: str) -> dict[str, list[str]]:
    """Every ``.dcm`` under ``root/images`` by file stem (the ImageId), as paths relative to ``root``."""
    files: dict[str, list[str]] = {}
    for path in sorted((root / images).rglob("*.dcm")):
        files.setdefault(path.stem, []).append(path.relative_to(root).as_posix())
    return files


def _split_rows(mask: np.ndarray) -> list[np.ndarray]:
    """``mask`` cut into its upper and lower part at the middle of its rows (one part if it spans one row)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cut = (rows[0] + rows[-1] + 1) // 2
    if cut <= rows[0]:
        return [mask]
    upper, lower = mask.copy(), mask.copy()
    upper[cut:], lower[:cut] = False, False
    return [upper, lower]
