"""A patient that a dataset's OFFICIAL split puts in two splits fails the dataset stage, naming it.

ChestX-ray14 is the adapter whose official lists reach the leakage check: its ``test_list.txt`` gives
the test split, ``train_val_list.txt`` the pool drawn into train/validate by patient. NIH split by
patient, so a patient with images on both lists means broken raw files; the stage must stop rather
than write a test set that shares a patient with training. (CheXpert and COVIDx reject such rows in
their adapters instead: ``patient_in_valid``, ``patient_in_test_list``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from imitate.datasets import load_adapter
from imitate.datasets.dataset import prepare_dataset
from imitate.datasets.splits import LeakageError

ROOT = Path(__file__).resolve().parents[1]
HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
NAME = "nih_leaky"  # the config's name for the dataset, unlike its adapter's: the message must name this one
LEAKER = "3"  # the Patient ID with one image on each official list
# the patient, and the split of each of its two images: the official test and whatever the pool gave
MESSAGE = re.compile(
    rf"dataset '{NAME}': 1 patient\(s\) in more than one split, e\.g\. {LEAKER} \(test/(train|validate)\)"
)


def write_chestxray14(root: Path) -> None:
    """Data_Entry (11 fields a row), the two official lists and one PNG per image, in the real layout."""
    # (Patient ID, follow-up): patient 3's follow-up 1 is on the test list, its follow-up 0 is not
    films = [(1, 0), (1, 1), (2, 0), (3, 0), (3, 1), (4, 0), (5, 0), (6, 0), (6, 1), (7, 0), (8, 0), (9, 0)]
    on_test = {(3, 1), (6, 0), (6, 1), (9, 0)}
    images = [
        (f"{patient:08d}_{follow_up:03d}.png", patient, (patient, follow_up) in on_test) for patient, follow_up in films
    ]
    rows = [f"{name},No Finding,{int(name[9:12])},{patient},50,F,PA,64,64,0.143,0.143" for name, patient, _ in images]
    (root / "Data_Entry_2017_v2020.csv").write_text(HEADER + "\n" + "".join(f"{r}\n" for r in rows))
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n, _, test in images if not test))
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n, _, test in images if test))
    folder = root / "images_001" / "images"
    folder.mkdir(parents=True)
    for name, _, _ in images:  # every image present: none may be dropped as image_missing, the leak with it
        Image.new("L", (64, 64), 128).save(folder / name)


@pytest.fixture
def leaky_root(tmp_path: Path) -> Path:
    root = tmp_path / "chestxray14"
    root.mkdir()
    write_chestxray14(root)
    return root


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_split_with_a_patient_on_both_lists_fails_naming_dataset_patient_and_splits(leaky_root, seed):
    adapter = load_adapter(NAME, {"adapter": "chestxray14", "root": leaky_root})
    with pytest.raises(LeakageError) as caught:
        prepare_dataset(adapter, seed=seed, fractions=[100])
    assert MESSAGE.search(str(caught.value)), str(caught.value)


def test_the_same_files_without_the_leak_prepare(leaky_root):
    """Control: with patient 3's test image moved to train_val the same files prepare, leak-free."""
    tests = (leaky_root / "test_list.txt").read_text().replace("00000003_001.png\n", "")
    (leaky_root / "test_list.txt").write_text(tests)
    with (leaky_root / "train_val_list.txt").open("a") as fh:
        fh.write("00000003_001.png\n")
    prepared = prepare_dataset(
        load_adapter(NAME, {"adapter": "chestxray14", "root": leaky_root}), seed=0, fractions=[100]
    )
    splits: dict[str, set[str]] = {}
    for patient, split in zip(
        prepared.records["patient_id"].to_pylist(), prepared.records["split"].to_pylist(), strict=True
    ):
        splits.setdefault(patient, set()).add(split)
    assert splits[LEAKER] != {"test"} and all(len(s) == 1 for s in splits.values())
    assert {p for p, s in splits.items() if s == {"test"}} == {"6", "9"}


def test_the_dataset_command_exits_non_zero_with_the_message_and_writes_nothing(leaky_root, tmp_path):
    out = tmp_path / "results" / "datasets" / NAME
    # the checkout this test runs from, so the command runs the code under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    args = [
        "dataset",
        NAME,
        "--adapter",
        "chestxray14",
        "--root",
        str(leaky_root),
        "--seed",
        "0",
        "--out-dir",
        str(out),
    ]
    run = subprocess.run(
        [sys.executable, "-m", "imitate", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert run.returncode != 0
    assert "LeakageError" in run.stderr and MESSAGE.search(run.stderr), run.stderr[-3000:]
    assert not out.exists() or not any(out.iterdir())  # no records, subsets or provenance record
