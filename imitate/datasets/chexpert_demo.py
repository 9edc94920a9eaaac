"""A synthetic CheXpert tree in the real format: ``train.csv``, ``valid.csv`` and JPEG films.

``<root>/<directory>/{train,valid}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg``, with label rows
whose ``Path`` is relative to the parent of ``<directory>``. Exactly ``spec.n_images`` images: about 12 %
in ``valid.csv`` (patients of their own, one study each, values 0.0/1.0 only, as the real file), the
rest in ``train.csv`` (1-3 studies per patient, about 20 % of studies with a lateral, 1.0 / 0.0 / -1.0 /
blank values). Labels are read off what is drawn: a drawn finding is 1.0 (-1.0 when drawn faintly as
uncertain), an absent drawable one blank or sometimes 0.0, No Finding 1.0 for a film with nothing but
devices, Lung Opacity 1.0 with consolidation, edema or atelectasis. About 40 % of studies show a single
competition finding, reported alone (no Lung Opacity), in turn across the five classes, so that a 5x200
set with ``per_class`` up to about ``n_images / 25`` can be drawn. Sex, Age and AP/PA are per row as in
the real files (AP/PA blank for laterals). The plan comes from ``film_rng(seed, 0)`` and image ``i``
is drawn from ``film_rng(seed, 1, i)``, so the bytes do not depend on the drawing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from imitate.datasets.base import DemoSpec, write_csv
from imitate.datasets.chexpert_csv import COLUMNS, COMPETITION_LABELS, OBSERVATIONS, TRAIN_CSV, VALID_CSV
from imitate.demo.anatomy import DRAWN_LABELS
from imitate.demo.film import draw_film, film_rng, random_states, to_uint8

JPEG_QUALITY = 95
VALID_SHARE = 0.12
SINGLE_FINDING_SHARE = 0.4
LATERAL_RATE = 0.2
SECOND_FRONTAL_RATE = 0.05
NEGATION_RATE = 0.25  # an absent drawable finding stated as 0.0 rather than left blank
_OPACITIES = frozenset({"Consolidation", "Edema", "Atelectasis"})
_IMPRESSIONS = {
    "Atelectasis": "bibasilar atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "focal consolidation",
    "Edema": "pulmonary edema",
    "Pleural Effusion": "pleural effusion",
    "Pneumothorax": "pneumothorax",
    "Support Devices": "support devices in place",
}


@dataclass(frozen=True)
class _Study:
    split: str  # "train" / "valid"
    patient: int
    number: int
    sex: str
    age: int
    states: dict[str, bool]  # drawn label -> certain?
    values: dict[str, str]  # observation -> CSV value
    views: tuple[str, ...]  # "AP" / "PA" / "LATERAL"


@dataclass(frozen=True)
class _Image:
    study: _Study
    view_number: int
    view: str

    def csv_path(self, top: str) -> str:
        kind = "lateral" if self.view == "LATERAL" else "frontal"
        s = self.study
        return f"{top}/{s.split}/patient{s.patient:05d}/study{s.number}/view{self.view_number}_{kind}.jpg"

    def row(self, top: str) -> list[str | int]:
        s, frontal = self.study, self.view != "LATERAL"
        view = ("Frontal", self.view) if frontal else ("Lateral", "")
        return [self.csv_path(top), s.sex, s.age, *view, *(s.values[o] for o in OBSERVATIONS)]


def write_chexpert_demo(root: Path, directory: str, spec: DemoSpec, *, reports: str | None = None) -> None:
    """Write the demo under ``root``; with ``reports`` also a ``Path,Report Impression`` CSV there."""
    if spec.n_images < 2:
        raise ValueError(f"the CheXpert demo needs at least 2 images (train and valid), got {spec.n_images}")
    n_valid = max(1, round(VALID_SHARE * spec.n_images))
    plan = film_rng(spec.seed, 0)
    train = _images(plan, spec.n_images - n_valid, first_patient=1, split="train")
    valid = _images(plan, n_valid, first_patient=train[-1].study.patient + 1, split="valid")
    base = Path(root) / PurePosixPath(directory).parent
    top = PurePosixPath(directory).name
    for index, image in enumerate([*train, *valid]):
        film = draw_film(image.study.states, image.view, spec.image_size, film_rng(spec.seed, 1, index))
        path = base / image.csv_path(top)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(film.pixels)).save(path, "JPEG", quality=JPEG_QUALITY)
    write_csv(base / top / TRAIN_CSV, COLUMNS, (image.row(top) for image in train))
    write_csv(base / top / VALID_CSV, COLUMNS, (image.row(top) for image in valid))
    if reports:
        rows = ((image.csv_path(top), _impression(image.study.states)) for image in [*train, *valid])
        write_csv(Path(root) / reports, ("Path", "Report Impression"), rows)


def _images(rng: np.random.Generator, target: int, *, first_patient: int, split: str) -> list[_Image]:
    """Patients and their studies until ``target`` images; the last study may lose trailing views."""
    images: list[_Image] = []
    patient, singles = first_patient, 0
    while len(images) < target:
        sex, age = ("Female", "Male")[int(rng.integers(2))], int(rng.integers(20, 90))
        n_studies = 1 if split == "valid" else int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
        for number in range(1, n_studies + 1):
            single = rng.random() < SINGLE_FINDING_SHARE
            if single:
                states = {COMPETITION_LABELS[singles % len(COMPETITION_LABELS)]: True}
                singles += 1
            else:
                states = random_states(rng)
            if split == "valid":  # the valid labels are a consensus: nothing is uncertain
                states = dict.fromkeys(states, True)
            study = _Study(split, patient, number, sex, age + number - 1, states,
                           _values(states, single, split == "valid", rng), _views(rng))
            images += [_Image(study, i, view) for i, view in enumerate(study.views, 1)]
        patient += 1
    return images[:target]


def _views(rng: np.random.Generator) -> tuple[str, ...]:
    frontal = "AP" if rng.random() < 0.7 else "PA"
    views = [frontal]
    if rng.random() < SECOND_FRONTAL_RATE:
        views.append(frontal)
    if rng.random() < LATERAL_RATE:
        views.append("LATERAL")
    return tuple(views)


def _values(states: dict[str, bool], single: bool, valid: bool, rng: np.random.Generator) -> dict[str, str]:
    """The study's observation values, read off the drawn ``states``."""
    values = dict.fromkeys(OBSERVATIONS, "")
    for label in DRAWN_LABELS:
        if label in states:
            values[label] = "1.0" if states[label] else "-1.0"
        elif rng.random() < NEGATION_RATE:
            values[label] = "0.0"
    findings = set(states) - {"Support Devices"}
    if not findings:
        values["No Finding"] = "1.0"
    if findings & _OPACITIES and not single:
        values["Lung Opacity"] = "1.0"
    if valid:
        values = {o: v or "0.0" for o, v in values.items()}
    return values


def _impression(states: dict[str, bool]) -> str:
    """A one-line impression naming what is drawn (uncertain findings hedged)."""
    if not set(states) - {"Support Devices"}:
        return "No acute cardiopulmonary process."
    sentences = [
        (_IMPRESSIONS[label] if certain else f"possible {_IMPRESSIONS[label]}").capitalize() + "."
        for label, certain in sorted(states.items())
    ]
    return " ".join(sentences)
