"""The demo's downstream label table: ``exports/labels.csv``, a lab's export of labelled images.

Built from the demo MIMIC-CXR tree itself (metadata, split and CheXpert CSVs, image files; nothing is
drawn): one row per frontal (PA/AP) image of the official ``test`` split, so that no image a model was
pretrained on is evaluated. Columns: ``image`` (path relative to the data root: the JPG, or the DICOM
for images written only as DICOM), ``patient``, ``study``, ``dicom_id``, ``view`` and the five
competition labels with the CheXpert file's values as they are (``1.0``, ``0.0``, ``-1.0`` or blank).
There is no split column: the table adapter draws train/validate/test by patient. Rows are sorted by
patient, study and image; ``\\n`` line ends, UTF-8.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from imitate.datasets.base import write_csv
from imitate.datasets.chexpert_csv import COMPETITION_LABELS
from imitate.demo.mimic import DICOM_FILES, JPG_ROOT

LABEL_TABLE = "exports/labels.csv"
COLUMNS: tuple[str, ...] = ("image", "patient", "study", "dicom_id", "view", *COMPETITION_LABELS)
FRONTAL_VIEWS = ("PA", "AP")
FROM_SPLIT = "test"


def _read_gz_csv(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _image_path(root: Path, subject: str, study: str, dicom_id: str) -> str:
    """The JPG of the image if the demo wrote one, else its DICOM."""
    study_dir = f"p{subject[:2]}/p{subject}/s{study}"
    jpg = f"{JPG_ROOT}/files/{study_dir}/{dicom_id}.jpg"
    dicom = f"{DICOM_FILES}/{study_dir}/{dicom_id}.dcm"
    for path in (jpg, dicom):
        if (root / path).is_file():
            return path
    raise FileNotFoundError(f"{root / jpg}: demo image missing (nor {root / dicom})")


def write_label_table(root: str | Path, out: str | Path = LABEL_TABLE) -> Path:
    """Write the label table of the demo tree under ``root`` to ``out`` (relative to ``root``); its path."""
    root = Path(root)
    metadata = _read_gz_csv(root / JPG_ROOT / "mimic-cxr-2.0.0-metadata.csv.gz")
    split = {row["dicom_id"]: row["split"] for row in _read_gz_csv(root / JPG_ROOT / "mimic-cxr-2.0.0-split.csv.gz")}
    labels = {row["study_id"]: row for row in _read_gz_csv(root / JPG_ROOT / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    rows = []
    for image in metadata:
        dicom_id, subject, study = image["dicom_id"], image["subject_id"], image["study_id"]
        if split.get(dicom_id) != FROM_SPLIT or image["ViewPosition"] not in FRONTAL_VIEWS:
            continue
        values = labels.get(study, {})
        rows.append((_image_path(root, subject, study, dicom_id), subject, study, dicom_id, image["ViewPosition"],
                     *(values.get(name, "") for name in COMPETITION_LABELS)))
    rows.sort(key=lambda row: (int(row[1]), int(row[2]), row[3]))
    path = root / out
    write_csv(path, COLUMNS, rows)
    return path
