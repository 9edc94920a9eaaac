"""extract_sections(): a tiny reports tree with real MIMIC formatting and every kind of bad entry."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from imitate.commands import sections as sections_command
from imitate.sections.extract import (
    REJECT_REASONS,
    extract_sections,
    load_overrides,
    section_counts,
    write_sections,
)
from imitate.sections.tokens import count_tokens, tokenize

SECTION_COLUMNS = [
    "subject_id",
    "study_id",
    "findings",
    "impression",
    "last_paragraph",
    "comparison",
    "has_findings",
    "has_impression",
    "n_tokens_findings",
    "n_tokens_impression",
    "path",
    "text_sha256",
    "overridden",
    "utf8_replaced",
]


def mimic(*lines: str) -> str:
    return "\n".join([" " * 33 + "FINAL REPORT", *(" " + line for line in lines)]) + "\n"


GOOD = mimic(
    "EXAMINATION:  CHEST (PA AND LAT)",
    "",
    "INDICATION:  ___F with cough",
    "",
    "COMPARISON:  ___",
    "",
    "FINDINGS: ",
    "",
    "There is no focal consolidation, pleural effusion or pneumothorax.",
    "",
    "IMPRESSION: ",
    "",
    "No acute cardiopulmonary process.",
)
ONLY_LAST_PARAGRAPH = mimic("INDICATION:  Fever.", "", "COMPARISON:  None.", "", "Lungs are clear.")
ONLY_COMPARISON = mimic("INDICATION:  Fever.", "", "COMPARISON:  None.")
SWALLOWED = mimic("FINDINGS:", "IMPRESSION: Small left effusion.")

# expected (path -> reason) of every rejected entry, and the paths of every kept report
EXPECTED_REJECTS = {
    "index.html": "not_a_report_file",
    "p10/index.html": "not_a_report_file",
    "p10/p10000001/.DS_Store": "not_a_report_file",
    "p10/p10000001/s50000001": "is_directory",
    "p10/p10000001/s50000002.txt": "empty",
    "p10/p10000002/s50000006.txt": "is_directory",
    "p10/p10000002/s50000007.txt": "unreadable",
    "p10/p10000002/s50000009.txt": "no_findings_impression_or_last_paragraph",
    "p10/p10000002/s50000010.txt": "empty",
    "p10/p10000002/notes.txt": "not_a_report_file",
    "p10/s50000011.txt": "not_a_report_file",
    "p10/p10000002/s50000012.txt": "duplicate_study_id",
    "p11/p11000001/s50000012.txt": "duplicate_study_id",
    "misc": "is_directory",
}
EXPECTED_KEPT = {
    "p10/p10000001/s50000000.txt",
    "p10/p10000001/s50000003.txt",
    "p10/p10000001/s50000004.txt",
    "p10/p10000001/s50000005.txt",
    "p10/p10000002/s50000008.txt",
    "p11/p11000001/s50000013.txt",
}


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    root = tmp_path / "files"

    def put(rel: str, content: str | bytes) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    put("index.html", "<html></html>")
    put("p10/index.html", "<html></html>")
    put("p10/p10000001/.DS_Store", b"\x00\x01")
    put("p10/p10000001/s50000000.txt", GOOD)
    put("p10/p10000001/s50000001/0a1b2c3d-00000000-00000000-00000000-00000000.jpg", b"jpg")  # a study folder
    put("p10/p10000001/s50000002.txt", b"")
    put("p10/p10000001/s50000003.txt", GOOD.encode().replace(b"focal", b"f\xf6cal"))  # Latin-1, not UTF-8
    put("p10/p10000001/s50000004.txt", GOOD.replace("\n", "\r\n"))
    put("p10/p10000001/s50000005.txt", GOOD.replace("no focal consolidation", "no\tfocal consolidation"))
    (root / "p10/p10000002/s50000006.txt").mkdir(parents=True)
    os.symlink(root / "nowhere.txt", root / "p10/p10000002/s50000007.txt")
    put("p10/p10000002/s50000008.txt", ONLY_LAST_PARAGRAPH)
    put("p10/p10000002/s50000009.txt", ONLY_COMPARISON)
    put("p10/p10000002/s50000010.txt", " \n \n")
    put("p10/p10000002/notes.txt", GOOD)
    put("p10/s50000011.txt", GOOD)
    put("p10/p10000002/s50000012.txt", GOOD)
    put("p11/p11000001/s50000012.txt", GOOD)
    put("p11/p11000001/s50000013.txt", SWALLOWED)
    (root / "misc").mkdir()
    return root


def entries_under(root: Path) -> set[str]:
    """Every entry that is not a group or patient folder (and nothing inside a non-container directory)."""
    found = set()
    for group in root.iterdir():
        if not (group.is_dir() and group.name.startswith("p") and len(group.name) == 3):
            found.add(group.name)
            continue
        for patient in group.iterdir():
            if not (patient.is_dir() and patient.name.startswith("p")):
                found.add(f"{group.name}/{patient.name}")
                continue
            found.update(f"{group.name}/{patient.name}/{e.name}" for e in patient.iterdir())
    return found


def test_every_entry_lands_once(reports: Path) -> None:
    sections, rejects = extract_sections(reports)
    assert sections.column_names == SECTION_COLUMNS
    assert rejects.column_names == ["subject_id", "study_id", "path", "reason"]
    kept, rejected = sections.column("path").to_pylist(), rejects.column("path").to_pylist()
    assert len(kept) + len(rejected) == len(entries_under(reports)) == len(set(kept) | set(rejected))
    assert set(kept) == EXPECTED_KEPT
    assert dict(zip(rejected, rejects.column("reason").to_pylist(), strict=True)) == EXPECTED_REJECTS
    assert rejected == sorted(rejected)
    assert sections.column("study_id").to_pylist() == sorted(sections.column("study_id").to_pylist())
    counts = section_counts(sections, rejects)
    assert counts["entries"] == counts["sections"] + counts["rejects"] == len(EXPECTED_KEPT) + len(EXPECTED_REJECTS)
    assert sum(counts[f"rejects_{reason}"] for reason in REJECT_REASONS) == counts["rejects"]


def test_reject_ids_come_from_the_path(reports: Path) -> None:
    _, rejects = extract_sections(reports)
    ids = {r["path"]: (r["subject_id"], r["study_id"]) for r in rejects.to_pylist()}
    assert ids["index.html"] == (None, None)
    assert ids["p10/p10000001/.DS_Store"] == (10000001, None)
    assert ids["p10/p10000001/s50000001"] == (10000001, 50000001)
    assert ids["p11/p11000001/s50000012.txt"] == (11000001, 50000012)


def test_row_contents(reports: Path) -> None:
    sections, _ = extract_sections(reports)
    rows = {r["study_id"]: r for r in sections.to_pylist()}
    good = rows[50000000]
    assert good["subject_id"] == 10000001
    assert good["findings"] == "There is no focal consolidation, pleural effusion or pneumothorax."
    assert good["impression"] == "No acute cardiopulmonary process."
    assert good["comparison"] == "___"
    assert good["last_paragraph"] is None
    assert good["has_findings"] and good["has_impression"] and not good["overridden"]
    assert not good["utf8_replaced"]
    damaged = rows[50000003]
    assert damaged["utf8_replaced"]
    assert damaged["findings"] == "There is no f\ufffdcal consolidation, pleural effusion or pneumothorax."
    assert good["n_tokens_findings"] == count_tokens(good["findings"]) == 9
    assert good["n_tokens_impression"] == 4
    assert good["text_sha256"] == hashlib.sha256((reports / good["path"]).read_bytes()).hexdigest()
    # CRLF is read as the reference (text mode) reads it; tabs stay
    crlf = rows[50000004]
    assert (crlf["findings"], crlf["impression"]) == (good["findings"], good["impression"])
    assert crlf["text_sha256"] != good["text_sha256"]
    assert rows[50000005]["findings"].startswith("There is no\tfocal")
    last = rows[50000008]
    assert (last["findings"], last["impression"], last["last_paragraph"]) == (None, None, "Lungs are clear.")
    assert not last["has_findings"] and last["n_tokens_findings"] == 0
    assert rows[50000013]["findings"] == "IMPRESSION: Small left effusion."  # the reference swallow


def test_corrected_mode(reports: Path) -> None:
    sections, _ = extract_sections(reports, mode="corrected")
    row = next(r for r in sections.to_pylist() if r["study_id"] == 50000013)
    assert (row["findings"], row["impression"]) == (None, "Small left effusion.")


def test_workers_give_identical_tables(reports: Path) -> None:
    one = extract_sections(reports, workers=1)
    two = extract_sections(reports, workers=2)
    assert one[0].equals(two[0]) and one[1].equals(two[1])


def test_overrides(reports: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "overrides.csv"
    csv_path.write_text(
        "study_id,findings,impression\n"
        's50000002,,"Manual impression."\n'
        "50000000,Manual findings here.,Manual impression two.\n"
        "59999999,Unused.,\n"
    )
    sections, rejects = extract_sections(reports, overrides=csv_path)
    rows = {r["study_id"]: r for r in sections.to_pylist()}
    assert rows[50000002]["impression"] == "Manual impression." and rows[50000002]["findings"] is None
    assert rows[50000002]["overridden"] and not rows[50000002]["has_findings"]
    assert rows[50000000]["findings"] == "Manual findings here." and rows[50000000]["n_tokens_findings"] == 3
    assert rows[50000000]["comparison"] is None
    assert not rows[50000004]["overridden"]
    assert "p10/p10000001/s50000002.txt" not in rejects.column("path").to_pylist()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("study,findings,impression\n1,a,b\n", "lacks column"),
        ("study_id,findings,impression\nx12,a,b\n", "bad study_id"),
        ("study_id,findings,impression\n12,,\n", "neither findings nor impression"),
        ("study_id,findings,impression\n12,a,\ns12,b,\n", "listed twice"),
    ],
)
def test_bad_overrides(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "overrides.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_overrides(path)


def test_bad_arguments(reports: Path, tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        extract_sections(tmp_path / "missing")
    with pytest.raises(ValueError, match="mode"):
        extract_sections(reports, mode="fast")
    with pytest.raises(ValueError, match="workers"):
        extract_sections(reports, workers=0)


def test_write_is_deterministic(reports: Path, tmp_path: Path) -> None:
    outputs = []
    for run in ("a", "b"):
        sections, rejects = extract_sections(reports)
        out, rej = tmp_path / run / "sections.parquet", tmp_path / run / "rejects.parquet"
        counts = write_sections(sections, rejects, out, rej)
        assert counts["sections"] == len(EXPECTED_KEPT)
        assert pq.read_table(out).equals(sections)
        outputs.append((out.read_bytes(), rej.read_bytes()))
    assert outputs[0] == outputs[1]


def test_command(reports: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sections_command.add_arguments(parser)
    out, rej = tmp_path / "out" / "sections.parquet", tmp_path / "out" / "rejects.parquet"
    args = parser.parse_args([str(reports), "--out", str(out), "--rejects", str(rej), "--mode", "corrected"])
    assert sections_command.main(args) == 0
    assert pq.read_table(out).num_rows == len(EXPECTED_KEPT)
    assert pq.read_table(rej).num_rows == len(EXPECTED_REJECTS)
    assert out.with_name("sections.parquet.provenance.json").is_file()


def write_report(root: Path, study_id: int, content: str) -> Path:
    path = root / "p10" / "p10000001" / f"s{study_id}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def test_report_with_only_an_impression_is_kept(tmp_path: Path) -> None:
    write_report(tmp_path, 50000000, mimic("IMPRESSION: ", "", "No acute cardiopulmonary process."))
    sections, rejects = extract_sections(tmp_path)
    assert rejects.num_rows == 0
    (row,) = sections.to_pylist()
    assert row["impression"] == "No acute cardiopulmonary process." and row["has_impression"]
    assert row["findings"] is None and not row["has_findings"] and row["n_tokens_findings"] == 0
    assert row["last_paragraph"] is None


def test_ten_megabyte_report_is_sectioned(tmp_path: Path) -> None:
    line = "The lungs are clear without focal consolidation, effusion or pneumothorax 12."
    findings = [line] * (10_000_000 // (len(line) + 2))
    path = write_report(tmp_path, 50000000, mimic("FINDINGS: ", "", *findings, "", "IMPRESSION: ", "", "Clear."))
    assert path.stat().st_size > 10_000_000
    sections, rejects = extract_sections(tmp_path)
    assert rejects.num_rows == 0
    (row,) = sections.to_pylist()
    assert row["findings"] == "\n ".join(findings)
    assert row["n_tokens_findings"] == 11 * len(findings)
    assert row["impression"] == "Clear."


@pytest.mark.parametrize(
    "text",
    [
        "",
        "".join(map(chr, range(128))) * 2,
        "___ year old, 3.5 cm ET-tube",
        "tabs\tand\nnewlines  x",
        "\u212a sign",
        "\u0130stanbul caf\u00e9",
        "a_b-c/d",
    ],
)
def test_token_count_fast_path_is_the_token_rule(text: str) -> None:
    assert count_tokens(text) == len(tokenize(text))
    assert count_tokens(None) == 0
