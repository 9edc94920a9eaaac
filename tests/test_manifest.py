"""build_manifest(): metadata x split x sections in DuckDB, image resolution, rejects and counts."""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from imitate.commands import manifest as manifest_command
from imitate.io.parquet import write_table
from imitate.manifest.build import REJECT_REASONS, build_manifest, write_manifest
from imitate.sections.extract import SECTIONS_SCHEMA
from imitate.sections.tokens import count_tokens

METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
TREES = [{"dir": "jpg/files", "ext": ".jpg"}, {"dir": "dcm/files", "ext": ".dcm"}]


def did(n: int) -> str:
    return "-".join(f"{n:08x}" for _ in range(5))


# (dicom_id, subject_id, study_id, view, split or None, image files present)
IMAGES = [
    (did(1), 10000001, 50000001, "PA", "train", ("jpg", "dcm")),
    (did(2), 10000001, 50000001, "LATERAL", "train", ("jpg",)),
    (did(3), 10000001, 50000001, "AP", "train", ("dcm",)),
    (did(4), 10000002, 50000002, "PA", "validate", ("jpg",)),
    (did(5), 10000003, 50000003, "PA", None, ("jpg",)),
    (did(6), 11000004, 50000004, "PA", "test", ("jpg",)),
    (did(7), 10000005, 50000005, "PA", "train", ("jpg",)),
    (did(8), 10000006, 50000006, "AP", "train", ("jpg",)),
    (did(9), 10000007, 50000007, "PA", "test", ()),
    (did(10), 10000008, 50000008, "", "train", ("jpg",)),
    (did(11), 10000009, 50000009, "PA", "train", ("jpg",)),
    (did(12), 10000010, 50000010, "AP", "train", ("jpg",)),
    ("bad.id", 10000010, 50000010, "AP", "train", ("jpg",)),
]
# study_id -> (findings, impression); study 50000005 has no sections row
SECTIONS = {
    50000001: ("The lungs are clear without effusion.", "No acute process."),
    50000002: ("Heart size is normal.", "Normal chest radiograph."),
    50000003: ("Heart size is normal.", "Normal chest radiograph."),
    50000004: ("Mild cardiomegaly is present.", "Cardiomegaly."),
    50000006: ("Clear.", "Ok."),
    50000007: ("Heart size is normal.", "Normal chest radiograph."),
    50000008: ("Heart size is normal.", "Normal chest radiograph."),
    50000009: ("Normal.", "No acute cardiopulmonary process."),
    50000010: ("Heart size is normal. Lungs are clear.", None),
}
SUBJECTS = {study: subject for _, subject, study, *_ in IMAGES}
EXPECTED_REJECTS = {
    did(2): "view_not_frontal",
    did(5): "no_split",
    did(7): "no_sections",
    did(8): "too_few_tokens",
    did(9): "image_file_missing",
    did(10): "view_not_frontal",
    "bad.id": "invalid_dicom_id",
}


def write_csv_gz(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "physionet"
    for dicom, subject, study, _, _, present in IMAGES:
        for tree in TREES:
            if tree["dir"].split("/")[0] in present:
                path = root / tree["dir"] / f"p{str(subject)[:2]}/p{subject}/s{study}/{dicom}{tree['ext']}"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"image")
    metadata = write_csv_gz(
        tmp_path / "metadata.csv.gz",
        METADATA_HEADER,
        [
            [
                d,
                subj,
                study,
                "CHEST (PA AND LAT)",
                view,
                3056,
                2544,
                21800506,
                80556.875,
                "CHEST (PA AND LAT)",
                "postero-anterior",
                "Erect",
            ]
            for d, subj, study, view, _, _ in IMAGES
        ],
    )
    split = write_csv_gz(
        tmp_path / "split.csv.gz",
        ["dicom_id", "study_id", "subject_id", "split"],
        [[d, study, subj, s] for d, subj, study, _, s, _ in IMAGES if s is not None],
    )
    rows = [
        {
            "subject_id": SUBJECTS[study],
            "study_id": study,
            "findings": f,
            "impression": i,
            "last_paragraph": None,
            "comparison": None,
            "has_findings": f is not None,
            "has_impression": i is not None,
            "n_tokens_findings": count_tokens(f),
            "n_tokens_impression": count_tokens(i),
            "path": f"s{study}.txt",
            "text_sha256": "0" * 64,
            "overridden": False,
        }
        for study, (f, i) in SECTIONS.items()
    ]
    sections = write_table(pa.Table.from_pylist(rows, schema=SECTIONS_SCHEMA), tmp_path / "sections.parquet")
    return {"sections": sections, "metadata": metadata, "split": split, "root": root}


def build(inputs: dict[str, Path], **kwargs: object):
    return build_manifest(**inputs, image_trees=TREES, **kwargs)


def test_images_and_rejects(inputs: dict[str, Path]) -> None:
    result = build(inputs)
    assert result.images.column_names == ["key", "dicom_id", "subject_id", "study_id", "view", "split", "path"]
    assert result.rejects.column_names == ["dicom_id", "subject_id", "study_id", "reason"]
    images = result.images.to_pylist()
    # ordered by (split, study_id, dicom_id); validate and test stay apart
    assert [(r["split"], r["dicom_id"]) for r in images] == [
        ("test", did(6)),
        ("train", did(1)),
        ("train", did(3)),
        ("train", did(11)),
        ("train", did(12)),
        ("validate", did(4)),
    ]
    assert all(r["key"] == r["dicom_id"] for r in images)
    paths = {r["dicom_id"]: r["path"] for r in images}
    assert paths[did(1)] == f"jpg/files/p10/p10000001/s50000001/{did(1)}.jpg"  # the first tree wins
    assert paths[did(3)] == f"dcm/files/p10/p10000001/s50000001/{did(3)}.dcm"
    assert paths[did(6)] == f"jpg/files/p11/p11000004/s50000004/{did(6)}.jpg"
    assert all((inputs["root"] / p).is_file() for p in paths.values())
    rejects = result.rejects.to_pylist()
    assert {r["dicom_id"]: r["reason"] for r in rejects} == EXPECTED_REJECTS
    assert next(r for r in rejects if r["dicom_id"] == did(5))["subject_id"] == 10000003
    assert did(1).startswith("00000001")  # ids read as text: no lost leading zeros


def test_studies_text_rules(inputs: dict[str, Path]) -> None:
    studies = build(inputs).studies
    assert studies.column_names == [
        "subject_id",
        "study_id",
        "split",
        "findings",
        "impression",
        "has_findings",
        "n_images",
    ]
    rows = {r["study_id"]: r for r in studies.to_pylist()}
    assert list(rows) == [50000001, 50000002, 50000004, 50000009, 50000010]
    assert rows[50000001] == {
        "subject_id": 10000001,
        "study_id": 50000001,
        "split": "train",
        "findings": "The lungs are clear without effusion.",
        "impression": "No acute process.",
        "has_findings": True,
        "n_images": 2,
    }
    # Findings below min_tokens are dropped, the Impression stays
    assert rows[50000009]["findings"] is None and not rows[50000009]["has_findings"]
    assert rows[50000009]["impression"] == "No acute cardiopulmonary process."
    # no Impression: the Findings take its place, and are not repeated as Findings
    assert rows[50000010]["impression"] == "Heart size is normal. Lungs are clear."
    assert rows[50000010]["findings"] is None and not rows[50000010]["has_findings"]


def test_mgca_text_mode(inputs: dict[str, Path]) -> None:
    rows = {r["study_id"]: r for r in build(inputs, text_mode="mgca").studies.to_pylist()}
    assert rows[50000001]["impression"] == "No acute process. The lungs are clear without effusion."
    assert rows[50000009]["impression"] == "No acute cardiopulmonary process. Normal."
    assert rows[50000010]["impression"] == "Heart size is normal. Lungs are clear."
    assert all(r["findings"] is None and not r["has_findings"] for r in rows.values())


def test_token_and_view_settings(inputs: dict[str, Path]) -> None:
    result = build(inputs, min_tokens=2, views=("PA", "AP", "LATERAL"))
    kept = set(result.images.column("dicom_id").to_pylist())
    assert {did(2), did(8)} <= kept
    study = next(r for r in result.studies.to_pylist() if r["study_id"] == 50000006)
    assert (study["findings"], study["impression"]) == (None, "Ok.")


def test_counts_add_up(inputs: dict[str, Path]) -> None:
    counts = build(inputs).counts
    assert counts["metadata_rows"] == len(IMAGES) == counts["images"] + counts["rejects"]
    assert counts["images"] == 6 and counts["studies"] == 5 and counts["studies_with_findings"] == 3
    assert set(counts["rejects_by_reason"]) == set(REJECT_REASONS)
    assert counts["rejects_by_reason"]["view_not_frontal"] == 2
    assert counts["rejects_by_reason"]["image_file_missing"] == 1
    assert counts["images_by_split"] == {"train": 4, "validate": 1, "test": 1}
    assert counts["studies_by_split"] == {"train": 3, "validate": 1, "test": 1}
    assert counts["images_by_tree"] == {"jpg/files/*.jpg": 5, "dcm/files/*.dcm": 1}


def test_written_bytes_are_deterministic(inputs: dict[str, Path], tmp_path: Path) -> None:
    blobs = []
    for run in ("a", "b"):
        paths = write_manifest(build(inputs), tmp_path / run)
        assert sorted(p.name for p in paths.values()) == [
            "counts.json",
            "images.parquet",
            "rejects.parquet",
            "studies.parquet",
        ]
        blobs.append({name: p.read_bytes() for name, p in paths.items()})
    assert blobs[0] == blobs[1]
    counts_text = (tmp_path / "a" / "counts.json").read_text()
    assert list(json.loads(counts_text)) == sorted(json.loads(counts_text))


def test_bad_inputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    dup = write_csv_gz(
        tmp_path / "dup.csv.gz",
        METADATA_HEADER[:5],
        [
            [did(1), 10000001, 50000001, "x", "PA"],
            [did(1), 10000001, 50000001, "x", "AP"],
        ],
    )
    with pytest.raises(ValueError, match=r"dup\.csv\.gz: dicom_id not unique"):
        build({**inputs, "metadata": dup})
    odd = write_csv_gz(
        tmp_path / "odd.csv.gz",
        ["dicom_id", "study_id", "subject_id", "split"],
        [
            [did(1), 50000001, 10000001, "valid"],
        ],
    )
    with pytest.raises(ValueError, match="unknown split"):
        build({**inputs, "split": odd})
    short = write_csv_gz(tmp_path / "short.csv.gz", ["dicom_id", "subject_id"], [[did(1), 1]])
    with pytest.raises(ValueError, match=r"short\.csv\.gz: missing column\(s\) \['ViewPosition', 'study_id'\]"):
        build({**inputs, "metadata": short})
    garbled = write_csv_gz(tmp_path / "garbled.csv.gz", METADATA_HEADER[:5], [[did(1), "p10", 1, "x", "PA"]])
    with pytest.raises(ValueError, match=r"garbled\.csv\.gz: cannot read"):
        build({**inputs, "metadata": garbled})
    with pytest.raises(FileNotFoundError):
        build({**inputs, "split": tmp_path / "none.csv.gz"})
    with pytest.raises(ValueError, match="relative"):
        build_manifest(**inputs, image_trees=[{"dir": "/abs", "ext": ".jpg"}])
    with pytest.raises(ValueError, match="text_mode"):
        build(inputs, text_mode="flat")


def test_command(inputs: dict[str, Path], tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    manifest_command.add_arguments(parser)
    out = tmp_path / "manifest"
    args = parser.parse_args(
        [
            "--sections",
            str(inputs["sections"]),
            "--metadata",
            str(inputs["metadata"]),
            "--split",
            str(inputs["split"]),
            "--root",
            str(inputs["root"]),
            "--image-tree",
            "jpg/files:.jpg",
            "--image-tree",
            "dcm/files:.dcm",
            "--out-dir",
            str(out),
        ]
    )
    assert manifest_command.main(args) == 0
    counts = json.loads((out / "counts.json").read_text())
    assert counts["images"] == 6
    assert (out / "images.parquet.provenance.json").is_file()
