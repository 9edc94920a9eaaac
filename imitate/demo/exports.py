"""What the demo's exported tables (``exports/labels.csv``, ``exports/reports.csv``) read from its MIMIC-CXR tree.

The tables are built from the demo's own files, as a lab would export them from its archive: the metadata,
split and CheXpert CSVs, the report files and the image files, found where the config's image trees look.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from imitate.demo.mimic import DICOM_FILES, JPG_ROOT

METADATA, SPLIT, CHEXPERT = (
    f"{JPG_ROOT}/mimic-cxr-2.0.0-{name}.csv.gz" for name in ("metadata", "split", "chexpert")
)
# the image trees of config.yaml, in its order: the JPG if the demo wrote one, else the DICOM
IMAGE_TREES: tuple[tuple[str, str], ...] = ((f"{JPG_ROOT}/files", ".jpg"), (DICOM_FILES, ".dcm"))


def read_gz_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a gzipped CSV with a header line, as text."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def study_dir(subject: str, study: str) -> str:
    """A study's folder in MIMIC-CXR's trees: ``pXX/pXXXXXXXX/sXXXXXXXX``."""
    return f"p{subject[:2]}/p{subject}/s{study}"


def image_paths(subject: str, study: str, dicom_id: str) -> list[str]:
    """Where the image may be, relative to the root, in the image trees' order."""
    return [f"{tree}/{study_dir(subject, study)}/{dicom_id}{ext}" for tree, ext in IMAGE_TREES]


def found_image(root: Path, subject: str, study: str, dicom_id: str) -> str | None:
    """The image's path in the first tree that holds it (as the manifest resolves it), or None."""
    return next((p for p in image_paths(subject, study, dicom_id) if (root / p).is_file()), None)
