"""The demo's exports/reports.csv: the MIMIC demo as one table, and the same manifest through either layout."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from imitate.demo.mimic import write_demo_mimic
from imitate.demo.report_table import write_report_table
from imitate.manifest.build import build_manifest
from imitate.sections.extract import extract_sections
from imitate.sections.texts import section_texts
from imitate.source.read import Columns
from imitate.source.table import build_source

TREES = [{"dir": "mimic-cxr-jpg/2.0.0/files", "ext": ".jpg"}, {"dir": "mimic-cxr/2.0.0/files", "ext": ".dcm"}]
COLUMNS = {"path": "path", "patient": "patient_id", "study": "study_id", "image": "image_id", "view": "view",
           "split": "split", "report": "report"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "files"
    write_demo_mimic(root, n_studies=12, seed=3, image_size=32, dicom_fraction=0.3,
                     split_fractions={"train": 0.6, "validate": 0.2, "test": 0.2})
    return root


def _csv_gz(path: Path) -> list[dict[str, str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_table_has_every_metadata_row_with_its_file_and_report(demo: Path) -> None:
    table = write_report_table(demo)
    assert table == demo / "exports" / "reports.csv"
    data = table.read_bytes()
    assert b"\r" not in data
    with table.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    metadata = _csv_gz(demo / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv.gz")
    split = {r["dicom_id"]: r["split"] for r in _csv_gz(demo / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz")}
    assert [r["image_id"] for r in rows] == [m["dicom_id"] for m in metadata]
    dicom = 0
    for row, meta in zip(rows, metadata, strict=True):
        subject, study = meta["subject_id"], meta["study_id"]
        folder = f"p{subject[:2]}/p{subject}/s{study}"
        assert (row["patient_id"], row["study_id"], row["view"]) == (subject, study, meta["ViewPosition"])
        assert row["split"] == split[meta["dicom_id"]]
        jpg = f"mimic-cxr-jpg/2.0.0/files/{folder}/{meta['dicom_id']}.jpg"
        dcm = f"mimic-cxr/2.0.0/files/{folder}/{meta['dicom_id']}.dcm"
        assert row["path"] == (jpg if (demo / jpg).is_file() else dcm) and (demo / row["path"]).is_file()
        dicom += row["path"] == dcm
        assert row["report"] == (demo / f"mimic-cxr-reports/files/{folder}.txt").read_text(encoding="utf-8")
    assert dicom > 0
    write_report_table(demo)
    assert table.read_bytes() == data


def test_the_table_source_gives_the_mimic_layouts_sections_and_manifest(demo: Path, tmp_path: Path) -> None:
    table = write_report_table(demo)
    sections, rejects = extract_sections(demo / "mimic-cxr-reports/files")
    pq.write_table(sections, tmp_path / "mimic_sections.parquet")
    source = build_source(table, root=demo, columns=Columns.from_mapping(COLUMNS))
    assert source.counts["rejects"] == 0
    from_table, table_rejects = section_texts(source.reports)
    assert from_table.drop(["path"]).equals(sections.drop(["path"]))
    assert table_rejects.num_rows == rejects.num_rows == 0
    pq.write_table(source.metadata, tmp_path / "rows.parquet")
    pq.write_table(from_table, tmp_path / "table_sections.parquet")
    jpg = demo / "mimic-cxr-jpg/2.0.0"
    mimic = build_manifest(sections=tmp_path / "mimic_sections.parquet", root=demo, image_trees=TREES,
                           metadata=jpg / "mimic-cxr-2.0.0-metadata.csv.gz", split=jpg / "mimic-cxr-2.0.0-split.csv.gz")
    other = build_manifest(sections=tmp_path / "table_sections.parquet", rows=tmp_path / "rows.parquet", root=demo)
    for name in ("images", "studies", "rejects"):
        assert getattr(other, name).equals(getattr(mimic, name)), name
    by_tree = mimic.counts.pop("images_by_tree")
    by_ext = other.counts.pop("images_by_tree")
    assert other.counts == mimic.counts
    # the table names files, not trees: its count is by extension, the same numbers here
    assert by_ext == {"*.dcm": by_tree["mimic-cxr/2.0.0/files/*.dcm"],
                      "*.jpg": by_tree["mimic-cxr-jpg/2.0.0/files/*.jpg"]}
