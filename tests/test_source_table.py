"""data.source: table: a table of images and reports -> reports per study, manifest rows and rejects.

Expectations are written by hand: each bad row's reason, the sectioned texts and their token counts,
the hashed ids (SHA-256 computed here from its definition).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from imitate.cli import main as cli
from imitate.commands import source_table as source_command
from imitate.io.table_paths import path_key
from imitate.manifest.build import build_manifest
from imitate.preflight.checks import Plan, check_headers, check_raw_files
from imitate.preflight.sources import data_sources
from imitate.report.counts import StageCount, sections_count, source_count
from imitate.sections.texts import section_texts
from imitate.source.read import Columns
from imitate.source.table import build_source, write_source
from tests.helpers.workflow import ROOT, TINY

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 FINDINGS:

 The lungs are clear.  No pleural effusion.

 IMPRESSION:

 No acute cardiopulmonary process.
"""
NO_SECTIONS = "FINAL REPORT\n\n"  # neither Findings, Impression nor a last paragraph
ONLY_IMPRESSION = " FINAL REPORT\n IMPRESSION:  Heart size is normal.\n"
COLUMNS = {"path": "file", "patient": "patient", "study": "study", "image": "image", "view": "view",
           "split": "split", "report": "report"}
HEADER = ["image", "patient", "study", "view", "split", "file", "report"]
# (image, patient, study, view, split, file, report) -> the reason expected by hand (None: kept)
ROWS = [
    (("i1", "1", "100", "PA", "train", "img/a.jpg", REPORT), None),
    (("i2", "1", "100", "LATERAL", "train", "img/b.jpg", REPORT), None),
    (("i3", "", "101", "PA", "train", "img/c.jpg", REPORT), "missing_patient"),
    (("i4", "2", "", "PA", "train", "img/d.jpg", REPORT), "missing_study"),
    (("i5", "2", "102", "PA", "train", "", REPORT), "missing_path"),
    (("i6", "2", "102", "PA", "train", "../outside.jpg", REPORT), "path_outside_root"),
    (("i7", "2", "102", "PA", "train", "/elsewhere/x.jpg", REPORT), "path_outside_root"),
    (("dup", "3", "103", "PA", "test", "img/e.jpg", REPORT), "duplicate_image"),
    (("dup", "3", "103", "PA", "test", "img/f.jpg", REPORT), "duplicate_image"),
    (("i10", "4", "104", "PA", "test", "img/g.jpg", REPORT), "study_patient_conflict"),
    (("i11", "5", "104", "PA", "test", "img/h.jpg", REPORT), "study_patient_conflict"),
    (("i12", "6", "105", "PA", "test", "img/i.jpg", REPORT), "study_report_conflict"),
    (("i13", "6", "105", "PA", "test", "img/j.jpg", ONLY_IMPRESSION), "study_report_conflict"),
    (("i14", "7", "106", "PA", "train", "img/k.jpg", REPORT), "study_split_conflict"),
    (("i15", "7", "106", "AP", "test", "img/l.jpg", REPORT), "study_split_conflict"),
    (("i16", "8", "107", "AP", "validate", "img/m.jpg", NO_SECTIONS), None),
    (("i17", "9", "108", "PA", "holdout", "img/n.jpg", ONLY_IMPRESSION), None),
    (("i18", "10", "109", "PA", "train", "img/missing.jpg", REPORT), None),
]


def write_csv(path: Path, header: list[str], rows: list[tuple[str, ...]]) -> Path:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([header, *rows])
    path.write_text(text.getvalue(), encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    for name in "abcdefghijklmn":
        (root / "img" / f"{name}.jpg").write_bytes(b"jpeg")
    write_csv(root / "table.csv", HEADER, [row for row, _ in ROWS])
    return root


def test_every_row_lands_in_the_rows_or_the_rejects_with_its_reason(root: Path) -> None:
    result = build_source(root / "table.csv", root=root, columns=Columns.from_mapping(COLUMNS))
    rejects = dict(zip(result.rejects["row"].to_pylist(), result.rejects["reason"].to_pylist(), strict=True))
    expected = {i: reason for i, (_, reason) in enumerate(ROWS, start=1) if reason}
    assert rejects == expected
    assert result.metadata["row"].to_pylist() == [i for i, (_, reason) in enumerate(ROWS, start=1) if not reason]
    assert result.counts["rows"] == len(ROWS) == result.counts["images"] + result.counts["rejects"]
    assert result.counts["rejects_by_reason"]["path_outside_root"] == 2
    # the reject names the bad row's own cells
    assert result.rejects.filter(pa.compute.equal(result.rejects["row"], 6)).to_pylist()[0] == {
        "row": 6, "image": "i6", "patient": "2", "study": "102", "path": "../outside.jpg",
        "reason": "path_outside_root"}
    # an unknown split value is no split (the manifest's no_split), a blank view stays blank
    kept = {r["dicom_id"]: r for r in result.metadata.to_pylist()}
    assert kept["i17"]["split"] is None and result.counts["unknown_split_values"] == {"holdout": 1}
    assert (kept["i1"]["subject_id"], kept["i1"]["study_id"], kept["i1"]["path"]) == (1, 100, "img/a.jpg")
    # one report per study, from its first row
    assert result.reports["study_id"].to_pylist() == [100, 107, 108, 109]
    assert result.reports["where"].to_pylist()[0] == f"{root / 'table.csv'}:1"


def test_the_manifest_reads_the_rows_with_their_paths(root: Path, tmp_path: Path) -> None:
    result = build_source(root / "table.csv", root=root, columns=Columns.from_mapping(COLUMNS))
    write_source(result, tmp_path / "source")
    sections, _ = section_texts(tmp_path / "source" / "reports.parquet")
    pq.write_table(sections, tmp_path / "sections.parquet")
    manifest = build_manifest(sections=tmp_path / "sections.parquet", rows=tmp_path / "source" / "metadata.parquet",
                              root=root, views=("PA", "AP"), min_tokens=3)
    reasons = dict(zip(manifest.rejects["dicom_id"].to_pylist(), manifest.rejects["reason"].to_pylist(), strict=True))
    # i16's report has no section: rejected by the sections stage, so no_sections here
    assert reasons == {"i2": "view_not_frontal", "i16": "no_sections", "i17": "no_split", "i18": "image_file_missing"}
    assert manifest.images["key"].to_pylist() == ["i1"]
    assert manifest.counts["images_by_tree"] == {"*.jpg": 1}
    assert manifest.counts["metadata_rows"] == 5
    every_view = build_manifest(sections=tmp_path / "sections.parquet", rows=tmp_path / "source" / "metadata.parquet",
                                root=root, views=None)
    assert sorted(every_view.images["key"].to_pylist()) == ["i1", "i2"]


def test_report_column_is_sectioned_like_a_report_file() -> None:
    reports = pa.table({"subject_id": [1, 2, 3, 4], "study_id": [10, 20, 30, 40],
                        "report": [REPORT, NO_SECTIONS, ONLY_IMPRESSION, "  \n"],
                        "where": ["t:1", "t:2", "t:3", "t:4"]})
    sections, rejects = section_texts(reports)
    assert sections.select(["study_id", "findings", "impression", "n_tokens_findings", "n_tokens_impression"]
                           ).to_pylist() == [
        {"study_id": 10, "findings": "The lungs are clear.  No pleural effusion.",
         "impression": "No acute cardiopulmonary process.", "n_tokens_findings": 7, "n_tokens_impression": 4},
        {"study_id": 30, "findings": None, "impression": "Heart size is normal.", "n_tokens_findings": 0,
         "n_tokens_impression": 4},
    ]
    assert sections["text_sha256"][0].as_py() == hashlib.sha256(REPORT.encode()).hexdigest()
    assert rejects.to_pylist() == [
        {"subject_id": 2, "study_id": 20, "path": "t:2", "reason": "no_findings_impression_or_last_paragraph"},
        {"subject_id": 4, "study_id": 40, "path": "t:4", "reason": "empty"},
    ]


def test_findings_and_impression_columns_are_not_parsed() -> None:
    reports = pa.table({"subject_id": [1, 2, 3], "study_id": [10, 20, 30],
                        "findings": ["  FINDINGS: Clear lungs, no effusion. ", None, " "],
                        "impression": ["Normal.", "IMPRESSION: small effusion", None], "where": ["t:1", "t:2", "t:3"]})
    sections, rejects = section_texts(reports)
    assert sections.select(["study_id", "findings", "impression", "n_tokens_findings", "n_tokens_impression",
                            "has_findings", "last_paragraph"]).to_pylist() == [
        {"study_id": 10, "findings": "FINDINGS: Clear lungs, no effusion.", "impression": "Normal.",
         "n_tokens_findings": 5, "n_tokens_impression": 1, "has_findings": True, "last_paragraph": None},
        {"study_id": 20, "findings": None, "impression": "IMPRESSION: small effusion", "n_tokens_findings": 0,
         "n_tokens_impression": 3, "has_findings": False, "last_paragraph": None},
    ]
    assert rejects["reason"].to_pylist() == ["empty"]


def test_csv_gzip_and_parquet_give_the_same_result(root: Path) -> None:
    columns = Columns.from_mapping(COLUMNS)
    rows = [dict(zip(HEADER, row, strict=True)) for row, _ in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), root / "table.parquet")
    (root / "table.csv.gz").write_bytes(gzip.compress((root / "table.csv").read_bytes()))
    results = [build_source(root / name, root=root, columns=columns)
               for name in ("table.csv", "table.csv.gz", "table.parquet")]
    for other in results[1:]:
        assert other.metadata.equals(results[0].metadata)
        assert other.rejects.equals(results[0].rejects)
        assert other.reports.drop(["where"]).equals(results[0].reports.drop(["where"]))
    assert results[0].reports["report"][0].as_py() == REPORT  # verbatim, newlines and leading spaces kept


def _hashed(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) // 2


def test_non_integer_ids_are_hashed_to_63_bits_and_kept_in_the_mapping(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"png")
    header = ["p", "s", "f", "findings"]
    rows = [("MRN-0042", "acc/1", "x.png", "Clear."), ("007", "12", "x.png", "Clear."),
            ("5", str(2**63), "x.png", "Clear.")]
    write_csv(tmp_path / "t.csv", header, rows)
    columns = Columns.from_mapping({"path": "f", "patient": "p", "study": "s", "findings": "findings"})
    result = build_source(tmp_path / "t.csv", root=tmp_path, columns=columns)
    # no image column: the key comes from the path, so the three rows of x.png are one image three times
    assert result.counts["rejects_by_reason"]["duplicate_image"] == 3
    rows[1:] = [("007", "12", "y.png", "Clear."), ("5", str(2**63), "z.png", "Clear.")]
    write_csv(tmp_path / "t.csv", header, rows)
    result = build_source(tmp_path / "t.csv", root=tmp_path, columns=columns)
    assert result.metadata["subject_id"].to_pylist() == [_hashed("MRN-0042"), _hashed("007"), 5]
    assert result.metadata["study_id"].to_pylist() == [_hashed("acc/1"), 12, _hashed(str(2**63))]
    assert sorted(result.ids.to_pylist(), key=lambda r: (r["kind"], r["original"])) == [
        {"kind": "patient", "original": "007", "id": _hashed("007")},
        {"kind": "patient", "original": "MRN-0042", "id": _hashed("MRN-0042")},
        {"kind": "study", "original": str(2**63), "id": _hashed(str(2**63))},
        {"kind": "study", "original": "acc/1", "id": _hashed("acc/1")},
    ]
    assert result.metadata["dicom_id"].to_pylist()[0] == "x-" + hashlib.sha256(b"x.png").hexdigest()[:12]
    assert path_key("a b/c.d.dcm") == "c-" + hashlib.sha256(b"a b/c.d.dcm").hexdigest()[:12]


def test_without_a_split_column_patients_are_drawn_whole(tmp_path: Path) -> None:
    rows = [(f"{p}_{i}.jpg", str(p), str(p * 10 + i % 2), "Clear lungs here.") for p in range(1, 41) for i in range(3)]
    write_csv(tmp_path / "t.csv", ["f", "p", "s", "impression"], rows)
    columns = Columns.from_mapping({"path": "f", "patient": "p", "study": "s", "impression": "impression"})
    fractions = {"train": 0.5, "validate": 0.25, "test": 0.25}
    first = build_source(tmp_path / "t.csv", root=tmp_path, columns=columns, seed=1, split_fractions=fractions)
    again = build_source(tmp_path / "t.csv", root=tmp_path, columns=columns, seed=1, split_fractions=fractions)
    other = build_source(tmp_path / "t.csv", root=tmp_path, columns=columns, seed=2, split_fractions=fractions)
    splits: dict[int, set[str]] = {}
    for row in first.metadata.to_pylist():
        splits.setdefault(row["subject_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in splits.values())
    per_split = [sum(s == {name} for s in splits.values()) for name in ("train", "validate", "test")]
    assert per_split == [20, 10, 10]
    assert first.metadata.equals(again.metadata) and not first.metadata.equals(other.metadata)
    assert first.counts["split"] == "drawn"


def test_bad_tables_and_mappings_name_the_file_and_the_reason(root: Path) -> None:
    columns = Columns.from_mapping(COLUMNS)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        build_source(root / "nope.csv", root=root, columns=columns)
    with pytest.raises(ValueError, match=r"table.csv: missing column\(s\) \['Report'\]"):
        build_source(root / "table.csv", root=root, columns=Columns.from_mapping({**COLUMNS, "report": "Report"}))
    (root / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"broken\.parquet: cannot read the table"):
        build_source(root / "broken.parquet", root=root, columns=columns)
    (root / "t.xlsx").write_bytes(b"")
    with pytest.raises(ValueError, match=r"t.xlsx: a table must be \.csv, \.csv\.gz or \.parquet"):
        build_source(root / "t.xlsx", root=root, columns=columns)
    with pytest.raises(ValueError, match="not both"):
        Columns.from_mapping({**COLUMNS, "findings": "f"})
    with pytest.raises(ValueError, match=r"\['study'\] must name a column"):
        Columns.from_mapping({"path": "f", "patient": "p", "report": "r"})


def test_command_writes_the_tables_and_counts(root: Path, tmp_path: Path) -> None:
    parser = source_command.argparse.ArgumentParser()
    source_command.add_arguments(parser)
    args = parser.parse_args([str(root / "table.csv"), "--root", str(root), "--columns", json.dumps(COLUMNS),
                              "--out-dir", str(tmp_path / "out")])
    assert source_command.main(args) == 0
    counts = json.loads((tmp_path / "out" / "counts.json").read_text())
    assert (counts["rows"], counts["images"], counts["studies"]) == (18, 5, 4)
    assert pq.read_table(tmp_path / "out" / "rejects.parquet").num_rows == 13
    first = (tmp_path / "out" / "metadata.parquet").read_bytes()
    assert source_command.main(args) == 0
    assert (tmp_path / "out" / "metadata.parquet").read_bytes() == first


def test_the_sections_and_manifest_commands_read_the_table_source(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert cli(["source-table", str(root / "table.csv"), "--root", str(root), "--columns", json.dumps(COLUMNS),
                "--out-dir", str(out / "source")]) == 0
    assert cli(["sections", "--texts", str(out / "source/reports.parquet"), "--out",
                str(out / "sections/sections.parquet"), "--rejects", str(out / "sections/rejects.parquet")]) == 0
    assert pq.read_table(out / "sections/rejects.parquet")["reason"].to_pylist() == [
        "no_findings_impression_or_last_paragraph"]
    assert cli(["manifest", "--sections", str(out / "sections/sections.parquet"), "--rows",
                str(out / "source/metadata.parquet"), "--root", str(root), "--all-views",
                "--out-dir", str(out / "manifest")]) == 0
    counts = json.loads((out / "manifest/counts.json").read_text())
    assert (counts["images"], counts["rejects_by_reason"]["view_not_frontal"]) == (2, 0)
    with pytest.raises(SystemExit):
        cli(["manifest", "--sections", str(out / "sections/sections.parquet"), "--rows",
             str(out / "source/metadata.parquet"), "--split", "s.csv", "--root", str(root),
             "--out-dir", str(out / "m")])
    # the report's counts page: the table's rows, then its studies into the sections stage
    assert source_count(out) == StageCount("source_table", None, "table rows", 18, 5, 13, {
        "duplicate_image": 2, "missing_path": 1, "missing_patient": 1, "missing_study": 1, "path_outside_root": 2,
        "study_patient_conflict": 2, "study_report_conflict": 2, "study_split_conflict": 2})
    assert sections_count(out) == StageCount("sections", None, "table studies", 4, 3, 1,
                                             {"no_findings_impression_or_last_paragraph": 1})


def test_the_schema_asks_the_table_keys_of_a_table_source_only() -> None:
    schema = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
    table = {"source": "table", "root": "r", "table": "t.csv",
             "columns": {"path": "p", "patient": "pa", "study": "s", "report": "r"}}

    def config(data: dict) -> dict:
        return {**yaml.safe_load(TINY.read_text()), "data": data}

    validate(config(table), schema)
    for bad in ({k: v for k, v in table.items() if k != "columns"},
                {**table, "columns": {**table["columns"], "findings": "f"}},
                {**table, "columns": {"path": "p", "patient": "pa", "study": "s"}},
                {**table, "source": "mimic"}):
        with pytest.raises(WorkflowError):
            validate(config(bad), schema)


def test_preflight_checks_the_table_and_its_mapped_columns(root: Path) -> None:
    config = yaml.safe_load(TINY.read_text())
    config["data"] = {"source": "table", "root": str(root), "table": "table.csv", "columns": COLUMNS}
    plan = Plan(config, root, data_sources(config, root)[0])
    assert [c.status for c in check_raw_files(plan) if c.subject == "pretraining table"] == ["ok"]
    assert [c.status for c in check_headers(plan) if c.subject == "pretraining table"] == ["ok"]
    config["data"]["columns"] = {**COLUMNS, "report": "Report"}
    plan = Plan(config, root, data_sources(config, root)[0])
    [check] = [c for c in check_headers(plan) if c.subject == "pretraining table"]
    assert check.status == "FAIL" and "table.csv" in check.detail and "Report" in check.detail
    config["data"]["table"] = "gone.parquet"
    plan = Plan(config, root, data_sources(config, root)[0])
    [check] = [c for c in check_raw_files(plan) if c.subject == "pretraining table"]
    assert check.status == "FAIL" and "gone.parquet" in check.detail
