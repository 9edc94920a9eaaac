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

from pathlib import Path

from imitate.datasets.base import write_csv
from imitate.datasets.chexpert_csv import COMPETITION_LABELS
from imitate.demo.exports import CHEXPERT, METADATA, SPLIT, found_image, image_paths, read_gz_csv

LABEL_TABLE = "exports/labels.csv"
COLUMNS: tuple[str, ...] = ("image", "patient", "study", "dicom_id", "view", *COMPETITION_LABELS)
FRONTAL_VIEWS = ("PA", "AP")
FROM_SPLIT = "test"


def _image_path(root: Path, subject: str, study: str, dicom_id: str) -> str:
    """The JPG of the image if the demo wrote one, else its DICOM."""
    found = found_image(root, subject, study, dicom_id)
    if found is None:
        places = " or ".join(image_paths(subject, study, dicom_id))
        raise FileNotFoundError(f"{root}: demo image {dicom_id} missing (neither {places})")
    return found


def write_label_table(root: str | Path, out: str | Path = LABEL_TABLE) -> Path:
    """Write the label table of the demo tree under ``root`` to ``out`` (relative to ``root``); its path."""
    root = Path(root)
    metadata = read_gz_csv(root / METADATA)
    split = {row["dicom_id"]: row["split"] for row in read_gz_csv(root / SPLIT)}
    labels = {row["study_id"]: row for row in read_gz_csv(root / CHEXPERT)}
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
