"""Auditing a finished tiny run: lineage, audit, catalog, code-driven reruns, report, data protection."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from imitate.evaluate.tasks import TASKS
from tests.helpers.workflow import ROOT, run_snakemake

TABLE = "results/tables/linear_classification.csv"


def _imitate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imitate", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the finished run, free to tamper with."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, symlinks=True)
    return copy


def test_provenance_prints_the_lineage_down_to_raw_inputs(tiny_run):
    out = _imitate(tiny_run, "provenance", TABLE)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.splitlines()[0].startswith(f"{TABLE} [tables] sha256:")
    # the demos' files record the generator that wrote them; the report tree is a raw input
    for raw in ("mimic-cxr-2.0.0-metadata.csv.gz [demo-data]", "mimic-cxr-2.0.0-split.csv.gz [demo-data]",
                "mimic-cxr-reports/files [raw directory", "toy/labels.csv [dataset-demo]",
                "rsna/stage_2_train_labels.csv [dataset-demo]", "results/datasets/toy/records.parquet [dataset]"):
        assert raw in text
    assert "encoder.safetensors [pretrain]" in text
    tree = json.loads(_imitate(tiny_run, "provenance", TABLE, "--json").stdout)
    assert tree["stage"] == "tables"
    assert set(tree["inputs"]) == {f"results/evaluate/linear_classification/{d}/{m}"
                                   for d in ("toy", "rsna", "table_demo") for m in ("imitate", "random_init")}


def test_provenance_of_an_unrecorded_file_fails_clearly(tiny_run):
    out = _imitate(tiny_run, "provenance", "config.yaml")
    assert out.returncode == 1 and "no provenance record" in out.stderr


def test_audit_passes_then_catches_an_edited_intermediate(run_copy):
    clean = _imitate(run_copy, "audit", "results")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    with open(run_copy / "results/manifest/studies.parquet", "ab") as fh:
        fh.write(b"\0")
    tampered = _imitate(run_copy, "audit", "results")
    assert tampered.returncode == 1
    lines = [ln.split("\t") for ln in tampered.stdout.splitlines()]
    assert ["output_modified", "results/manifest/studies.parquet"] in [ln[:2] for ln in lines]
    assert ["input_changed", "results/manifest/studies.parquet"] in [ln[:2] for ln in lines]  # embed is stale


def test_audit_reports_a_missing_input(run_copy):
    (run_copy / "results/datasets/toy/subsets.parquet").unlink()
    out = _imitate(run_copy, "audit", "results")
    assert out.returncode == 1
    assert "input_missing\tresults/datasets/toy/subsets.parquet" in out.stdout


def test_catalog_answers_which_checkpoint_and_which_tables(tiny_run):
    con = duckdb.connect(str(tiny_run / "results/provenance.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM artifacts WHERE stage = 'pretrain'").fetchone()[0] == 5
    weights = con.execute(
        """
        WITH RECURSIVE up(path) AS (
            SELECT ? UNION SELECT e.input FROM edges e JOIN up ON e.output = up.path
        )
        SELECT DISTINCT e.input, e.input_sha256 FROM edges e JOIN up ON e.output = up.path
        WHERE e.input_name = 'weights'
        """,
        [TABLE],
    ).fetchall()
    assert weights == [("results/pretrain/encoder.safetensors",
                        con.execute("SELECT sha256 FROM artifacts WHERE path = 'results/pretrain/encoder.safetensors'")
                        .fetchone()[0])]
    split = next(p for (p,) in con.execute("SELECT DISTINCT input FROM edges").fetchall() if p.endswith("split.csv.gz"))
    tables = con.execute(
        """
        WITH RECURSIVE down(path) AS (
            SELECT ? UNION SELECT e.output FROM edges e JOIN down ON e.input = down.path
        )
        SELECT path FROM down WHERE path LIKE 'results/tables/%' ORDER BY path
        """,
        [split],
    ).fetchall()
    tasks = sorted(TASKS)
    assert tables == [(f"results/tables/{t}.{ext}",) for t in tasks for ext in ("csv", "md", "png")]
    rules = {r for (r,) in con.execute("SELECT DISTINCT rule FROM artifacts").fetchall()}
    assert {"sections", "manifest", "shards", "embed", "pretrain", "dataset_demo", "dataset", "dataset_shards",
            "evaluate", "tables"} <= rules


def test_editing_package_code_reruns_exactly_the_rules_that_use_it(run_copy, tmp_path):
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for part in ("Snakefile", "workflow", "imitate", "config.yaml", "tests"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, checkout / part)
    snakefile = checkout / "Snakefile"
    before = run_snakemake(run_copy, "--dry-run", "--rerun-triggers", "params", snakefile=snakefile)
    assert "Nothing to be done" in before.stdout + before.stderr, before.stdout + before.stderr
    with open(checkout / "imitate/tables/gather.py", "a") as fh:
        fh.write("\n# an edit\n")
    after = run_snakemake(run_copy, "--dry-run", "--rerun-triggers", "params", snakefile=snakefile)
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", after.stdout + after.stderr, re.MULTILINE)) - {"all"}
    # the tables, and what reads them: the exported model's card, the catalog and the report's pages
    assert jobs == {"tables", "export", "provenance_catalog", "report_results", "report_provenance",
                    "report_benchmarks"}, after.stdout + after.stderr


def test_report_holds_tables_figures_and_provenance(tiny_run, tmp_path):
    report = tmp_path / "report.zip"
    out = run_snakemake(tiny_run, "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    names = zipfile.ZipFile(report).namelist()
    for part in ("linear_classification.csv", "linear_classification.md", "loss_curve.png", "section_map.png",
                 "linear_classification.csv.provenance.json"):
        assert any(n.endswith(part) for n in names), (part, names)


def _report_sentences(workdir: Path) -> set[str]:
    table = pq.read_table(workdir / "results/sections/sections.parquet", columns=["findings", "impression"])
    texts = [t for col in table.columns for t in col.to_pylist() if t]
    return {s.strip() for t in texts for s in re.split(r"[.\n]", t) if len(s.strip()) >= 20}


def test_no_report_text_in_logs_records_or_tables(tiny_run):
    sentences = _report_sentences(tiny_run)
    assert len(sentences) > 20
    checked = [*tiny_run.joinpath("logs").rglob("*.log"), *tiny_run.joinpath("results").rglob("*.provenance.json"),
               *tiny_run.joinpath("results/tables").glob("*")]
    for path in checked:
        text = path.read_text(errors="replace")
        leaked = [s for s in sentences if s in text]
        assert not leaked, f"{path} contains report text: {leaked[:2]}"
    for path in tiny_run.joinpath("results").rglob("*.parquet"):
        meta = json.dumps({k.decode(errors="replace"): v.decode(errors="replace")
                           for k, v in (pq.read_schema(path).metadata or {}).items()})
        assert not [s for s in sentences if s in meta], f"{path} metadata contains report text"


def test_no_output_is_world_readable(tiny_run):
    for top in ("results", "logs"):
        for path in [tiny_run / top, *(tiny_run / top).rglob("*")]:
            if path.is_symlink():
                continue
            assert not path.stat().st_mode & stat.S_IRWXO, f"{path} is accessible to others"
