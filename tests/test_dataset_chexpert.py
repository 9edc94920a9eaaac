"""CheXpert and CheXpert 5x200 adapters: parsing, rejects, uncertainty policy, 5x200, demo, real labels."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest
from PIL import Image

from imitate.datasets import chexpert, chexpert_5x200
from imitate.datasets.base import DemoSpec
from imitate.datasets.chexpert_5x200 import read_reports, select_five_by_200
from imitate.datasets.chexpert_csv import COLUMNS, COMPETITION_LABELS, OBSERVATIONS, read_label_file
from imitate.datasets.dataset import prepare_dataset

TOP = "CheXpert-v1.0-small"
# torchxrayvision (a test extra) ships the real label file: located, not imported (that loads torch); a
# missing test extra fails here, at collection, rather than skipping
XRV_DATA = Path(importlib.util.find_spec("torchxrayvision").origin).parent / "data"
PER_CLASS = 6
DEMO = DemoSpec(n_images=220, seed=3, image_size=32)


def _row(path: str, view: str = "Frontal", **values: str) -> list[str]:
    """A train.csv row; ``values`` by observation name with spaces as underscores (blank otherwise)."""
    given = {name.replace("_", " "): value for name, value in values.items()}
    assert set(given) <= set(OBSERVATIONS)
    return [f"{TOP}/{path}", "Female", "60", view, "AP" if view == "Frontal" else "",
            *(given.get(o, "") for o in OBSERVATIONS)]


def _write(root: Path, name: str, rows: list[list[str]]) -> None:
    path = root / TOP / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def _reasons(rejects) -> dict[tuple[str, int], str]:
    rows = rejects.to_pylist()
    return {(r["source"].rsplit("/", 1)[1], r["line"]): r["reason"] for r in rows}


def test_handcrafted_files_give_records_and_rejects_that_add_up(tmp_path: Path) -> None:
    _write(tmp_path, "train.csv", [
        _row("train/patient00001/study1/view1_frontal.jpg", Atelectasis="1.0", Cardiomegaly="-1.0"),
        _row("train/patient00001/study1/view2_lateral.jpg", "Lateral", Atelectasis="1.0"),
        _row("train/patient00002/study1/view1_frontal.jpg", Edema="2.0"),
        _row("train/patient00003/study1/view1_frontal.jpg")[:10],
        _row("train/patient00004/view1_frontal.jpg"),
        _row("train/patient00005/study1/view1_frontal.jpg", "Oblique"),
        _row("train/patient00001/study1/view1_frontal.jpg", Edema="1.0"),
        _row("train/patient00009/study1/view1_frontal.jpg"),
    ])
    _write(tmp_path, "valid.csv", [
        _row("valid/patient00009/study1/view1_frontal.jpg", Edema="1.0"),
        _row("valid/patient00010/study1/view2_lateral.jpg", "Lateral"),
    ])
    parsed = chexpert.Adapter("cx", tmp_path, {"exclude_5x200": False}).read()

    assert parsed.n_input == 10 == parsed.records.num_rows + parsed.rejects.num_rows
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["patient00001_study1_view1_frontal", "patient00009_study1_view1_frontal"]
    first = records["patient00001_study1_view1_frontal"]
    assert first["split"] is None and first["patient_id"] == "patient00001"
    assert first["path"] == f"{TOP}/train/patient00001/study1/view1_frontal.jpg"
    assert first["labels"] == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert records["patient00009_study1_view1_frontal"]["split"] == "test"
    assert _reasons(parsed.rejects) == {
        ("train.csv", 3): "not_frontal",
        ("train.csv", 4): "bad_label_value",
        ("train.csv", 5): "wrong_field_count",
        ("train.csv", 6): "bad_path",
        ("train.csv", 7): "bad_view",
        ("train.csv", 8): "duplicate_image",
        ("train.csv", 9): "patient_in_valid",
        ("valid.csv", 3): "not_frontal",
    }
    detail = parsed.rejects.filter(pc.equal(parsed.rejects["reason"], "bad_label_value"))["detail"][0].as_py()
    assert "Edema" in detail and "2.0" in detail


def test_uncertainty_policy_is_per_label_and_configurable(tmp_path: Path) -> None:
    uncertain = dict.fromkeys([label.replace(" ", "_") for label in COMPETITION_LABELS], "-1.0")
    _write(tmp_path, "train.csv", [
        _row("train/patient00001/study1/view1_frontal.jpg", **uncertain, Pneumothorax="-1.0"),
        _row("train/patient00002/study1/view1_frontal.jpg"),
        _row("train/patient00003/study1/view1_frontal.jpg", Cardiomegaly="1.0", Edema="0.0", Consolidation="1"),
    ])
    _write(tmp_path, "valid.csv", [])
    parsed = chexpert.Adapter("cx", tmp_path, {"exclude_5x200": False}).read()
    labels = {r["key"][:12]: r["labels"] for r in parsed.records.to_pylist()}
    # Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion: U-Ones, U-Zeros, U-Zeros, U-Ones, U-Ones
    assert labels == {"patient00001": [1, 0, 0, 1, 1], "patient00002": [0] * 5, "patient00003": [0, 1, 1, 0, 0]}

    swapped = chexpert.Adapter("cx", tmp_path, {
        "exclude_5x200": False, "labels": ["Edema", "Pneumothorax"],
        "uncertain_ones": ["Pneumothorax"], "uncertain_zeros": ["Edema"],
    })
    assert swapped.read().records["labels"][0].as_py() == [0.0, 1.0]


@pytest.mark.parametrize(("options", "message"), [
    ({"labels": ["Edema", "Fracture"]}, "neither"),
    ({"labels": ["Edema", "Lung Nodule"]}, "unknown observation"),
    ({"uncertain_zeros": ["Edema", "Cardiomegaly", "Consolidation"]}, "both"),
    ({"per_clas": 3}, "unknown option"),
])
def test_bad_options_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chexpert.Adapter("cx", tmp_path, options)


def test_missing_file_or_column_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train\.csv"):
        chexpert.Adapter("cx", tmp_path).read()
    (tmp_path / TOP).mkdir()
    (tmp_path / TOP / "train.csv").write_text("Path,Sex,Age\n")
    with pytest.raises(ValueError, match=r"train\.csv: not a CheXpert label file.*Frontal/Lateral"):
        chexpert.Adapter("cx", tmp_path).read()


def test_five_by_200_takes_single_certain_findings_only(tmp_path: Path) -> None:
    rows = [
        _row("train/patient00001/study1/view1_frontal.jpg", Atelectasis="1.0", No_Finding="1.0"),
        _row("train/patient00002/study1/view1_frontal.jpg", Atelectasis="1.0", Pneumonia="-1.0"),
        _row("train/patient00003/study1/view1_frontal.jpg", Atelectasis="1.0", Fracture="0.0"),
        _row("train/patient00004/study1/view1_frontal.jpg", Cardiomegaly="1.0", Support_Devices="0.0"),
        _row("train/patient00005/study1/view1_frontal.jpg", Consolidation="1.0"),
        _row("train/patient00006/study1/view1_frontal.jpg", Edema="1.0"),
        _row("train/patient00007/study1/view1_frontal.jpg", Pleural_Effusion="1.0", Atelectasis="0.0"),
        _row("train/patient00008/study1/view1_frontal.jpg", Edema="1.0", Cardiomegaly="1.0"),
        _row("train/patient00009/study1/view1_frontal.jpg", Atelectasis="-1.0"),
        _row("train/patient00010/study1/view2_lateral.jpg", "Lateral", Edema="1.0"),
        _row("train/patient00011/study1/view1_frontal.jpg", Lung_Opacity="1.0", Consolidation="1.0"),
    ]
    _write(tmp_path, "train.csv", rows)
    parsed = chexpert_5x200.Adapter("fx", tmp_path, {"per_class": 1}).read()

    assert parsed.n_input == len(rows) == parsed.records.num_rows + parsed.rejects.num_rows
    records = {r["key"][:12]: r for r in parsed.records.to_pylist()}
    assert {k: COMPETITION_LABELS[r["labels"].index(1.0)] for k, r in records.items()} == {
        next(k for k in ("patient00001", "patient00003") if k in records): "Atelectasis",
        "patient00004": "Cardiomegaly", "patient00005": "Consolidation", "patient00006": "Edema",
        "patient00007": "Pleural Effusion",
    }
    assert all(sum(r["labels"]) == 1 and r["split"] == "test" and r["text"] is None for r in records.values())
    reasons = {r["key"][:12]: r["reason"] for r in parsed.rejects.to_pylist()}
    assert reasons.pop("patient00002") == "other_observation_not_negative"  # an uncertain Pneumonia excludes it
    assert reasons.pop("patient00011") == "other_observation_not_negative"
    assert reasons.pop("patient00008") == "several_classes_positive"
    assert reasons.pop("patient00009") == "no_class_positive"
    assert reasons.pop("patient00010") == "not_frontal"
    assert list(reasons.values()) == ["not_selected"]  # the Atelectasis candidate not drawn

    with pytest.raises(ValueError, match=r"only 1 frontal images qualify for 5x200 class 'Cardiomegaly'"):
        chexpert_5x200.Adapter("fx", tmp_path, {"per_class": 2}).read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chexpert_demo")
    chexpert_5x200.Adapter("fx", root, {"reports": "master_updated.csv"}).write_demo(DEMO)
    return root


def test_five_by_200_draw_is_seeded_and_independent_of_row_order(demo: Path) -> None:
    rows = read_label_file(demo, TOP, "train.csv").rows
    first = select_five_by_200(rows, PER_CLASS, 0, "train.csv").selected
    assert len(first) == 5 * PER_CLASS
    assert Counter(first.values()) == dict.fromkeys(COMPETITION_LABELS, PER_CLASS)
    assert select_five_by_200(rows[::-1], PER_CLASS, 0, "train.csv").selected == first
    assert select_five_by_200(rows, PER_CLASS, 1, "train.csv").selected != first


def test_exclude_5x200_removes_exactly_the_5x200_images(demo: Path) -> None:
    options = {"per_class": PER_CLASS, "five_by_200_seed": 2}
    five = chexpert_5x200.Adapter("fx", demo, options).read()
    held = chexpert.Adapter("cx", demo, options).read()
    kept_all = chexpert.Adapter("cx", demo, {**options, "exclude_5x200": False}).read()

    held_out = held.rejects.filter(pc.equal(held.rejects["reason"], "held_out_5x200"))["key"].to_pylist()
    assert sorted(held_out) == sorted(five.records["key"].to_pylist())
    assert len(held_out) == 5 * PER_CLASS
    assert set(kept_all.records["key"].to_pylist()) == set(held.records["key"].to_pylist()) | set(held_out)


def test_demo_is_in_the_real_format_and_labels_follow_the_drawing(demo: Path) -> None:
    train = list(csv.DictReader((demo / TOP / "train.csv").open()))
    valid = list(csv.DictReader((demo / TOP / "valid.csv").open()))
    assert len(train) + len(valid) == DEMO.n_images
    assert 0.08 < len(valid) / DEMO.n_images < 0.16
    assert {v for row in valid for o, v in row.items() if o in OBSERVATIONS} == {"0.0", "1.0"}
    assert {v for row in train for o, v in row.items() if o in OBSERVATIONS} == {"", "0.0", "1.0", "-1.0"}
    laterals = [row for row in train if row["Frontal/Lateral"] == "Lateral"]
    assert laterals and all(row["AP/PA"] == "" for row in laterals)
    assert {row["AP/PA"] for row in train if row["Frontal/Lateral"] == "Frontal"} == {"AP", "PA"}
    patient = lambda row: row["Path"].split("/")[2]  # noqa: E731
    assert not {patient(r) for r in train} & {patient(r) for r in valid}
    studies = Counter(patient(r) for r in {r["Path"].rsplit("/", 1)[0]: r for r in train}.values())
    assert max(studies.values()) >= 2
    for row in train + valid:
        drawn = [o for o in (*COMPETITION_LABELS, "Pneumothorax") if row[o] in ("1.0", "-1.0")]
        assert (row["No Finding"] == "1.0") == (not drawn)
        with Image.open(demo / row["Path"]) as image:
            assert image.format == "JPEG" and min(image.size) == DEMO.image_size


def test_five_by_200_demo_with_reports(demo: Path) -> None:
    adapter = chexpert_5x200.Adapter("fx", demo, {"per_class": PER_CLASS, "reports": "master_updated.csv"})
    prepared = prepare_dataset(adapter, seed=0, fractions=[100], split_draw=None)
    assert prepared.counts()["by_split"] == {"test": 5 * PER_CLASS}
    for labels, text in zip(prepared.records["labels"].to_pylist(), prepared.records["text"].to_pylist(),
                            strict=True):
        assert COMPETITION_LABELS[labels.index(1.0)].lower() in text.lower()


def test_report_file_problems_are_errors(tmp_path: Path) -> None:
    reports = tmp_path / "reports.csv"
    reports.write_text("Path,Impression\na.jpg,x\n")
    with pytest.raises(ValueError, match="Report Impression"):
        read_reports(reports)
    reports.write_text("Path,Report Impression\na.jpg,x\n")
    with pytest.raises(ValueError, match=r"line 2: Path 'a\.jpg' is not"):
        read_reports(reports)
    image = "train/patient00001/study1/view1_frontal.jpg"
    reports.write_text(f"Path,Report Impression\nCheXpert-v1.0/{image},x\nCheXpert-v1.0-small/{image},y\n")
    with pytest.raises(ValueError, match=r"line 3: .* has two different reports"):
        read_reports(reports)
    reports.write_text(f"Path,Report Impression\nCheXpert-v1.0/{image},x\n")
    assert read_reports(reports) == {"patient00001_study1_view1_frontal": "x"}


def test_real_chexpert_train_labels(tmp_path: Path) -> None:
    """The real train.csv (shipped by torchxrayvision; not vendored here) read with the default options."""
    packed = XRV_DATA / "chexpert_train.csv.gz"
    (tmp_path / TOP).mkdir()
    with gzip.open(packed, "rb") as source, (tmp_path / TOP / "train.csv").open("wb") as target:
        shutil.copyfileobj(source, target)
    (tmp_path / TOP / "valid.csv").write_text(",".join(COLUMNS) + "\n")

    parsed = chexpert.Adapter("cx", tmp_path).read()
    reasons = Counter(parsed.rejects["reason"].to_pylist())
    with (tmp_path / TOP / "train.csv").open(newline="") as handle:
        header, *rows = csv.reader(handle)
    path, view, cardiomegaly, edema = (header.index(c) for c in ("Path", "Frontal/Lateral", "Cardiomegaly", "Edema"))
    lateral = sum(row[view] == "Lateral" for row in rows)
    assert parsed.n_input == len(rows) == 223_414
    assert reasons == {"not_frontal": lateral, "held_out_5x200": 1000}
    assert parsed.records.num_rows == len(rows) - lateral - 1000

    held = set(parsed.rejects.filter(pc.equal(parsed.rejects["reason"], "held_out_5x200"))["key"].to_pylist())
    kept = [r for r in rows if r[view] == "Frontal" and "_".join(r[path][:-4].split("/")[-3:]) not in held]
    labels = pc.list_flatten(parsed.records["labels"]).to_numpy().reshape(-1, len(COMPETITION_LABELS))
    assert labels[:, 3].sum() == sum(r[edema] in ("1.0", "-1.0") for r in kept)  # Edema: U-Ones
    assert labels[:, 1].sum() == sum(r[cardiomegaly] == "1.0" for r in kept)  # Cardiomegaly: U-Zeros
