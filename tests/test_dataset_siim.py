"""SIIM-ACR adapter: RLE codec, rows -> one record per image, patients from DICOM headers, demo, real file."""

import csv
import gzip
import importlib.util
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.dataset import prepare_dataset
from imitate.datasets.jpeg_dicom import FilmHeader, write_jpeg_dicom
from imitate.datasets.masks import decode_rle, encode_rle
from imitate.datasets.siim import Adapter, image_key

XRV = importlib.util.find_spec("torchxrayvision")  # its wheel (test extra) ships the real file; not imported
REAL_RLE = Path(XRV.origin).parent / "data" / "siim-pneumothorax-train-rle.csv.gz"


def _adapter(root: Path) -> Adapter:
    return load_adapter("siim", {"adapter": "siim", "root": root})


def test_rle_is_relative_and_column_major():
    mask = np.array([[1, 0, 1], [1, 0, 0]], dtype=bool)  # columns: [1, 1], [0, 0], [1, 0]
    assert encode_rle(mask) == "0 2 2 1"
    assert np.array_equal(decode_rle("0 2 2 1", 2, 3), mask)
    assert np.array_equal(decode_rle(" 0 1| 5 1", 2, 3), [[1, 0, 0], [0, 0, 1]])  # components are OR-ed
    assert not decode_rle("-1", 2, 3).any() and encode_rle(np.zeros((2, 3), bool)) == "-1"


def test_rle_roundtrip_and_errors():
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (1, 1), (16, 9)]:
        for density in (0.1, 0.5, 1.0):
            mask = rng.random(shape) < density
            assert np.array_equal(decode_rle(encode_rle(mask), *shape), mask)
    for bad in ("1 2 3", "a b", "1 0", "-2 3"):
        with pytest.raises(ValueError):
            decode_rle(bad, 4, 4)
    with pytest.raises(ValueError, match="past the 2x2 image"):
        decode_rle("3 2", 2, 2)


def _dicom(root: Path, image_id: str, patient: str) -> None:
    header = FilmHeader(patient, "M", 40, "PA", "1.2.9.2", "1.2.9.3", image_id, 0.168)
    write_jpeg_dicom(root / "dicom-images-train" / "1.2.9.2" / "1.2.9.3" / f"{image_id}.dcm",
                     np.full((8, 8), 100, np.uint8), header)


def test_rows_collapse_per_image_with_patients_from_the_headers(tmp_path):
    for image_id in ("1.1", "1.2", "1.3"):
        _dicom(tmp_path, image_id, "patient-a" if image_id != "1.3" else "patient-b")
    bad = tmp_path / "dicom-images-train" / "x" / "1.4.dcm"
    bad.parent.mkdir()
    bad.write_bytes(b"not a dicom")
    rows = [
        "1.1, 0 3 4 2",  # line 2: two components, values with a leading space
        "1.1, 1 1",
        "1.2,-1",  # line 4
        "1.3, -1",
        "1.9,-1",  # line 6: no file in the tree
        "1.5,-1",
        "1.5,2 2",  # line 8: conflicts with line 7
        "1.6,1 2 3",  # line 9
        "1.7,-1,extra",
        ",-1",  # line 11
        "1.4,-1",  # line 12: unreadable file
        "1_1,-1",  # line 13: same key as 1.1
    ]
    text = "ImageId, EncodedPixels\n" + "".join(f"{r}\n" for r in rows) + "\n"  # a blank line is no row
    (tmp_path / "train-rle.csv").write_text(text)
    parsed = _adapter(tmp_path).read()
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["1_1", "1_2", "1_3", "1_9"]
    assert records["1_1"]["labels"] == [1.0] and records["1_1"]["mask_rle"] == "0 3 4 2|1 1"
    assert records["1_2"]["labels"] == [0.0] and records["1_2"]["mask_rle"] == "-1"
    assert [records[k]["patient_id"] for k in ("1_1", "1_2", "1_3", "1_9")] == ["patient-a", "patient-a",
                                                                               "patient-b", "1.9"]
    assert records["1_1"]["path"] == "dicom-images-train/1.2.9.2/1.2.9.3/1.1.dcm"
    assert records["1_9"]["path"] == "dicom-images-train/1.9.dcm"  # not there: prepare rejects it
    rejects = {(r["key"], r["line"], r["reason"]) for r in parsed.rejects.to_pylist()}
    assert rejects == {
        ("1_5", 7, "conflicting_rows"), ("1_6", 9, "malformed_rle"), ("1_7", 10, "malformed_row"),
        (None, 11, "missing_image_id"), ("1_4", 12, "dicom_unreadable"), ("1_1", 13, "duplicate_key"),
    }
    assert parsed.n_input == 10 == parsed.records.num_rows + parsed.rejects.num_rows
    prepared = prepare_dataset(_adapter(tmp_path), seed=0, fractions=[100])
    assert [(r["key"], r["reason"]) for r in prepared.rejects.to_pylist() if r["key"] == "1_9"] == [
        ("1_9", "image_missing")]


def test_header_is_checked(tmp_path):
    (tmp_path / "train-rle.csv").write_text("ImageId,Mask\n1.1,-1\n")
    with pytest.raises(ValueError, match=r"train-rle\.csv: header"):
        _adapter(tmp_path).read()
    assert image_key("1.2.276.0.7230010") == "1_2_276_0_7230010"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("siim")
    _adapter(root).write_demo(DemoSpec(n_images=24, seed=0, image_size=48))
    return root


def test_demo_masks_decode_inside_their_images(demo_root):
    lines = (demo_root / "train-rle.csv").read_text().splitlines()
    assert lines[0] == "ImageId, EncodedPixels"
    records = _adapter(demo_root).read().records.to_pylist()
    positives = [r for r in records if r["labels"] == [1.0]]
    assert 0 < len(positives) < len(records)
    assert any("|" in r["mask_rle"] for r in positives)  # some masks were written as two rows
    assert len(lines) - 1 == len(records) + sum(r["mask_rle"].count("|") for r in positives)
    for record in positives:
        ds = pydicom.dcmread(demo_root / record["path"], stop_before_pixels=True)
        assert ds.SOPInstanceUID.replace(".", "_") == record["key"] and ds.PatientID == record["patient_id"]
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" and ds.BitsAllocated == 8
        parts = [decode_rle(part, ds.Rows, ds.Columns) for part in record["mask_rle"].split("|")]
        assert all(part.any() for part in parts)
        assert not np.logical_and(parts[0], parts[-1]).any() or len(parts) == 1  # split parts are disjoint


def test_real_label_file_counts(tmp_path):
    (tmp_path / "train-rle.csv").write_bytes(gzip.decompress(REAL_RLE.read_bytes()))
    parsed = _adapter(tmp_path).read()
    assert parsed.n_input == parsed.records.num_rows == 12_047 and parsed.rejects.num_rows == 0
    masks = parsed.records["mask_rle"].to_pylist()
    negatives = masks.count("-1")
    components = sum(m.count("|") + 1 for m in masks if m != "-1")
    assert negatives == 9_378 and negatives + components == 12_954
    first = next(m for m in masks if m != "-1")
    lengths = sum(int(v) for part in first.split("|") for v in part.split()[1::2])
    assert decode_rle(first, 1024, 1024).sum() == lengths


def test_every_real_rle_row_decodes_inside_its_image():
    rows = list(csv.reader(io.StringIO(gzip.decompress(REAL_RLE.read_bytes()).decode())))[1:]
    masks = [value.strip() for _, value in rows if value.strip() != "-1"]
    assert len(masks) == 12_954 - 9_378
    for rle in masks:  # decode_rle raises on runs past the 1024 x 1024 image
        mask = decode_rle(rle, 1024, 1024)
        assert mask.sum() == sum(int(v) for v in rle.split()[1::2]) > 0
