"""CheXpert label CSVs (``train.csv``, ``valid.csv``): rows checked and parsed, or rejected with a reason.

Shared by the CheXpert and CheXpert 5x200 adapters so that both see exactly the same rows, keys and
values. ``Path`` is relative to the parent of the CheXpert directory (``CheXpert-v1.0-small/train/
patient00001/study1/view1_frontal.jpg``); observations are ``1.0``, ``0.0``, ``-1.0`` (uncertain) or blank.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

OBSERVATIONS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
COLUMNS: tuple[str, ...] = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS)
COMPETITION_LABELS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
TRAIN_CSV, VALID_CSV = "train.csv", "valid.csv"

BLANK = float("nan")
_VALUES: dict[str, float] = {"": BLANK, "1.0": 1.0, "0.0": 0.0, "-1.0": -1.0, "1": 1.0, "0": 0.0, "-1": -1.0}
_VIEWS = {"Frontal": True, "Lateral": False}
# The last three components name the image; they make its key (no dots, unique per image).
_IMAGE_PATH = re.compile(r"(?:^|/)(patient\d+)/(study\d+)/([A-Za-z0-9_-]+)\.jpe?g$")


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One well-formed CSV row; ``values`` has one entry per :data:`OBSERVATIONS` (NaN = blank)."""

    line: int
    key: str
    patient_id: str
    path: str  # relative to the dataset root
    csv_path: str  # as written in the file
    frontal: bool
    values: tuple[float, ...]


@dataclass
class LabelFile:
    """The parsed rows of one CSV, its rejects (:data:`~imitate.datasets.base.REJECT_SCHEMA` dicts) and size."""

    source: str
    rows: list[LabelRow] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    n_input: int = 0

    def reject(self, line: int, key: str | None, reason: str, detail: str) -> None:
        """Record one rejected input row."""
        self.rejects.append({"source": self.source, "line": line, "key": key, "reason": reason, "detail": detail})


def image_key(csv_path: str) -> tuple[str, str] | None:
    """``(key, patient_id)`` of a ``Path`` value (``patient00001_study1_view1_frontal``), None if malformed.

    The key ignores the leading directory, so v1.0 and v1.0-small paths of one image share it.
    """
    match = _IMAGE_PATH.search(csv_path)
    return None if match is None else ("_".join(match.groups()), match.group(1))


def csv_source(directory: str, name: str) -> str:
    """A label file's path relative to the dataset root."""
    return str(PurePosixPath(directory) / name)


def read_label_file(root: Path, directory: str, name: str) -> LabelFile:
    """Parse ``<root>/<directory>/<name>``; a missing file or column is an error, a bad row a reject.

    Rejects: ``wrong_field_count``, ``bad_path`` (not ``.../patientN/studyN/<view>.jpg``), ``bad_view``
    (Frontal/Lateral), ``bad_label_value`` (not 1.0, 0.0, -1.0 or blank), ``duplicate_image``.
    """
    source = csv_source(directory, name)
    file = root / source
    if not file.is_file():
        raise FileNotFoundError(f"{file}: CheXpert label file not found (option 'directory' is {directory!r})")
    parent = str(PurePosixPath(directory).parent)
    prefix = "" if parent == "." else f"{parent}/"
    out = LabelFile(source)
    first_line: dict[str, int] = {}
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        missing = [c for c in COLUMNS if c not in (header or [])]
        if missing:
            raise ValueError(f"{file}: not a CheXpert label file, missing column(s) {', '.join(missing)}")
        at = {column: header.index(column) for column in COLUMNS}
        observed = [at[o] for o in OBSERVATIONS]
        for fields in reader:
            out.n_input += 1
            line = reader.line_num
            if len(fields) != len(header):
                out.reject(line, None, "wrong_field_count", f"{len(fields)} fields, header has {len(header)}")
                continue
            csv_path = fields[at["Path"]]
            identity = image_key(csv_path)
            if identity is None:
                out.reject(line, None, "bad_path", f"Path {csv_path!r} is not .../patientN/studyN/<view>.jpg")
                continue
            key, patient_id = identity
            row = _parse(out, line, key, fields, at["Frontal/Lateral"], observed)
            if row is None:
                continue
            if key in first_line:
                out.reject(line, key, "duplicate_image", f"same image as line {first_line[key]}")
                continue
            first_line[key] = line
            out.rows.append(LabelRow(line, key, patient_id, prefix + csv_path, csv_path, *row))
    return out


def _parse(
    out: LabelFile, line: int, key: str, fields: list[str], view_at: int, observed: list[int]
) -> tuple[bool, tuple[float, ...]] | None:
    """The view and observation values of a row, or None after rejecting it."""
    view = fields[view_at]
    if view not in _VIEWS:
        out.reject(line, key, "bad_view", f"Frontal/Lateral is {view!r}")
        return None
    raw = [fields[i] for i in observed]
    try:
        return _VIEWS[view], tuple(map(_VALUES.__getitem__, raw))
    except KeyError:
        name, text = next((o, t) for o, t in zip(OBSERVATIONS, raw, strict=True) if t not in _VALUES)
        out.reject(line, key, "bad_label_value", f"{name} is {text!r} (expected 1.0, 0.0, -1.0 or blank)")
        return None
