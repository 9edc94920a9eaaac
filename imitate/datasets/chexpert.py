"""CheXpert (v1.0 or v1.0-small): multilabel classification on the competition labels.

Test is the official ``valid.csv``; ``train.csv`` rows get their split later, 5,000 validation images
drawn by patient (MGCA picked its 5,000 by row position but dropped them by index label, so its train
and validation sets overlap; a patient-level draw cannot). Frontal views only. Uncertain (-1.0) values
follow the MGCA/GLoRIA policy: U-Ones for Atelectasis, Edema and Pleural Effusion, U-Zeros for
Cardiomegaly and Consolidation; blank is 0. The CheXpert 5x200 images are held out of training with
the 5x200 adapter's own selection (same ``per_class`` and ``five_by_200_seed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from imitate.datasets.base import RECORD_SCHEMA, DatasetAdapter, DemoSpec, Parsed, rejects_table
from imitate.datasets.chexpert_5x200 import select_five_by_200
from imitate.datasets.chexpert_csv import (
    COLUMNS,
    COMPETITION_LABELS,
    OBSERVATIONS,
    TRAIN_CSV,
    VALID_CSV,
    LabelRow,
    csv_source,
    read_label_file,
)
from imitate.datasets.chexpert_demo import write_chexpert_demo


class Adapter(DatasetAdapter):
    """CheXpert ``<directory>/train.csv`` and ``valid.csv``; ``root`` is the folder holding ``<directory>``."""

    kind = "multilabel"
    defaults: Mapping[str, Any] = {
        "directory": "CheXpert-v1.0-small",
        "labels": COMPETITION_LABELS,
        "uncertain_ones": ("Atelectasis", "Edema", "Pleural Effusion"),
        "uncertain_zeros": ("Cardiomegaly", "Consolidation"),
        "exclude_5x200": True,
        "per_class": 200,
        "five_by_200_seed": 0,
    }
    split_draw: Mapping[str, float] = {"validate": 5000}

    def __init__(self, name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, root, options)
        self._check_policy()
        labels = self.label_names()
        ones = set(self.options["uncertain_ones"])
        self._columns = [OBSERVATIONS.index(label) for label in labels]
        self._uncertain = np.array([1.0 if label in ones else 0.0 for label in labels], dtype=np.float32)

    def _check_policy(self) -> None:
        labels = list(self.options["labels"])
        ones, zeros = set(self.options["uncertain_ones"]), set(self.options["uncertain_zeros"])
        problems = []
        unknown = sorted((set(labels) | ones | zeros) - set(OBSERVATIONS))
        if unknown:
            problems.append(f"unknown observation(s) {unknown}")
        if not labels or len(set(labels)) != len(labels):
            problems.append(f"'labels' must be a non-empty list without repeats, got {labels}")
        both = sorted(ones & zeros)
        if both:
            problems.append(f"{both} in both uncertain_ones and uncertain_zeros")
        unset = [label for label in labels if label not in ones | zeros]
        if unset:
            problems.append(f"{unset} in neither uncertain_ones nor uncertain_zeros")
        if problems:
            raise ValueError(f"dataset {self.name!r} (chexpert): {'; '.join(problems)}")

    def label_names(self) -> tuple[str, ...]:
        """Option ``labels`` (default: the five competition labels)."""
        return tuple(self.options["labels"])

    def raw_files(self) -> dict[str, str]:
        """``<directory>/train.csv`` and ``<directory>/valid.csv``."""
        directory = self.options["directory"]
        return {"train": csv_source(directory, TRAIN_CSV), "valid": csv_source(directory, VALID_CSV)}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """Both label files hold every column of :data:`COLUMNS`."""
        return {"train": COLUMNS, "valid": COLUMNS}

    def image_dirs(self) -> tuple[str, ...]:
        """``<directory>/train`` and ``<directory>/valid``, where the files' ``Path`` values point."""
        directory = self.options["directory"]
        return csv_source(directory, "train"), csv_source(directory, "valid")

    def targets(self, values: np.ndarray) -> np.ndarray:
        """Labels (N, L) float32 of raw rows (N, 14 observations; NaN = blank) under the uncertainty policy."""
        chosen = np.asarray(values, dtype=np.float32).reshape(-1, len(OBSERVATIONS))[:, self._columns]
        return np.where(chosen == -1.0, self._uncertain, np.nan_to_num(chosen, nan=0.0)).astype(np.float32)

    def read(self) -> Parsed:
        """Frontal records of both files; laterals, held-out 5x200 images and bad rows are rejects."""
        directory = self.options["directory"]
        train = read_label_file(self.root, directory, TRAIN_CSV)
        valid = read_label_file(self.root, directory, VALID_CSV)
        held_out: dict[str, str] = {}
        if self.options["exclude_5x200"]:
            per_class, seed = int(self.options["per_class"]), int(self.options["five_by_200_seed"])
            held_out = select_five_by_200(train.rows, per_class, seed, train.source).selected
        test_patients = {row.patient_id for row in valid.rows}
        kept: list[LabelRow] = []
        splits: list[str | None] = []
        rejects = [*train.rejects, *valid.rejects]
        for file, split in ((train, None), (valid, "test")):
            for row in file.rows:
                reason, detail = self._reject_reason(row, split, held_out, test_patients)
                if reason:
                    rejects.append({"source": file.source, "line": row.line, "key": row.key, "reason": reason,
                                    "detail": detail})
                else:
                    kept.append(row)
                    splits.append(split)
        labels = self.targets(np.array([row.values for row in kept], dtype=np.float32))
        return Parsed(_records(kept, splits, labels), rejects_table(rejects), train.n_input + valid.n_input)

    @staticmethod
    def _reject_reason(
        row: LabelRow, split: str | None, held_out: dict[str, str], test_patients: set[str]
    ) -> tuple[str, str]:
        if not row.frontal:
            return "not_frontal", "lateral view"
        if split is None and row.key in held_out:
            return "held_out_5x200", f"CheXpert 5x200 image of class {held_out[row.key]}"
        if split is None and row.patient_id in test_patients:
            return "patient_in_valid", f"{row.patient_id} also has images in {VALID_CSV}"
        return "", ""

    def write_demo(self, spec: DemoSpec) -> None:
        """A synthetic CheXpert tree: train.csv, valid.csv and JPEG images (see :mod:`chexpert_demo`)."""
        write_chexpert_demo(self.root, self.options["directory"], spec)


def _records(rows: Sequence[LabelRow], splits: Sequence[str | None], labels: np.ndarray) -> pa.Table:
    """The records table, built column-wise (the real train.csv has 190k frontal rows)."""
    n, width = labels.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    columns = {
        "key": [row.key for row in rows],
        "patient_id": [row.patient_id for row in rows],
        "path": [row.path for row in rows],
        "split": pa.array(splits, pa.string()),
        "labels": pa.ListArray.from_arrays(offsets, pa.array(labels.ravel(), pa.float32())),
    }
    absent = {name: pa.nulls(n, RECORD_SCHEMA.field(name).type) for name in RECORD_SCHEMA.names if name not in columns}
    return pa.table({**columns, **absent}, schema=RECORD_SCHEMA)
