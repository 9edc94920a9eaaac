"""The demo tree: real MIMIC-CXR layout, CSV conventions, report format, DICOM, determinism."""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from PIL import Image

from imitate.commands import demo_data
from imitate.demo.mimic import CHEXPERT_COLUMNS, METADATA_COLUMNS, SPLIT_COLUMNS, DemoCounts, write_demo_mimic
from imitate.sections.parser import section_text

SPLITS = {"train": 0.6, "validate": 0.2, "test": 0.2}
N_STUDIES, IMAGE_SIZE, SEED = 30, 96, 3

DICOM_ID = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}"
STUDY_DIR = r"p(1\d)/p(\1\d{6})/s(5\d{7})"
JPG_PATH = re.compile(rf"mimic-cxr-jpg/2\.0\.0/files/{STUDY_DIR}/({DICOM_ID})\.jpg")
DCM_PATH = re.compile(rf"mimic-cxr/2\.0\.0/files/{STUDY_DIR}/({DICOM_ID})\.dcm")
REPORT_PATH = re.compile(r"mimic-cxr-reports/files/p(1\d)/p(\1\d{6})/s(5\d{7})\.txt")
CSV_FILES = {f"mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-{name}.csv.gz" for name in ("metadata", "split", "chexpert")}


def _write(root: Path, *, n: int = N_STUDIES, size: int = IMAGE_SIZE, workers: int = 1, seed: int = SEED) -> DemoCounts:
    return write_demo_mimic(
        root, n_studies=n, seed=seed, image_size=size, dicom_fraction=0.3, split_fractions=SPLITS, workers=workers
    )


def _read_csv(root: Path, name: str) -> tuple[list[str], list[dict[str, str]]]:
    with gzip.open(root / f"mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-{name}.csv.gz", "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in _files(root)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoCounts]:
    root = tmp_path_factory.mktemp("demo") / "physionet.org" / "files"
    return root, _write(root)


def test_layout_and_file_names_follow_mimic(tree: tuple[Path, DemoCounts]) -> None:
    root, counts = tree
    images, reports = {}, set()
    for name in _files(root):
        if name in CSV_FILES:
            continue
        match = JPG_PATH.fullmatch(name) or DCM_PATH.fullmatch(name)
        if match:
            assert match.group(4) not in images, f"{match.group(4)} written twice"
            images[match.group(4)] = (int(match.group(2)), int(match.group(3)), name)
            continue
        match = REPORT_PATH.fullmatch(name)
        assert match, f"unexpected file {name}"
        reports.add((int(match.group(2)), int(match.group(3))))
    _, metadata = _read_csv(root, "metadata")
    assert {row["dicom_id"]: (int(row["subject_id"]), int(row["study_id"])) for row in metadata} == {
        k: v[:2] for k, v in images.items()
    }
    assert reports == {(int(r["subject_id"]), int(r["study_id"])) for r in metadata}
    n_dicom = sum(name.endswith(".dcm") for *_, name in images.values())
    assert counts == DemoCounts(
        n_subjects=len({s for s, _ in reports}),
        n_studies=N_STUDIES,
        n_images=len(images),
        n_jpg=len(images) - n_dicom,
        n_dicom=n_dicom,
        n_reports=len(reports),
        split_studies=counts.split_studies,
    )
    assert 0 < n_dicom < len(images)
    assert sum(counts.split_studies.values()) == N_STUDIES


def test_csv_headers_are_exact(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    assert tuple(_read_csv(root, "metadata")[0]) == METADATA_COLUMNS
    assert tuple(_read_csv(root, "split")[0]) == SPLIT_COLUMNS
    assert tuple(_read_csv(root, "chexpert")[0]) == CHEXPERT_COLUMNS
    assert METADATA_COLUMNS[:3] == ("dicom_id", "subject_id", "study_id")
    assert list(CHEXPERT_COLUMNS[2:]) == sorted(CHEXPERT_COLUMNS[2:])
    raw = gzip.decompress((root / "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz").read_bytes())
    assert raw.startswith(b"dicom_id,study_id,subject_id,split\n")


def test_metadata_values_follow_mimic_conventions(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    _, rows = _read_csv(root, "metadata")
    keys = [(int(r["subject_id"]), int(r["study_id"])) for r in rows]
    assert keys == sorted(keys)
    meaning = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
    for row in rows:
        assert re.fullmatch(r"1\d{7}", row["subject_id"]) and re.fullmatch(r"5\d{7}", row["study_id"])
        assert row["ViewCodeSequence_CodeMeaning"] == meaning[row["ViewPosition"]]
        assert row["PerformedProcedureStepDescription"] in ("CHEST (PA AND LAT)", "CHEST (PORTABLE AP)")
        assert row["ProcedureCodeSequence_CodeMeaning"] == row["PerformedProcedureStepDescription"]
        assert row["PatientOrientationCodeSequence_CodeMeaning"] in ("Erect", "Recumbent", "")
        assert re.fullmatch(r"2[1-2]\d{6}", row["StudyDate"])
        assert re.fullmatch(r"(0|[1-9]\d{0,5})\.\d{1,3}", row["StudyTime"]), row["StudyTime"]
        assert float(row["StudyTime"]) < 240000
        assert min(int(row["Rows"]), int(row["Columns"])) == IMAGE_SIZE
    assert {r["ViewPosition"] for r in rows} >= {"PA", "LATERAL"}


def test_rows_and_columns_are_the_real_image_sizes(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    for row in _read_csv(root, "metadata")[1]:
        study = f"p{row['subject_id'][:2]}/p{row['subject_id']}/s{row['study_id']}/{row['dicom_id']}"
        jpg = root / "mimic-cxr-jpg/2.0.0/files" / f"{study}.jpg"
        if jpg.exists():
            with Image.open(jpg) as image:
                assert image.mode == "L" and image.size == (int(row["Columns"]), int(row["Rows"]))
        else:
            ds = pydicom.dcmread(root / "mimic-cxr/2.0.0/files" / f"{study}.dcm")
            assert (ds.Rows, ds.Columns) == (int(row["Rows"]), int(row["Columns"]))
            assert ds.ViewPosition == row["ViewPosition"] and ds.PatientID == row["subject_id"]
            assert ds.StudyID == row["study_id"] and ds.StudyDate == row["StudyDate"]


def test_split_is_by_subject_and_covers_every_image(tree: tuple[Path, DemoCounts]) -> None:
    root, counts = tree
    _, metadata = _read_csv(root, "metadata")
    _, split = _read_csv(root, "split")
    assert sorted(r["dicom_id"] for r in split) == sorted(r["dicom_id"] for r in metadata)
    by_subject: dict[str, set[str]] = defaultdict(set)
    studies: dict[str, set[str]] = defaultdict(set)
    for row in split:
        by_subject[row["subject_id"]].add(row["split"])
        studies[row["split"]].add(row["study_id"])
    assert all(len(splits) == 1 for splits in by_subject.values())
    assert {name: len(ids) for name, ids in studies.items()} == {k: v for k, v in counts.split_studies.items() if v}
    assert set(studies) == set(SPLITS)


def test_chexpert_has_one_row_per_study_with_chexpert_values(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    _, rows = _read_csv(root, "chexpert")
    _, metadata = _read_csv(root, "metadata")
    keys = [(int(r["subject_id"]), int(r["study_id"])) for r in rows]
    assert keys == sorted(set(keys)) == sorted({(int(r["subject_id"]), int(r["study_id"])) for r in metadata})
    for row in rows:
        values = {k: v for k, v in row.items() if k not in ("subject_id", "study_id")}
        assert set(values.values()) <= {"1.0", "0.0", "-1.0", ""}
        assert values["No Finding"] in ("1.0", "")
        found = any(v in ("1.0", "-1.0") for k, v in values.items() if k not in ("No Finding", "Support Devices"))
        assert (values["No Finding"] == "1.0") == (not found)


def _last(text: str, name: str) -> str | None:
    """The last section called ``name`` as the project's (MIT-LCP reference) parser splits ``text``."""
    sections, names, _ = section_text(text)
    found = [section.strip() for section, n in zip(sections, names, strict=True) if n == name]
    return found[-1] if found else None


def _reports(root: Path) -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((root / "mimic-cxr-reports/files").rglob("*.txt"))}


def test_reports_are_formatted_like_mimic(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    for name, text in _reports(root).items():
        lines = text.split("\n")
        assert lines[0] == " " * 33 + "FINAL REPORT", name
        assert text.endswith("\n") and lines[-1] == ""
        for line in lines[1:-1]:
            assert line.startswith(" ") and len(line) <= 79, (name, line)
            assert not line.startswith("  ") or line.strip() == "", (name, line)
        assert "\n EXAMINATION:  CHEST (" in text
        assert "\n IMPRESSION: \n \n " in text
        assert "\n \n \n" not in text


def test_the_section_parser_finds_what_was_written(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    n_findings = 0
    for name, text in _reports(root).items():
        impression = _last(text, "impression")
        assert impression and "___" not in impression, name
        if "\n FINDINGS: \n" in text:
            n_findings += 1
            assert _last(text, "findings"), name
        else:
            assert _last(text, "findings") is None, name
    assert 0 < n_findings < len(_reports(root))


def test_positive_and_uncertain_labels_are_stated_in_the_impression(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    reports = _reports(root)
    words = {
        "Cardiomegaly": ("cardiomegaly", "enlarged"),
        "Pleural Effusion": ("effusion",),
        "Pneumothorax": ("pneumothorax",),
        "Consolidation": ("consolidation",),
        "Edema": ("edema",),
        "Atelectasis": ("atelectasis",),
        "Support Devices": ("tube", "line", "device", "catheter", "pacemaker"),
    }
    hedges = ("possibl", "cannot be excluded", "may ", "likely", "could", "concerning")
    for row in _read_csv(root, "chexpert")[1]:
        impression = (_last(reports[f"s{row['study_id']}"], "impression") or "").lower()
        for label, keys in words.items():
            if row[label] in ("1.0", "-1.0"):
                assert any(k in impression for k in keys), (row["study_id"], label, impression)
            if row[label] == "-1.0":
                assert any(h in impression for h in hedges), (row["study_id"], label, impression)


def test_dicom_files_read_back_with_mimic_like_headers(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    files = sorted((root / "mimic-cxr/2.0.0/files").rglob("*.dcm"))
    photometric = set()
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.Modality in ("CR", "DX") and str(ds.PatientName) == "___"
        assert ds.PatientID == path.parts[-3][1:] and ds.StudyID == path.parts[-2][1:]
        assert ds.BitsAllocated == 16 and 12 <= ds.BitsStored <= 16 and ds.HighBit == ds.BitsStored - 1
        pixels = ds.pixel_array
        assert pixels.shape == (ds.Rows, ds.Columns) and int(pixels.max()) < 2**ds.BitsStored
        assert pixels.std() > 0
        photometric.add(ds.PhotometricInterpretation)
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}


def test_same_arguments_give_identical_bytes_whatever_the_workers(tmp_path: Path) -> None:
    first = _write(tmp_path / "a" / "files", n=10, size=64)
    again = _write(tmp_path / "b" / "files", n=10, size=64)
    parallel = _write(tmp_path / "c" / "files", n=10, size=64, workers=2)
    assert first == again == parallel
    digests = _digests(tmp_path / "a" / "files")
    assert len(digests) == first.n_images + first.n_reports + 3
    assert digests == _digests(tmp_path / "b" / "files") == _digests(tmp_path / "c" / "files")
    other = _write(tmp_path / "d" / "files", n=10, size=64, seed=SEED + 1)
    assert _digests(tmp_path / "d" / "files") != digests and other.n_studies == first.n_studies


def test_csv_gzip_headers_carry_no_name_or_time(tree: tuple[Path, DemoCounts]) -> None:
    root, _ = tree
    for name in CSV_FILES:
        raw = (root / name).read_bytes()
        assert raw[:3] == b"\x1f\x8b\x08" and raw[3] == 0 and raw[4:8] == b"\x00\x00\x00\x00"


def test_a_non_empty_root_is_refused_unless_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / "stale.txt").write_text("old")
    with pytest.raises(FileExistsError, match="not empty"):
        _write(root, n=1, size=48)
    counts = write_demo_mimic(
        root, n_studies=1, seed=0, image_size=48, dicom_fraction=0.0, split_fractions={"train": 1.0}, overwrite=True
    )
    assert not (root / "stale.txt").exists() and counts.n_dicom == 0 and counts.split_studies["train"] == 1
    assert not root.with_name("files.partial").exists()


def test_a_failed_run_leaves_no_partial_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("imitate.demo.mimic.draw", broken)
    with pytest.raises(RuntimeError, match="drawing failed"):
        _write(tmp_path / "files", n=2, size=48)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split_fractions": {"train": 0.5, "test": 0.4}}, "summing to 1"),
        ({"split_fractions": {"train": 0.5, "val": 0.5}}, "subset"),
        ({"dicom_fraction": 1.5}, "dicom_fraction"),
        ({"n_studies": 0}, "n_studies"),
        ({"image_size": 8}, "image_size"),
    ],
)
def test_bad_arguments_are_rejected_with_the_reason(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"n_studies": 2, "seed": 0, "image_size": 48, "dicom_fraction": 0.1, "split_fractions": SPLITS}
    with pytest.raises(ValueError, match=message):
        write_demo_mimic(tmp_path / "files", **{**arguments, **kwargs})
    assert not (tmp_path / "files").exists()


def test_command_writes_the_tree_with_config_defaults(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    demo_data.add_arguments(parser)
    defaults = parser.parse_args([str(tmp_path)])
    assert (defaults.n_studies, defaults.seed, defaults.image_size, defaults.dicom_fraction) == (1500, 0, 384, 0.15)
    assert defaults.split_fractions == {"train": 0.7, "validate": 0.1, "test": 0.2}
    out = tmp_path / "physionet.org" / "files"
    args = parser.parse_args([str(out), "--n-studies", "3", "--image-size", "48", "--split-fractions", "1,0,0"])
    assert demo_data.main(args) == 0
    _, rows = _read_csv(out, "split")
    assert {r["split"] for r in rows} == {"train"}
    # the downstream label table lists the test split's frontal images: none here, its header only
    header = "image,patient,study,dicom_id,view,Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion\n"
    assert (out / "exports/labels.csv").read_text(encoding="utf-8") == header
    assert (out / "exports/labels.csv.provenance.json").is_file()
    with pytest.raises(SystemExit):
        parser.parse_args([str(out), "--split-fractions", "0.5,0.5"])
