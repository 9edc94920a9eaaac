"""NIH ChestX-ray14 adapter: Data_Entry (2017 and v2020) + split lists -> records; demo; the real Data_Entry."""

import csv
import gzip
import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.chestxray14 import LABELS, Adapter, parse_findings

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
XRV = importlib.util.find_spec("torchxrayvision")  # its wheel (test extra) ships the real file; not imported
REAL_ENTRY = Path(XRV.origin).parent / "data" / "Data_Entry_2017_v2020.csv.gz"


def _adapter(root: Path, **options) -> Adapter:
    return load_adapter("nih", {"adapter": "chestxray14", "root": root, "options": options})


def _write(root: Path, name: str, rows: list[str], train_val: list[str], test: list[str], header: str = HEADER):
    (root / name).write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in train_val))
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n in test) + "\n")


def test_parse_findings():
    assert parse_findings("No Finding") == ([0.0] * 14, None)
    targets, problem = parse_findings("Cardiomegaly|Emphysema")
    assert problem is None and [LABELS[i] for i, v in enumerate(targets) if v] == ["Cardiomegaly", "Emphysema"]
    assert parse_findings("Mass|Tumour") == (None, ("unknown_label", "Tumour"))
    assert parse_findings("No Finding|Mass")[1][0] == "no_finding_with_findings"
    assert parse_findings("")[1][0] == "missing_labels"


def test_rows_get_official_splits_and_bad_rows_are_rejected(tmp_path):
    rows = [
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",  # line 2
        "00000001_001.png,No Finding,1,1,58,M,PA,2894,2729,0.143,0.143",
        "00000002_000.png,Hernia|Mass,0,2,81,F,AP,2500,2048,0.168,0.168",  # line 4
        "00000003_000.png,Effusion,0,3,74,F,PA,2500,2048,0.168,0.168",  # in neither list
        "00000004_000.png,Effusion,0,4,74,F,PA,2500,2048,0.168,0.168",  # line 6: in both lists
        "00000005_000.png,Lump,0,5,74,F,PA,2500,2048,0.168,0.168",
        "00000006_000.png,Effusion,0,6,74,F,PA,2500",  # line 8
        "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143",
        "00000007.000.png,Effusion,0,7,74,F,PA,2500,2048,0.168,0.168",  # line 10
        "00000008_000.png,Effusion,0,,74,F,PA,2500,2048,0.168,0.168",
    ]
    names = [r.split(",")[0] for r in rows]
    _write(tmp_path, "Data_Entry_2017_v2020.csv", rows, train_val=names[:2] + names[4:] + ["99_000.png"],
           test=[names[2], names[4]])
    folder = tmp_path / "images_005" / "images"
    folder.mkdir(parents=True)
    Image.new("L", (4, 4)).save(folder / "00000001_000.png")
    parsed = _adapter(tmp_path).read()
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["00000001_000", "00000001_001", "00000002_000"]
    assert records["00000001_000"]["path"] == "images_005/images/00000001_000.png"
    assert records["00000001_001"]["path"] == "images_001/images/00000001_001.png"  # no file: prepare rejects it
    assert [records[k]["split"] for k in sorted(records)] == [None, None, "test"]
    assert records["00000002_000"]["labels"] == [float(n in ("Mass", "Hernia")) for n in LABELS]
    assert records["00000001_000"]["patient_id"] == "1"
    rejects = {(r["key"], r["line"], r["reason"]) for r in parsed.rejects.to_pylist()}
    assert rejects == {
        ("00000003_000", 5, "not_in_split_lists"), ("00000004_000", 6, "in_both_split_lists"),
        ("00000005_000", 7, "unknown_label"), ("00000006_000", 8, "malformed_row"),
        ("00000001_000", 9, "duplicate_image"), ("00000007.000", 10, "invalid_image_index"),
        ("00000008_000", 11, "missing_patient_id"),
    }
    assert parsed.n_input == 10 == parsed.records.num_rows + parsed.rejects.num_rows


def test_2017_file_with_trailing_commas_reads_the_same(tmp_path):
    rows = ["00000001_000.png,Cardiomegaly|Emphysema,0,1,58,M,PA,2682,2749,0.143,0.143",
            "00000002_000.png,No Finding,0,2,81,F,AP,2500,2048,0.168,0.168"]
    _write(tmp_path, "Data_Entry_2017_v2020.csv", rows, train_val=["00000001_000.png"], test=["00000002_000.png"])
    _write(tmp_path, "Data_Entry_2017.csv", [r + "," for r in rows], train_val=["00000001_000.png"],
           test=["00000002_000.png"], header=HEADER + ",")
    v2020 = _adapter(tmp_path).read().records
    original = _adapter(tmp_path, labels="Data_Entry_2017.csv").read().records
    assert original.num_rows == 2 and original.equals(v2020)


def test_bad_header_and_missing_lists_are_clear_errors(tmp_path):
    _write(tmp_path, "Data_Entry_2017_v2020.csv", [], [], [], header="Image,Labels")
    with pytest.raises(ValueError, match=r"Data_Entry_2017_v2020\.csv: header"):
        _adapter(tmp_path).read()
    (tmp_path / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_list\.txt"):
        _adapter(tmp_path).read()


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nih")
    _adapter(root).write_demo(DemoSpec(n_images=30, seed=0, image_size=48))
    return root


def test_demo_data_entry_has_the_real_layout(demo_root):
    with (demo_root / "Data_Entry_2017_v2020.csv").open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert ",".join(header) == HEADER and {len(r) for r in rows} == {11}
    assert {r[6] for r in rows} <= {"PA", "AP"} and {r[5] for r in rows} <= {"M", "F"}
    for name, _, follow_up, patient, *_ in rows:
        assert name == f"{int(patient):08d}_{int(follow_up):03d}.png"
    test = set((demo_root / "test_list.txt").read_text().split())
    train_val = set((demo_root / "train_val_list.txt").read_text().split())
    assert test and train_val and not test & train_val and test | train_val == {r[0] for r in rows}
    test_patients = {r[3] for r in rows if r[0] in test}
    assert not test_patients & {r[3] for r in rows if r[0] in train_val}
    assert "No Finding" in {r[1] for r in rows} and len({r[1] for r in rows}) > 3


def test_real_data_entry_labels(tmp_path):
    text = gzip.decompress(REAL_ENTRY.read_bytes()).decode()
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(text)
    rows = [line.split(",", 2) for line in text.splitlines()[1:]]
    # the official lists are not shipped: any split of the names will do
    (tmp_path / "train_val_list.txt").write_text("\n".join(name for name, *_ in rows[1000:]))
    (tmp_path / "test_list.txt").write_text("\n".join(name for name, *_ in rows[:1000]))
    parsed = _adapter(tmp_path).read()
    assert parsed.n_input == parsed.records.num_rows == 112_120 and parsed.rejects.num_rows == 0
    labels = parsed.records["labels"].combine_chunks().flatten().to_numpy().reshape(-1, len(LABELS))
    no_finding = sum(findings == "No Finding" for _, findings, _ in rows)
    assert (labels.sum(axis=1) == 0).sum() == no_finding == 60_361
    per_label = dict(zip(LABELS, labels.sum(axis=0).astype(int).tolist(), strict=True))
    assert per_label["Infiltration"] == 19_894 and per_label["Hernia"] == 227 and per_label["Pneumonia"] == 1_431
    assert parsed.records["split"].to_pylist().count("test") == 1000
    assert len(set(parsed.records["patient_id"].to_pylist())) == 30_805
