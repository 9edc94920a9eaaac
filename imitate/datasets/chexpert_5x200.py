"""CheXpert 5x200: GLoRIA's five-class evaluation set, rebuilt from ``train.csv`` with a seed.

Class ``c`` (one of the five competition labels) may take a frontal image whose ``c`` is 1.0 and whose
other twelve observations, No Finding aside, are 0.0 or blank (so an uncertain -1.0 anywhere
excludes it). Candidates are sorted by ``Path`` and ``per_class`` are drawn per class without
replacement with ``five_by_200_seed``: GLoRIA drew unseeded, MGCA with pandas' ``random_state=0``,
neither reproducible here. :func:`select_five_by_200` is also what the CheXpert adapter holds out of
training, so the two never disagree. Every other ``train.csv`` row is a reject with its reason.

The reports GLoRIA used are private; option ``reports`` (a CSV under ``root`` with ``Path`` and
``Report Impression``, like GLoRIA's ``master_updated.csv``) fills ``text`` for whoever has them. Its
paths are matched on patient/study/view, so a v1.0 report file serves v1.0-small too; a drawn image
without a report keeps a null ``text``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, records_table, rejects_table
from imitate.datasets.chexpert_csv import (
    COLUMNS,
    COMPETITION_LABELS,
    OBSERVATIONS,
    TRAIN_CSV,
    LabelRow,
    csv_source,
    image_key,
    read_label_file,
)
from imitate.datasets.chexpert_demo import write_chexpert_demo

REPORT_COLUMNS: tuple[str, str] = ("Path", "Report Impression")
_CLASS_COLUMNS = [OBSERVATIONS.index(c) for c in COMPETITION_LABELS]
_STATED_COLUMNS = [i for i, o in enumerate(OBSERVATIONS) if o != "No Finding"]


@dataclass(frozen=True)
class FiveBy200:
    """The drawn images (key -> class) and, for every other frontal row, why it was not drawn."""

    selected: dict[str, str]
    left_out: dict[str, str]  # key -> reason


def eligibility(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frontal row of raw values (N, 14; NaN blank): its 5x200 class index, and why it has none ("").

    Reasons: ``no_class_positive``, ``several_classes_positive`` and ``other_observation_not_negative``
    (a 1.0 or -1.0 in one of the other twelve observations, No Finding aside).
    """
    positive = values[:, _CLASS_COLUMNS] == 1.0
    n_positive = positive.sum(axis=1)
    n_stated = np.isin(values[:, _STATED_COLUMNS], (1.0, -1.0)).sum(axis=1)  # the class itself included
    reasons = np.select(
        [n_positive == 0, n_positive > 1, n_stated > 1],
        ["no_class_positive", "several_classes_positive", "other_observation_not_negative"],
        default="",
    )
    return positive.argmax(axis=1), reasons


def select_five_by_200(rows: Sequence[LabelRow], per_class: int, seed: int, source: str) -> FiveBy200:
    """Draw ``per_class`` frontal images per class from ``rows`` (train.csv); laterals are ignored."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    frontal = [row for row in rows if row.frontal]
    values = np.array([row.values for row in frontal], dtype=np.float32).reshape(-1, len(OBSERVATIONS))
    classes, reasons = eligibility(values)
    left_out: dict[str, str] = {}
    candidates: dict[int, list[LabelRow]] = {i: [] for i in range(len(COMPETITION_LABELS))}
    for row, label, reason in zip(frontal, classes.tolist(), reasons.tolist(), strict=True):
        if reason:
            left_out[row.key] = reason
        else:
            candidates[label].append(row)
    selected: dict[str, str] = {}
    for index, label in enumerate(COMPETITION_LABELS):
        pool = sorted(candidates[index], key=lambda r: r.csv_path)
        if len(pool) < per_class:
            raise ValueError(
                f"{source}: only {len(pool)} frontal images qualify for 5x200 class {label!r}, "
                f"fewer than per_class={per_class}"
            )
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        chosen = set(rng.choice(len(pool), size=per_class, replace=False).tolist())
        for i, row in enumerate(pool):
            if i in chosen:
                selected[row.key] = label
            else:
                left_out[row.key] = "not_selected"
    return FiveBy200(selected, left_out)


def read_reports(file: Path) -> dict[str, str]:
    """Image key -> ``Report Impression`` from a GLoRIA-style report CSV (keyed as train.csv's ``Path``)."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: CheXpert report file not found (option 'reports')")
    out: dict[str, str] = {}
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REPORT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{file}: report file lacks column(s) {', '.join(missing)}")
        for row in reader:
            path, text = row["Path"], row["Report Impression"]
            identity = image_key(path)
            if identity is None:
                raise ValueError(f"{file}: line {reader.line_num}: Path {path!r} is not .../patientN/studyN/<view>.jpg")
            if out.setdefault(identity[0], text) != text:
                raise ValueError(f"{file}: line {reader.line_num}: {path} has two different reports")
    return out


def _stated(row: LabelRow) -> str:
    """A reject's detail: the view and the observations stated positive or uncertain."""
    stated = [f"{o}={v}" for o, v in zip(OBSERVATIONS, row.values, strict=True) if v in (1.0, -1.0)]
    return f"{'frontal' if row.frontal else 'lateral'}; {', '.join(stated) or 'no observation stated'}"


class Adapter(DatasetAdapter):
    """CheXpert 5x200 (``<directory>/train.csv`` only): five one-hot classes, every image in ``test``."""

    kind = "multiclass"
    defaults: Mapping[str, Any] = {
        "directory": "CheXpert-v1.0-small",
        "per_class": 200,
        "five_by_200_seed": 0,
        "reports": None,
    }
    split_draw: Mapping[str, float] = {}

    def label_names(self) -> tuple[str, ...]:
        """The five competition labels."""
        return COMPETITION_LABELS

    def raw_files(self) -> dict[str, str]:
        """``train.csv``, and the report CSV when option ``reports`` is set."""
        files = {"train": csv_source(self.options["directory"], TRAIN_CSV)}
        if self.options["reports"]:
            files["reports"] = str(self.options["reports"])
        return files

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """``train.csv`` holds every CheXpert column; the report CSV ``Path`` and ``Report Impression``."""
        headers = {"train": COLUMNS}
        if self.options["reports"]:
            headers["reports"] = REPORT_COLUMNS
        return headers

    def image_dirs(self) -> tuple[str, ...]:
        """``<directory>/train``: the images are drawn from ``train.csv`` only."""
        return (csv_source(self.options["directory"], "train"),)

    def read(self) -> Parsed:
        """Records of the drawn images; every other train.csv row is a reject."""
        train = read_label_file(self.root, self.options["directory"], TRAIN_CSV)
        draw = select_five_by_200(
            train.rows, int(self.options["per_class"]), int(self.options["five_by_200_seed"]), train.source
        )
        reports = read_reports(self.root / self.options["reports"]) if self.options["reports"] else {}
        records: list[dict[str, Any]] = []
        rejects = list(train.rejects)
        for row in train.rows:
            label = draw.selected.get(row.key)
            if label is not None:
                one_hot = [float(c == label) for c in COMPETITION_LABELS]
                records.append({"key": row.key, "patient_id": row.patient_id, "path": row.path, "split": "test",
                                "labels": one_hot, "text": reports.get(row.key)})
                continue
            reason = draw.left_out.get(row.key, "not_frontal")
            rejects.append({"source": train.source, "line": row.line, "key": row.key, "reason": reason,
                            "detail": _stated(row)})
        return Parsed(records_table(records), rejects_table(rejects), train.n_input)

    def write_demo(self, spec: DemoSpec) -> None:
        """A synthetic CheXpert tree (as the CheXpert adapter's), plus demo reports if ``reports`` is set."""
        write_chexpert_demo(self.root, self.options["directory"], spec, reports=self.options["reports"])
