"""COVIDx (COVID-Net label lists): normal / pneumonia / COVID-19, or COVID positive / negative.

Each list line is ``patient_id filename label source`` (``fields: 4``; old lists have no source,
``fields: 3``), separated by spaces. Patient ids may contain spaces (``COVID 1 COVID(1).png positive
sirm``), so lines are split from the right. Lists up to v5 and the A-files label normal / pneumonia /
COVID-19; v6 and the B-files label positive / negative (option ``binary``; on an A-file it means
COVID-19 versus the rest). The test list is the official test split; train rows are split 80/20 into
train and validate later, by patient (MGCA split rows, so one patient could be on both sides).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imitate.datasets.base import DatasetAdapter, DemoSpec, Parsed, records_table, rejects_table
from imitate.datasets.covidx_demo import write_covidx_demo

CLASSES: tuple[str, ...] = ("normal", "pneumonia", "COVID-19")
BINARY_CLASSES: tuple[str, ...] = ("negative", "positive")
_AS_BINARY = {"negative": "negative", "positive": "positive", "normal": "negative", "pneumonia": "negative",
              "COVID-19": "positive"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ListLine:
    """One well-formed list line."""

    source: str
    line: int
    patient_id: str
    filename: str
    label: str


class Adapter(DatasetAdapter):
    """COVIDx ``train_list`` / ``test_list`` with images in ``train_dir`` / ``test_dir`` under ``root``."""

    kind = "multiclass"
    defaults: Mapping[str, Any] = {
        "train_list": "train_COVIDx9A.txt",
        "test_list": "test_COVIDx9A.txt",
        "train_dir": "train",
        "test_dir": "test",
        "fields": 4,
        "binary": False,
    }
    split_draw: Mapping[str, float] = {"validate": 0.2}

    def __init__(self, name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, root, options)
        fields = self.options["fields"]
        if fields not in (3, 4):
            raise ValueError(f"dataset {name!r} (covidx): option 'fields' must be 3 or 4, got {fields!r}")

    def label_names(self) -> tuple[str, ...]:
        """negative / positive with ``binary``, else normal / pneumonia / COVID-19."""
        return BINARY_CLASSES if self.options["binary"] else CLASSES

    def raw_files(self) -> dict[str, str]:
        """The two list files."""
        return {"train": self.options["train_list"], "test": self.options["test_list"]}

    def image_dirs(self) -> tuple[str, ...]:
        """``train_dir`` and ``test_dir`` (the lists have no header: :meth:`raw_headers` stays empty)."""
        return self.options["train_dir"], self.options["test_dir"]

    def read(self) -> Parsed:
        """Records of both lists; bad lines, unknown labels and repeats are rejects."""
        records: list[dict[str, Any]] = []
        rejects: list[dict[str, Any]] = []
        n_input = 0
        test_patients: set[str] = set()
        owner: dict[str, ListLine] = {}  # key -> the line that took it
        for role, split in (("test", "test"), ("train", None)):
            source = self.options[f"{role}_list"]
            lines, bad, n = read_list(self.root, source, int(self.options["fields"]))
            n_input += n
            rejects += bad
            for item in lines:
                key = f"{role}_{_NOT_IN_KEY.sub('_', item.filename.rsplit('.', 1)[0])}"
                reason, detail = self._problem(item, key, split, owner, test_patients)
                if reason:
                    rejects.append({"source": source, "line": item.line, "key": key, "reason": reason,
                                    "detail": detail})
                    continue
                owner[key] = item
                if split == "test":
                    test_patients.add(item.patient_id)
                label = _AS_BINARY[item.label] if self.options["binary"] else item.label
                records.append({
                    "key": key, "patient_id": item.patient_id, "split": split,
                    "path": f"{self.options[f'{role}_dir']}/{item.filename}",
                    "labels": [float(label == c) for c in self.label_names()],
                })
        return Parsed(records_table(records), rejects_table(rejects), n_input)

    def _problem(
        self, item: ListLine, key: str, split: str | None, owner: dict[str, ListLine], test_patients: set[str]
    ) -> tuple[str, str]:
        """Why a parsed line cannot be a record (``("", "")`` if it can)."""
        known = _AS_BINARY if self.options["binary"] else CLASSES
        if item.label not in known:
            hint = " (positive/negative lists need option binary: true)" if item.label in BINARY_CLASSES else ""
            return "unknown_label", f"label {item.label!r} is not one of {', '.join(known)}{hint}"
        first = owner.get(key)
        if first is not None:
            where = f"{first.source} line {first.line}"
            if first.filename == item.filename:
                return "duplicate_image", f"{item.filename} already listed in {where}"
            return "duplicate_key", f"{item.filename} and {first.filename} ({where}) both make key {key}"
        if split is None and item.patient_id in test_patients:
            return "patient_in_test_list", f"patient {item.patient_id!r} also has images in the test list"
        return "", ""

    def write_demo(self, spec: DemoSpec) -> None:
        """A synthetic COVIDx copy: both lists and their PNG / JPEG images (see :mod:`covidx_demo`)."""
        write_covidx_demo(self.root, self.options, spec)


def read_list(root: Path, source: str, fields: int) -> tuple[list[ListLine], list[dict[str, Any]], int]:
    """Parse the COVIDx list ``root/source``: well-formed lines, rejects and the number of lines.

    Rejects: ``blank_line``, ``too_few_fields``, ``bad_filename`` (not .png / .jpg / .jpeg).
    """
    file = root / source
    if not file.is_file():
        raise FileNotFoundError(f"{file}: COVIDx list file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{file}: not a UTF-8 text file ({error})") from error
    lines: list[ListLine] = []
    rejects: list[dict[str, Any]] = []
    rows = text.splitlines()
    for number, raw in enumerate(rows, 1):
        tokens = raw.split()
        if not tokens:
            rejects.append({"source": source, "line": number, "reason": "blank_line", "detail": ""})
            continue
        if len(tokens) < fields:
            rejects.append({"source": source, "line": number, "reason": "too_few_fields",
                            "detail": f"{len(tokens)} field(s), expected {fields}: {raw.strip()!r}"})
            continue
        split_at = len(tokens) - fields + 1  # everything left of the last fields - 1 tokens is the patient id
        filename, label = tokens[split_at], tokens[split_at + 1]
        if not filename.lower().endswith(IMAGE_SUFFIXES):
            rejects.append({"source": source, "line": number, "reason": "bad_filename",
                            "detail": f"{filename!r} is not a .png/.jpg/.jpeg image: {raw.strip()!r}"})
            continue
        lines.append(ListLine(source, number, " ".join(tokens[:split_at]), filename, label))
    return lines, rejects, len(rows)
