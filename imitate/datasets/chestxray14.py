"""NIH ChestX-ray14: the 14 finding labels of every image, with the official train_val / test lists.

Raw files: ``Data_Entry_2017_v2020.csv`` (option ``labels``; the 2017 original ``Data_Entry_2017.csv``
ends each row with an extra comma, and both are read), whose header has 9 names but whose rows have 11
fields, since two names hold a comma (``OriginalImage[Width,Height]``, ``OriginalImagePixelSpacing[x,y]``);
``train_val_list.txt`` and ``test_list.txt`` (one image name per line); PNGs in
``images_001/images/`` ... ``images_012/images/`` (option ``images``, a glob of folders, indexed once).

One record per Data_Entry row (the unit of ``n_input``); key = Image Index without ``.png``, patient =
Patient ID. ``Finding Labels`` is ``|``-joined names or ``No Finding`` (all zeros). Images of the test
list get split ``test``; train_val images get none and are divided by patient, 10 % validate (paper
Table II: 77,872 / 8,652 / 25,596). An image with no file gets the path of the first images folder
(``prepare_dataset`` rejects it as ``image_missing``). Reject reasons: ``malformed_row`` (not 11
fields, or 12 with an empty last one), ``invalid_image_index`` (not ``<name>.png`` with a dot-free name),
``duplicate_image``, ``missing_patient_id``, ``missing_labels``, ``unknown_label``,
``no_finding_with_findings``, ``not_in_split_lists``, ``in_both_split_lists``, ``image_ambiguous``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, raw_path, records_table, rejects_table
from imitate.demo.film import draw_film, film_rng, random_states, to_uint8

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
NO_FINDING = "No Finding"
HEADER: tuple[str, ...] = (
    "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender", "View Position",
    "OriginalImage[Width,Height]", "OriginalImagePixelSpacing[x,y]",
)
N_FIELDS = 11
# What the drawing shows, by NIH name: Pneumonia and Infiltration are read off a drawn consolidation.
DRAWN_AS: Mapping[str, str] = {
    "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion",
    "Infiltration": "Consolidation", "Pneumonia": "Consolidation", "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation", "Edema": "Edema",
}
UNDRAWN_RATE = 0.03  # how often each label the drawing cannot show is set, at random, in the demo
_FOLDERS = 12


class Adapter(DatasetAdapter):
    """NIH ChestX-ray14 from Data_Entry, the two official list files and the PNG folders."""

    kind = "multilabel"
    defaults: Mapping[str, Any] = {
        "labels": "Data_Entry_2017_v2020.csv",
        "train_val_list": "train_val_list.txt",
        "test_list": "test_list.txt",
        "images": "images_*/images",
    }
    split_draw: Mapping[str, float] = {"validate": 0.1}

    def label_names(self) -> tuple[str, ...]:
        return LABELS

    def raw_files(self) -> dict[str, str]:
        return {role: self.options[role] for role in ("labels", "train_val_list", "test_list")}

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """Data_Entry's first seven names (the reader checks them, in order); the lists have no header.

        The last two names hold a comma, so a CSV reader splits them: they are left out.
        """
        return {"labels": HEADER[:7]}

    def image_dirs(self) -> tuple[str, ...]:
        """The real set's twelve folders ``images_001/images`` ... ``images_012/images``.

        Option ``images`` with its ``*`` numbered 001 to 012, so that a tarball left unpacked shows (the
        pattern itself if it has no ``*``). A demo of fewer than 12 images fills fewer folders.
        """
        pattern = self.options["images"]
        return tuple(dict.fromkeys(_folder(pattern, number) for number in range(1, _FOLDERS + 1)))

    def read(self) -> Parsed:
        source = self.options["labels"]
        lists = _Lists(_read_list(raw_path(self, "train_val_list")), _read_list(raw_path(self, "test_list")))
        files = _index_images(self.root, self.options["images"])
        missing_folder = _folder(self.options["images"], 1)
        entries = _read_entries(raw_path(self, "labels"))
        records, rejects, seen = [], [], set()
        for line, fields in entries:
            name = fields[0].strip()
            record, problem = _record(fields, seen, lists)
            seen.add(name)
            if problem is None and len(files.get(name, [])) > 1:
                problem = ("image_ambiguous", ", ".join(files[name]))
            if problem is None:
                record["path"] = files[name][0] if name in files else f"{missing_folder}/{name}"
                records.append(record)
            else:
                reason, detail = problem
                rejects.append({"source": source, "line": line, "key": name.removesuffix(".png") or None,
                                "reason": reason, "detail": detail})
        unlisted = len((lists.train_val | lists.test) - seen)
        if unlisted:
            log.warning("%s: %d listed image(s) have no %s row", self.root, unlisted, source)
        return Parsed(records_table(records), rejects_table(rejects), len(entries))

    def write_demo(self, spec: DemoSpec) -> None:
        """Write Data_Entry (all 11 fields), the two list files and 8-bit PNGs for ``spec.n_images`` films.

        Patients have one to five follow-up films; about a fifth of the patients form the test list.
        Labels follow what is drawn (Effusion = a drawn pleural effusion; Pneumonia and Infiltration = a
        drawn consolidation); Mass, Nodule, Emphysema, Fibrosis, Pleural_Thickening and Hernia cannot be
        drawn and are set at random, each on about 3 % of the images.
        """
        if spec.n_images < 1 or spec.image_size < 32:
            raise ValueError(f"demo needs n_images >= 1 and image_size >= 32, got {spec}")
        rows, train_val, test = [], [], []
        for index, (patient, follow_up, age, sex, in_test) in enumerate(_plan(spec)):
            rng = film_rng(spec.seed, 1, index)
            view = "AP" if rng.random() < 0.4 else "PA"
            states = {label: True for label in random_states(rng)}
            film = draw_film(states, view, spec.image_size, rng)
            shown = {lesion.label for lesion in film.lesions}
            undrawn = rng.random(len(LABELS)) < UNDRAWN_RATE
            labels = [name for name, extra in zip(LABELS, undrawn, strict=True)
                      if DRAWN_AS.get(name) in shown or (name not in DRAWN_AS and extra)]
            name = f"{patient:08d}_{follow_up:03d}.png"
            path = self.root / _folder(self.options["images"], index * _FOLDERS // spec.n_images + 1) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = to_uint8(film.pixels)
            Image.fromarray(pixels).save(path, format="PNG")
            height, width = pixels.shape
            spacing = f"{430.0 / max(height, width):.3f}"  # mm: a 43 cm film
            rows.append((name, "|".join(labels) or NO_FINDING, follow_up, patient, age, sex, view, width, height,
                         spacing, spacing))
            (test if in_test else train_val).append(name)
        path = raw_path(self, "labels")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as out:
            out.write(",".join(HEADER) + "\n")
            csv.writer(out, lineterminator="\n").writerows(rows)
        for role, names in (("train_val_list", train_val), ("test_list", test)):
            raw_path(self, role).write_text("".join(f"{n}\n" for n in sorted(names)), encoding="utf-8")


def parse_findings(text: str) -> tuple[list[float] | None, tuple[str, str] | None]:
    """The 14 targets of a ``Finding Labels`` value, or the (reason, detail) it is rejected for."""
    names = [name.strip() for name in text.split("|")]
    if not any(names):
        return None, ("missing_labels", repr(text))
    if NO_FINDING in names:
        return (None, ("no_finding_with_findings", text)) if len(names) > 1 else ([0.0] * len(LABELS), None)
    targets = [0.0] * len(LABELS)
    for name in names:
        if name not in _LABEL_INDEX:
            return None, ("unknown_label", name)
        targets[_LABEL_INDEX[name]] = 1.0
    return targets, None


@dataclass(frozen=True)
class _Lists:
    """The image names of the two official split lists."""

    train_val: set[str]
    test: set[str]


def _record(fields: list[str], seen: set[str], lists: _Lists) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """One Data_Entry row as a record (without its path), or the (reason, detail) it is rejected for."""
    if not (len(fields) == N_FIELDS or (len(fields) == N_FIELDS + 1 and not fields[-1].strip())):
        return {}, ("malformed_row", f"{len(fields)} fields, expected {N_FIELDS}")
    name, patient = fields[0].strip(), fields[3].strip()
    key = name.removesuffix(".png")
    if not name.endswith(".png") or not key or "." in key or "/" in key:
        return {}, ("invalid_image_index", repr(name))
    if name in seen:
        return {}, ("duplicate_image", name)
    if not patient:
        return {}, ("missing_patient_id", name)
    labels, problem = parse_findings(fields[1])
    if problem is not None:
        return {}, problem
    if name in lists.train_val and name in lists.test:
        return {}, ("in_both_split_lists", name)
    if name not in lists.train_val and name not in lists.test:
        return {}, ("not_in_split_lists", name)
    return {"key": key, "patient_id": patient, "split": "test" if name in lists.test else None, "labels": labels}, None


def _read_entries(path: Path) -> list[tuple[int, list[str]]]:
    """The (line, fields) of every Data_Entry row, after checking the header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ChestX-ray14 Data_Entry file not found")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if header[:7] != list(HEADER[:7]):
            raise ValueError(f"{path}: header starts {header[:7]}, expected {list(HEADER[:7])}")
        return [(reader.line_num, fields) for fields in reader if fields]  # blank lines hold no row


def _read_list(path: Path) -> set[str]:
    """The image names of a split list file (blank lines ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ChestX-ray14 split list not found")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _folder(pattern: str, number: int) -> str:
    """Folder ``number`` (1-based) of the glob ``pattern``: ``images_*/images``, 1 -> ``images_001/images``."""
    return pattern.replace("*", f"{number:03d}", 1)


def _index_images(root: Path, folders: str) -> dict[str, list[str]]:
    """Every PNG in the folders matching ``folders`` under ``root``, by file name, relative to ``root``."""
    files: dict[str, list[str]] = {}
    for path in sorted(root.glob(f"{folders}/*.png")):
        files.setdefault(path.name, []).append(path.relative_to(root).as_posix())
    return files


def _plan(spec: DemoSpec) -> list[tuple[int, int, int, str, bool]]:
    """Per image: patient number, follow-up number, age, sex and whether it is on the test list."""
    rng = film_rng(spec.seed, 0)
    films: list[tuple[int, int, int, str, bool]] = []
    patient = 0
    while len(films) < spec.n_images:
        patient += int(rng.integers(1, 4))
        count = min(int(rng.choice([1, 2, 3, 4, 5], p=[0.5, 0.2, 0.15, 0.1, 0.05])), spec.n_images - len(films))
        age, sex, in_test = int(rng.integers(18, 85)), ("F" if rng.random() < 0.44 else "M"), rng.random() < 0.2
        films += [(patient, k, age + k // 2, sex, bool(in_test)) for k in range(count)]
    return films
