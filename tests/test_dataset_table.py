"""The table adapter (``adapter: table``): small tables written here, with the records and rejects they must
give written out by hand.

The adapter contract (tests/test_adapter_contract.py) runs it on the demo's ``exports/labels.csv``; the
tiny workflow evaluates that table (tests/test_workflow.py).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imitate.datasets import load_adapter
from imitate.datasets.dataset import prepare_dataset
from imitate.datasets.masks import decode_rle
from imitate.datasets.splits import check_leakage
from imitate.demo.label_table import write_label_table
from imitate.demo.mimic import write_demo_mimic
from imitate.shards.writer import write_shards

LABELS = ["A", "B"]


def _image(root: Path, path: str, value: int = 128, size: tuple[int, int] = (8, 6)) -> None:
    """A small grey image (PNG or JPG by suffix), ``size`` = (width, height)."""
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(root / path)


def _csv(root: Path, name: str, text: str) -> str:
    (root / name).write_text(text, encoding="utf-8")
    return name


def _adapter(root: Path, **options: Any):
    return load_adapter("mine", {"adapter": "table", "root": root, "options": options})


def _rejects(parsed_or_prepared) -> list[tuple[str, int | None]]:
    return sorted((r["reason"], r["line"]) for r in parsed_or_prepared.rejects.to_pylist())


def _records(adapter) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in adapter.read().records.to_pylist()}


def _by_path(adapter) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in adapter.read().records.to_pylist()}


BASIC = {"kind": "multilabel", "columns": {"path": "image", "patient": "patient", "split": "split"},
         "labels": LABELS}


# --- every bad row lands in the rejects, with its line ---------------------------------------------


BAD_ROWS = """image,patient,split,A,B
img/a.png,p1,train,1,0
,p1,train,1,0
img/b.png,,train,1,0
img/c.png,p2,train,2,0
img/d.png,p2,holdout,1,0
../e.png,p3,train,0,0
/abs/f.png,p3,train,0,0
img/a.png,p1,train,1,0
img/g.png,p4,val,-1.0,0
img/h.png,p4,val
img/missing.png,p5,test,0,1
img/i.png,p5,TEST,0,

img/j.png,p6,,1.0,1
"""


def test_each_bad_row_is_rejected_at_its_line_and_the_counts_add_up(tmp_path: Path):
    for name in "abcdghij":
        _image(tmp_path, f"img/{name}.png")
    table = _csv(tmp_path, "labels.csv", BAD_ROWS)
    adapter = _adapter(tmp_path, table=table, **BASIC)
    parsed = adapter.read()
    assert _rejects(parsed) == sorted([
        ("missing_path", 3), ("missing_patient_id", 4), ("bad_label_value", 5), ("unknown_split", 6),
        ("path_outside_root", 7), ("path_outside_root", 8), ("duplicate_image", 9), ("bad_label_value", 10),
        ("malformed_row", 11),
    ])
    assert {r["source"] for r in parsed.rejects.to_pylist()} == {"labels.csv"}
    details = {r["line"]: r["detail"] for r in parsed.rejects.to_pylist()}
    assert "'2'" in details[5] and "A" in details[5] and "uncertain" in details[10] and "holdout" in details[6]
    # 14 data rows: 5 rejected alone (lines 3, 7, 8, 9, 11) and 8 images (a, b, c, d, g, missing, i, j)
    assert parsed.n_input == 13

    prepared = prepare_dataset(adapter, seed=0, fractions=[100])
    records = {r["path"]: r for r in prepared.records.to_pylist()}
    assert sorted(records) == ["img/a.png", "img/i.png", "img/j.png"]
    assert [(r["reason"], r["source"]) for r in prepared.rejects.to_pylist() if r["reason"] == "image_missing"] == [
        ("image_missing", "img/missing.png")
    ]
    assert prepared.facts["n_input"] == prepared.records.num_rows + prepared.rejects.num_rows == 13
    assert records["img/a.png"]["labels"] == [1.0, 0.0] and records["img/a.png"]["split"] == "train"
    assert records["img/i.png"]["labels"] == [0.0, 0.0] and records["img/i.png"]["split"] == "test"  # blank: 0
    assert records["img/j.png"]["labels"] == [1.0, 1.0] and records["img/j.png"]["split"] == "train"  # drawn


def test_keys_from_a_column_must_be_key_safe_and_unique(tmp_path: Path):
    for name in "abc":
        _image(tmp_path, f"{name}.png")
    table = _csv(tmp_path, "t.csv", "id,image,patient,A\nk1,a.png,p1,1\nk.2,b.png,p2,0\nk1,c.png,p3,0\n")
    adapter = _adapter(tmp_path, table=table, kind="binary", labels=["A"],
                       columns={"path": "image", "patient": "patient", "key": "id"})
    parsed = adapter.read()
    assert [r["key"] for r in parsed.records.to_pylist()] == ["k1"]
    assert _rejects(parsed) == [("duplicate_key", 4), ("invalid_key", 3)]


def test_derived_keys_are_stable_key_safe_and_unique_per_path(tmp_path: Path):
    paths = ["x/scan 1.png", "y/scan 1.png", "x/scan 1.jpg", "x/scan_1.png"]
    for path in paths:
        _image(tmp_path, path)
    table = _csv(tmp_path, "t.csv", "image,patient,A\n" + "".join(f"{p},p{i},1\n" for i, p in enumerate(paths)))
    options = {"table": table, "kind": "binary", "labels": ["A"], "columns": {"path": "image", "patient": "patient"}}
    adapter = _adapter(tmp_path, **options)
    keys = {r["path"]: r["key"] for r in adapter.read().records.to_pylist()}
    expected = {p: f"scan_1-{hashlib.sha256(p.encode()).hexdigest()[:12]}" for p in paths}
    assert keys == expected and len(set(keys.values())) == len(paths)
    assert _adapter(tmp_path, **options).read().records.equals(adapter.read().records)


# --- formats --------------------------------------------------------------------------------------


def test_csv_gzipped_csv_and_parquet_give_the_same_records(tmp_path: Path):
    for name in "abc":
        _image(tmp_path, f"{name}.png")
    text = "image,patient,split,A,B\na.png,10,train,1.0,0.0\nb.png,11,valid,,1.0\nc.png,12,,0.0,-1.0\n"
    _csv(tmp_path, "t.csv", text)
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    pq.write_table(pa.table({  # typed columns, as a dataframe export writes them
        "image": ["a.png", "b.png", "c.png"], "patient": [10, 11, 12], "split": ["train", "valid", None],
        "A": [1.0, None, 0.0], "B": [0.0, 1.0, -1.0], "unused": [1, 2, 3],
    }), tmp_path / "t.parquet")
    options = {**BASIC, "uncertain": "zeros"}
    tables = [_adapter(tmp_path, table=name, **options).read() for name in ("t.csv", "t.csv.gz", "t.parquet")]
    assert tables[0].records.num_rows == 3 and tables[0].rejects.num_rows == 0
    assert all(t.records.equals(tables[0].records) for t in tables[1:])
    expected = {"a.png": ("10", "train", [1.0, 0.0]), "b.png": ("11", "validate", [0.0, 1.0]),
                "c.png": ("12", None, [0.0, 0.0])}
    assert {r["path"]: (r["patient_id"], r["split"], r["labels"]) for r in tables[2].records.to_pylist()} == expected


def test_images_in_dicom_jpg_and_png_are_sharded(tmp_path: Path):
    write_demo_mimic(tmp_path, n_studies=6, seed=0, image_size=32, dicom_fraction=0.5,
                     split_fractions={"test": 1.0})
    write_label_table(tmp_path)
    _image(tmp_path, "png/extra.png")
    rows = (tmp_path / "exports/labels.csv").read_text().splitlines()
    rows.append("png/extra.png,99,1,x,PA" + ",0.0" * 5)
    (tmp_path / "exports/labels.csv").write_text("\n".join(rows) + "\n")
    adapter = _adapter(tmp_path, table="exports/labels.csv", kind="binary", labels=["Edema"],
                       columns={"path": "image", "patient": "patient", "key": "dicom_id"})
    prepared = prepare_dataset(adapter, seed=0, fractions=[100], split_draw={"test": 1.0})
    suffixes = Counter(Path(p).suffix for p in prepared.records["path"].to_pylist())
    assert set(suffixes) == {".dcm", ".jpg", ".png"} and not prepared.rejects.num_rows
    written = write_shards(prepared.records, tmp_path, tmp_path / "shards", image_size=16, samples_per_shard=8)
    assert written.samples == prepared.records.num_rows and written.rejected == 0


def test_a_missing_file_column_or_unreadable_table_names_the_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv: the table of dataset 'mine' not found"):
        _adapter(tmp_path, table="nope.csv", **BASIC).read()
    _csv(tmp_path, "t.csv", "image,patient,A\n")
    with pytest.raises(ValueError, match=r"t\.csv: .*lacks column\(s\) split, B"):
        _adapter(tmp_path, table="t.csv", **BASIC).read()
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"bad\.parquet: cannot read the table of dataset 'mine'"):
        _adapter(tmp_path, table="bad.parquet", **BASIC).read()


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "binary", "labels": ["A"]}, "option 'table' is required"),
    ({"table": "t.xlsx"}, "option 'table' must name a .csv"),
    ({"table": "t.csv", "kind": "ordinal"}, "option 'kind' must be one of"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A", "B"]}, "binary dataset names one column"),
    ({"table": "t.csv", "kind": "multilabel", "labels": ["A"], "label_column": "L"}, "one of the two"),
    ({"table": "t.csv", "kind": "multiclass", "label_column": "L"}, "option 'classes' must be a non-empty list"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "columns": {"path": "p"}}, "needs 'patient'"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "columns": {"path": "p", "patient": "q", "boxes": ["x"]}},
     "four column names"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "uncertain": "maybe"}, "option 'uncertain'"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "values": {"yes": 2}}, "maps 'yes' to 2"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "split_values": {"dev": "tuning"}}, "split_values"),
    ({"table": "t.csv", "kind": "binary", "labels": ["A"], "colums": {}}, "unknown option"),
])
def test_bad_options_name_the_dataset_and_the_option(tmp_path: Path, options: dict[str, Any], message: str):
    options = {"columns": {"path": "p", "patient": "q"}, **options}
    with pytest.raises(ValueError, match=message) as error:
        _adapter(tmp_path, **options)
    assert "'mine'" in str(error.value)


def test_preflight_hooks_name_the_csv_columns_and_the_image_folders(tmp_path: Path):
    table = _csv(tmp_path, "t.csv", "image,patient,split,A,B\nx/a.png,1,train,1,0\ny/z/b.png,2,,0,0\nc.png,3,,0,0\n")
    adapter = _adapter(tmp_path, table=table, **BASIC)
    assert adapter.raw_files() == {"table": "t.csv"}
    assert adapter.raw_headers() == {"table": ("image", "patient", "split", "A", "B")}
    assert adapter.image_dirs() == (".", "x", "y")
    assert _adapter(tmp_path, table="t.parquet", **BASIC).raw_headers() == {}
    assert _adapter(tmp_path, table="absent.csv", **BASIC).image_dirs() == ()


# --- label mappings -------------------------------------------------------------------------------


def _labels(tmp_path: Path, text: str, **options: Any) -> tuple[dict[str, list[float]], list[tuple[str, int]]]:
    images = [line.split(",", 1)[0] for line in text.splitlines()[1:]]
    for path in images:
        _image(tmp_path, path)
    table = _csv(tmp_path, "t.csv", text)
    options = {"columns": {"path": "image", "patient": "patient"}, **options}
    parsed = _adapter(tmp_path, table=table, **options).read()
    return {r["path"]: r["labels"] for r in parsed.records.to_pylist()}, _rejects(parsed)


def test_binary_from_one_column_with_user_values(tmp_path: Path):
    text = "image,patient,Effusion\na.png,1,yes\nb.png,2,no\nc.png,3,1\nd.png,4,maybe\n"
    labels, rejects = _labels(tmp_path, text, kind="binary", labels=["Effusion"], values={"yes": 1, "no": 0})
    assert labels == {"a.png": [1.0], "b.png": [0.0], "c.png": [1.0]} and rejects == [("bad_label_value", 5)]


@pytest.mark.parametrize(("uncertain", "blank", "labels", "rejects"), [
    ("ones", "zero", {"a.png": [1.0, 0.0], "b.png": [0.0, 1.0]}, []),
    ("zeros", "zero", {"a.png": [0.0, 0.0], "b.png": [0.0, 1.0]}, []),
    ("reject", "zero", {"b.png": [0.0, 1.0]}, [("bad_label_value", 2)]),
    ("ones", "reject", {"a.png": [1.0, 0.0]}, [("bad_label_value", 3)]),
    ({"A": "zeros", "B": "ones"}, "zero", {"a.png": [0.0, 0.0], "b.png": [0.0, 1.0]}, []),
])
def test_uncertain_and_blank_policies(tmp_path: Path, uncertain, blank, labels, rejects):
    text = "image,patient,A,B\na.png,1,-1.0,0.0\nb.png,2,,1.0\n"
    assert _labels(tmp_path, text, kind="multilabel", labels=LABELS, uncertain=uncertain, blank=blank) == (
        labels, rejects)


def test_multilabel_from_a_column_of_names(tmp_path: Path):
    text = "image,patient,findings\na.png,1,Edema|Effusion\nb.png,2,\nc.png,3, Edema \nd.png,4,Edema|Mass\n"
    labels, rejects = _labels(tmp_path, text, kind="multilabel", label_column="findings",
                              classes=["Edema", "Effusion"])
    assert labels == {"a.png": [1.0, 1.0], "b.png": [0.0, 0.0], "c.png": [1.0, 0.0]}
    assert rejects == [("bad_label_value", 5)]
    text = text.replace("|", ";")
    labels, _ = _labels(tmp_path, text, kind="multilabel", label_column="findings", classes=["Edema", "Effusion"],
                        separator=";")
    assert labels["a.png"] == [1.0, 1.0]


def test_multiclass_from_names_and_from_one_hot_columns(tmp_path: Path):
    text = "image,patient,cls\na.png,1,covid\nb.png,2,normal\nc.png,3,\nd.png,4,covid|normal\ne.png,5,flu\n"
    labels, rejects = _labels(tmp_path, text, kind="multiclass", label_column="cls", classes=["normal", "covid"])
    assert labels == {"a.png": [0.0, 1.0], "b.png": [1.0, 0.0]}
    assert rejects == [("bad_label_value", 4), ("bad_label_value", 5), ("bad_label_value", 6)]
    text = "image,patient,normal,covid\na.png,1,0,1\nb.png,2,1,1\nc.png,3,0,0\n"
    labels, rejects = _labels(tmp_path, text, kind="multiclass", labels=["normal", "covid"])
    assert labels == {"a.png": [0.0, 1.0]} and rejects == [("bad_label_value", 3), ("bad_label_value", 4)]


# --- splits ---------------------------------------------------------------------------------------


def test_split_aliases_user_names_and_the_draw_by_patient(tmp_path: Path):
    rows = ["image,patient,part,A", "a.png,1,Train,1", "b.png,2,val,0", "c.png,3,VALIDATION,1", "d.png,4,tuning,0",
            "e.png,5,heldout,1", *(f"n{i}.png,{10 + i // 3},,{i % 2}" for i in range(30))]
    for row in rows[1:]:
        _image(tmp_path, row.split(",")[0])
    table = _csv(tmp_path, "t.csv", "\n".join(rows) + "\n")
    adapter = _adapter(tmp_path, table=table, kind="binary", labels=["A"], split_values={"tuning": "validate"},
                       columns={"path": "image", "patient": "patient", "split": "part"})
    parsed = adapter.read()
    splits = {r["path"]: r["split"] for r in parsed.records.to_pylist()}
    assert [splits[p] for p in ("a.png", "b.png", "c.png", "d.png")] == ["train", "validate", "validate", "validate"]
    assert _rejects(parsed) == [("unknown_split", 6)]
    prepared = prepare_dataset(adapter, seed=0, fractions=[100])  # the default draw: 10 % validate, 20 % test
    drawn = Counter(r["split"] for r in prepared.records.to_pylist() if r["path"].startswith("n"))
    assert drawn == {"train": 21, "validate": 3, "test": 6}  # 10 % and 20 % of the 30 rows without a split
    check_leakage(prepared.records, "t.csv")
    patients: dict[str, set[str]] = {}
    for record in prepared.records.to_pylist():
        patients.setdefault(record["patient_id"], set()).add(record["split"])
    assert all(len(s) == 1 for s in patients.values())


# --- boxes and masks ------------------------------------------------------------------------------


def test_boxes_from_one_row_per_box_grouped_by_image(tmp_path: Path):
    text = ("image,patient,x0,y0,x1,y1,A\n"
            "a.png,1,1,2,5,6,1\n"
            "b.png,2,,,,,0\n"
            "a.png,1,0,0,3.5,2,1\n"
            "c.png,3,1,1,1,4,1\n"
            "d.png,4,1,1,x,4,1\n"
            "e.png,5,1,1,,4,1\n"
            "f.png,6,0,0,2,2,1\n"
            "f.png,6,0,0,3,3,0\n")
    for name in "abcdef":
        _image(tmp_path, f"{name}.png")
    adapter = _adapter(tmp_path, table=_csv(tmp_path, "t.csv", text), kind="binary", labels=["A"],
                       columns={"path": "image", "patient": "patient", "boxes": ["x0", "y0", "x1", "y1"]})
    parsed = adapter.read()
    assert {r["path"]: r["boxes"] for r in parsed.records.to_pylist()} == {
        "a.png": [[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 3.5, 2.0]], "b.png": []}
    assert _rejects(parsed) == [("conflicting_rows", 9), ("malformed_box", 5), ("malformed_box", 6),
                                ("malformed_box", 7)]
    assert parsed.n_input == 6  # the images


def test_boxes_from_a_json_column(tmp_path: Path):
    text = ('image,patient,boxes,A\n'
            'a.png,1,"[[1, 2, 5, 6], [0, 0, 3, 3]]",1\n'
            'b.png,2,[],0\n'
            'c.png,3,,0\n'
            'd.png,4,"[[1, 2, 5]]",1\n'
            'e.png,5,"[1, 2, 5, 6]",1\n'
            'f.png,6,{oops,1\n')
    for name in "abcdef":
        _image(tmp_path, f"{name}.png")
    adapter = _adapter(tmp_path, table=_csv(tmp_path, "t.csv", text), kind="binary", labels=["A"],
                       columns={"path": "image", "patient": "patient", "boxes_json": "boxes"})
    parsed = adapter.read()
    assert {r["path"]: r["boxes"] for r in parsed.records.to_pylist()} == {
        "a.png": [[1.0, 2.0, 5.0, 6.0], [0.0, 0.0, 3.0, 3.0]], "b.png": [], "c.png": []}
    assert _rejects(parsed) == [("malformed_box", 5), ("malformed_box", 6), ("malformed_box", 7)]


def test_masks_from_rle(tmp_path: Path):
    text = "image,patient,rle,A\na.png,1,1 2 3 1,1\nb.png,2,-1,0\nc.png,3,,0\nd.png,4,1 2 3,1\ne.png,5,0 2|5 1,1\n"
    for name in "abcde":
        _image(tmp_path, f"{name}.png")
    adapter = _adapter(tmp_path, table=_csv(tmp_path, "t.csv", text), kind="binary", labels=["A"],
                       columns={"path": "image", "patient": "patient", "mask_rle": "rle"})
    parsed = adapter.read()
    masks = {r["path"]: r["mask_rle"] for r in parsed.records.to_pylist()}
    assert masks == {"a.png": "1 2 3 1", "b.png": "-1", "c.png": "-1", "e.png": "0 2|5 1"}
    assert _rejects(parsed) == [("malformed_mask", 5)]


def test_masks_from_mask_images_are_encoded_to_our_rle(tmp_path: Path):
    mask = np.zeros((6, 8), dtype=np.uint8)  # height 6, width 8
    mask[1:3, 2:5] = 255
    mask[5, 7] = 1
    for name in "abcd":
        _image(tmp_path, f"{name}.png")
    (tmp_path / "masks").mkdir()
    Image.fromarray(mask).save(tmp_path / "masks/a.png")
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "masks/b.png")
    (tmp_path / "masks/d.png").write_text("not an image")
    text = ("image,patient,mask,A\na.png,1,masks/a.png,1\nb.png,2,masks/b.png,0\nc.png,3,masks/none.png,1\n"
            "d.png,4,masks/d.png,1\ne.png,5,../a.png,1\n")
    _image(tmp_path, "e.png")
    adapter = _adapter(tmp_path, table=_csv(tmp_path, "t.csv", text), kind="binary", labels=["A"],
                       columns={"path": "image", "patient": "patient", "mask_path": "mask"})
    parsed = adapter.read()
    masks = {r["path"]: r["mask_rle"] for r in parsed.records.to_pylist()}
    assert sorted(masks) == ["a.png", "b.png"] and masks["b.png"] == "-1"
    np.testing.assert_array_equal(decode_rle(masks["a.png"], 6, 8), mask != 0)
    assert _rejects(parsed) == [("malformed_mask", 4), ("malformed_mask", 5), ("path_outside_root", 6)]


# --- the demo table -------------------------------------------------------------------------------


def _gz_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))


def test_the_demo_table_lists_the_test_splits_frontal_images_with_their_labels_as_written(tmp_path: Path):
    write_demo_mimic(tmp_path, n_studies=30, seed=3, image_size=32, dicom_fraction=0.3,
                     split_fractions={"train": 0.4, "validate": 0.2, "test": 0.4})
    path = write_label_table(tmp_path)
    assert path == tmp_path / "exports/labels.csv"
    jpg = tmp_path / "mimic-cxr-jpg/2.0.0"
    split = {r["dicom_id"]: r["split"] for r in _gz_rows(jpg / "mimic-cxr-2.0.0-split.csv.gz")}
    labels = {r["study_id"]: r for r in _gz_rows(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    expected = set()
    for row in _gz_rows(jpg / "mimic-cxr-2.0.0-metadata.csv.gz"):
        if split[row["dicom_id"]] == "test" and row["ViewPosition"] in ("PA", "AP"):
            study = labels[row["study_id"]]
            expected.add((row["dicom_id"], row["subject_id"], row["study_id"], row["ViewPosition"],
                          *(study[n] for n in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                                               "Pleural Effusion"))))
    data = path.read_bytes()
    assert b"\r" not in data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    got = {(r["dicom_id"], r["patient"], r["study"], r["view"], r["Atelectasis"], r["Cardiomegaly"],
            r["Consolidation"], r["Edema"], r["Pleural Effusion"]) for r in rows}
    assert got == expected and len(rows) == len(expected) > 5
    assert {"-1.0", ""} & {v for r in rows for v in r.values()}  # values as written, uncertain and blank too
    for row in rows:
        assert (tmp_path / row["image"]).is_file() and row["dicom_id"] in row["image"]
    assert [(int(r["patient"]), int(r["study"]), r["dicom_id"]) for r in rows] == sorted(
        (int(r["patient"]), int(r["study"]), r["dicom_id"]) for r in rows)
    write_label_table(tmp_path, "again.csv")
    assert (tmp_path / "again.csv").read_bytes() == data
