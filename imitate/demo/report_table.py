"""The demo MIMIC-CXR as one table of images with their reports: ``<root>/exports/reports.csv``.

A pretraining corpus in the shape a lab exports it (``data.source: table``), built from the demo's own
files, nothing drawn: one row per metadata row (``image_id`` = dicom_id, ``patient_id``, ``study_id``,
``view`` = ViewPosition, ``split`` from the split CSV), ``path`` the image file relative to the root in
the first image tree holding it (the one the manifest resolves; a missing image keeps its path in the
first tree), and ``report`` the study's report file verbatim. Rows in metadata order, ``\\n`` line ends.
"""

from __future__ import annotations

from pathlib import Path

from imitate.datasets.base import write_csv
from imitate.demo.exports import METADATA, SPLIT, found_image, image_paths, read_gz_csv, study_dir
from imitate.demo.mimic import REPORT_FILES

REPORT_TABLE = "exports/reports.csv"
COLUMNS: tuple[str, ...] = ("image_id", "patient_id", "study_id", "view", "split", "path", "report")


def write_report_table(root: Path) -> Path:
    """Write ``<root>/exports/reports.csv`` from the demo tree under ``root``; returns its path."""
    root = Path(root)
    metadata = read_gz_csv(root / METADATA)
    split = {row["dicom_id"]: row["split"] for row in read_gz_csv(root / SPLIT)}
    rows, reports = [], {}
    for row in metadata:
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        if (subject, study) not in reports:
            report = root / REPORT_FILES / f"{study_dir(subject, study)}.txt"
            reports[subject, study] = report.read_bytes().decode("utf-8") if report.is_file() else ""
        rows.append((dicom, subject, study, row["ViewPosition"], split.get(dicom, ""),
                     found_image(root, subject, study, dicom) or image_paths(subject, study, dicom)[0],
                     reports[subject, study]))
    out = root / REPORT_TABLE
    write_csv(out, COLUMNS, rows)
    return out
