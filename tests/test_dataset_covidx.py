"""COVIDx adapter: list parsing from the right, rejects, binary labels, demo end to end, determinism."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from imitate.datasets import covidx
from imitate.datasets.base import DemoSpec

TRAIN, TEST = "train_COVIDx9A.txt", "test_COVIDx9A.txt"


def _lists(root: Path, train: list[str], test: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / TRAIN).write_text("".join(line + "\n" for line in train))
    (root / TEST).write_text("".join(line + "\n" for line in test))


def _by_line(parsed) -> dict[tuple[str, int], str]:
    return {(r["source"], r["line"]): r["reason"] for r in parsed.rejects.to_pylist()}


def test_handcrafted_lists_give_records_and_rejects_that_add_up(tmp_path: Path) -> None:
    _lists(tmp_path, [
        "COVID 1 COVID(1).png COVID-19 sirm",
        "3c5e1a2b-0001 3c5e1a2b-0001.png normal rsna",
        "",
        "12 1-s2.0-S0140-fx1_lrg.jpg pneumonia",
        "13 13.png influenza cohen",
        "14 notes.txt normal cohen",
        "COVID 1 COVID(1).png COVID-19 sirm",
        "15 COVID_1_.png COVID-19 sirm",
        "P7 P7-b.jpeg normal rsna",
        "16 16.png positive sirm",
    ], [
        "P7 P7-a.jpeg pneumonia rsna",
    ])
    parsed = covidx.Adapter("cv", tmp_path).read()

    assert parsed.n_input == 11 == parsed.records.num_rows + parsed.rejects.num_rows
    records = {r["key"]: r for r in parsed.records.to_pylist()}
    assert sorted(records) == ["test_P7-a", "train_3c5e1a2b-0001", "train_COVID_1_"]
    assert records["train_COVID_1_"]["patient_id"] == "COVID 1"
    assert records["train_COVID_1_"]["path"] == "train/COVID(1).png"
    assert records["train_COVID_1_"]["labels"] == [0.0, 0.0, 1.0] and records["train_COVID_1_"]["split"] is None
    assert records["train_3c5e1a2b-0001"]["labels"] == [1.0, 0.0, 0.0]
    test_row = records["test_P7-a"]
    assert (test_row["split"], test_row["path"], test_row["labels"]) == ("test", "test/P7-a.jpeg", [0.0, 1.0, 0.0])
    assert _by_line(parsed) == {
        (TRAIN, 3): "blank_line",
        (TRAIN, 4): "too_few_fields",  # a three-field line in a four-field list
        (TRAIN, 5): "unknown_label",
        (TRAIN, 6): "bad_filename",
        (TRAIN, 7): "duplicate_image",
        (TRAIN, 8): "duplicate_key",
        (TRAIN, 9): "patient_in_test_list",
        (TRAIN, 10): "unknown_label",
    }
    details = {r["line"]: r["detail"] for r in parsed.rejects.to_pylist()}
    assert "binary: true" in details[10] and "line 1" in details[7] and "COVID(1).png" in details[8]


def test_three_field_lists_and_binary_labels(tmp_path: Path) -> None:
    _lists(tmp_path, ["COVID 2 COVID(2).png COVID-19", "a a.png normal", "b b.png pneumonia"], ["c c.png COVID-19"])
    old = covidx.Adapter("cv", tmp_path, {"fields": 3, "binary": True}).read()
    assert covidx.Adapter("cv", tmp_path, {"binary": True}).label_names() == ("negative", "positive")
    labels = {r["key"]: r["labels"] for r in old.records.to_pylist()}
    assert labels == {"train_COVID_2_": [0.0, 1.0], "train_a": [1.0, 0.0], "train_b": [1.0, 0.0],
                      "test_c": [0.0, 1.0]}
    assert {r["patient_id"] for r in old.records.to_pylist()} == {"COVID 2", "a", "b", "c"}

    _lists(tmp_path, ["COVID 3 COVID(3).png positive sirm", "d d.png negative rsna"], ["e e.png positive ricord"])
    new = covidx.Adapter("cv", tmp_path, {"binary": True}).read()
    assert sorted(map(tuple, new.records["labels"].to_pylist())) == [(0.0, 1.0), (0.0, 1.0), (1.0, 0.0)]


def test_bad_options_and_missing_lists_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'fields' must be 3 or 4"):
        covidx.Adapter("cv", tmp_path, {"fields": 5})
    with pytest.raises(FileNotFoundError, match=TEST):
        covidx.Adapter("cv", tmp_path).read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("covidx_demo")
    covidx.Adapter("cv", root).write_demo(DemoSpec(n_images=80, seed=1, image_size=32))
    return root


def test_demo_is_in_the_real_format(demo: Path) -> None:
    train = (demo / TRAIN).read_text().splitlines()
    test = (demo / TEST).read_text().splitlines()
    assert len(train) + len(test) == 80 and 8 <= len(test) <= 16
    assert train[0].startswith("COVID 1 COVID(1).png COVID-19 sirm")
    assert {line.rsplit(" ", 2)[1] for line in train} == {"COVID-19", "normal", "pneumonia"}
    assert {line.rsplit(" ", 1)[1] for line in train} >= {"rsna", "sirm"}
    patients = {role: {line.rsplit(" ", 3)[0] for line in lines} for role, lines in (("train", train), ("test", test))}
    assert not patients["train"] & patients["test"]
    formats = Counter()
    for role, lines in (("train", train), ("test", test)):
        for line in lines:
            with Image.open(demo / role / line.rsplit(" ", 3)[1]) as image:
                formats[image.format] += 1
                assert min(image.size) == 32
    assert set(formats) == {"PNG", "JPEG"}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_demo_is_deterministic_and_follows_the_list_options(tmp_path: Path) -> None:
    options = {"fields": 3, "binary": True, "train_list": "train_COVIDx8B.txt", "test_list": "test_COVIDx8B.txt"}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        covidx.Adapter("cv", tmp_path / name, options).write_demo(DemoSpec(n_images=30, seed=seed, image_size=32))
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert (tmp_path / "a" / "train_COVIDx8B.txt").read_bytes() != (tmp_path / "c" / "train_COVIDx8B.txt").read_bytes()
    lines = (tmp_path / "a" / "train_COVIDx8B.txt").read_text().splitlines()
    assert {line.rsplit(" ", 1)[1] for line in lines} <= {"positive", "negative"}
    assert covidx.Adapter("cv", tmp_path / "a", options).read().rejects.num_rows == 0
