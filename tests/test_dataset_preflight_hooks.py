"""Every adapter's preflight hooks: the columns its raw CSVs must hold and the folders its images are in.

Checked against the real label files that torchxrayvision ships, read here with the csv module, not
with the preflight code. That each demo copy holds its own declared headers and image folders is part
of the adapter contract (tests/test_adapter_contract.py).
"""

import csv
import gzip
import importlib.util
import io
import zipfile
from pathlib import Path

import pytest

from imitate.datasets import load_adapter

# torchxrayvision (a test extra) ships the real label files: located, not imported (that loads torch)
XRV_DATA = Path(importlib.util.find_spec("torchxrayvision").origin).parent / "data"


def test_the_hooks_name_the_real_layouts():
    """What each adapter declares, written out by hand from the datasets' documented layouts."""
    def hooks(adapter, **options):
        dataset = load_adapter(adapter, {"adapter": adapter, "root": "/data", "options": options})
        return dataset.raw_headers(), dataset.image_dirs()

    headers, dirs = hooks("chexpert", directory="CheXpert-v1.0")
    assert dirs == ("CheXpert-v1.0/train", "CheXpert-v1.0/valid")
    assert headers["train"][:5] == ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA") and len(headers["valid"]) == 19
    assert hooks("chexpert_5x200")[1] == ("CheXpert-v1.0-small/train",)
    assert hooks("chexpert_5x200", reports="master.csv")[0]["reports"] == ("Path", "Report Impression")
    assert hooks("rsna") == ({"labels": ("patientId", "x", "y", "width", "height", "Target")},
                             ("stage_2_train_images",))
    assert hooks("siim", images="imgs") == ({"labels": ("ImageId", "EncodedPixels")}, ("imgs",))
    assert hooks("object_cxr") == ({"train": ("image_name", "annotation"), "dev": ("image_name", "annotation")},
                                   ("train", "dev"))
    assert hooks("covidx", train_dir="a", test_dir="b") == ({}, ("a", "b"))  # the lists have no header
    headers, dirs = hooks("chestxray14")
    assert list(headers) == ["labels"] and headers["labels"][0] == "Image Index"
    assert dirs[0] == "images_001/images" and dirs[-1] == "images_012/images" and len(dirs) == 12
    assert hooks("chestxray14", images="png")[1] == ("png",)
    assert hooks("mimic_5x200")[0]["split"] == ("dicom_id", "split")


def test_mimic_5x200_needs_one_image_tree(tmp_path):
    entry = {"adapter": "mimic_5x200", "root": tmp_path}
    assert load_adapter("m", entry).image_dirs() == ("mimic-cxr-jpg/2.0.0/files",)  # none there: the first
    (tmp_path / "mimic-cxr/2.0.0/files").mkdir(parents=True)
    assert load_adapter("m", entry).image_dirs() == ("mimic-cxr/2.0.0/files",)  # the DICOM tree alone will do


@pytest.mark.parametrize(("adapter", "role", "packed"), [
    ("chexpert", "train", "chexpert_train.csv.gz"),
    ("chexpert_5x200", "train", "chexpert_train.csv.gz"),
    ("rsna", "labels", "kaggle_stage_2_train_labels.csv.zip"),
    ("siim", "labels", "siim-pneumothorax-train-rle.csv.gz"),
    ("chestxray14", "labels", "Data_Entry_2017_v2020.csv.gz"),
])
def test_the_real_files_hold_the_declared_columns(adapter, role, packed):
    """The real header lines (SIIM's second name has a leading space; two NIH names hold commas)."""
    path = XRV_DATA / packed
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = archive.read(archive.namelist()[0]).decode()
    else:
        text = gzip.decompress(path.read_bytes()).decode()
    header = [name.strip() for name in next(csv.reader(io.StringIO(text.partition("\n")[0])))]
    columns = load_adapter(adapter, {"adapter": adapter, "root": "/data"}).raw_headers()[role]
    assert set(columns) <= set(header)
