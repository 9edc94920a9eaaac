"""The demo MIMIC-CXR as one table of images with their reports: ``<root>/exports/reports.csv``.

A pretraining corpus in the shape a lab exports it (``data.source: table``), built from the demo's own
files, nothing drawn: one row per metadata row (``image_id`` = dicom_id, ``patient_id``, ``study_id``,
``view`` = ViewPosition, ``split`` from the split CSV), ``path`` the image file relative to the root in
the first image tree holding it (the one the manifest resolves; a missing image keeps its path in the
first tree), and ``report`` the study's report file verbatim. Rows in metadata order, ``\\n`` line ends.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from imitate.demo.mimic import DICOM_FILES, JPG_ROOT, REPORT_FILES

REPORT_TABLE = "exports/reports.csv"
COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "study_id", "view", "split", "path", "report")
# the image trees of config.yaml, in its order
IMAGE_TREES: tuple[tuple[str, str], ...] = ((f"{JPG_ROOT}/files", ".jpg"), (DICOM_FILES, ".dcm"))


def _rows(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _study_dir(subject: str, study: str) -> str:
    return f"p{subject[:2]}/p{subject}/s{study}"


def _image_path(root: Path, subject: str, study: str, dicom: str) -> str:
    paths = [f"{tree}/{_study_dir(subject, study)}/{dicom}{ext}" for tree, ext in IMAGE_TREES]
    return next((p for p in paths if (root / p).is_file()), paths[0])


def write_report_table(root: Path) -> Path:
    """Write ``<root>/exports/reports.csv`` from the demo tree under ``root``; returns its path."""
    root = Path(root)
    metadata = _rows(root / JPG_ROOT / "mimic-cxr-2.0.0-metadata.csv.gz")
    split = {row["dicom_id"]: row["split"] for row in _rows(root / JPG_ROOT / "mimic-cxr-2.0.0-split.csv.gz")}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    reports: dict[tuple[str, str], str] = {}
    for row in metadata:
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        if (subject, study) not in reports:
            report = root / REPORT_FILES / f"{_study_dir(subject, study)}.txt"
            reports[subject, study] = report.read_bytes().decode("utf-8") if report.is_file() else ""
        writer.writerow((dicom, subject, study, row["ViewPosition"], split.get(dicom, ""),
                         _image_path(root, subject, study, dicom), reports[subject, study]))
    out = root / REPORT_TABLE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(text.getvalue().encode("utf-8"))
    return out
