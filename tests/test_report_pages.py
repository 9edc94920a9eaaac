"""The report's pages from hand-written stage outputs: counts that add up (or not), benchmarks, provenance, and
each task's plot against the numbers put in."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from imitate.cli import main
from imitate.report.benchmarks import benchmarks_body
from imitate.report.counts import counts_body
from imitate.report.provenance import provenance_body
from imitate.report.results import results_body
from imitate.tables.gather import CSV_COLUMNS
from imitate.tables.plot import task_figure


class _Tables(HTMLParser):
    """Every <table> of a page as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _tables(text: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


def _parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder as the data stages leave it: 5 reports, 7 metadata rows, one dataset ``toy``."""
    res = tmp_path / "results"
    _parquet(res / "sections/sections.parquet", [{"study_id": i} for i in range(4)])
    _json(res / "sections/sections.parquet.provenance.json",
          {"stage": "sections", "inputs": {"reports": {"path": "raw/files", "kind": "directory", "n_files": 5}}})
    _parquet(res / "sections/rejects.parquet", [{"study_id": 9, "reason": "no_sections"}])
    _json(res / "manifest/counts.json", {
        "metadata_rows": 7, "images": 4, "studies": 3, "rejects": 3,
        "rejects_by_reason": {"view_not_frontal": 2, "no_split": 1, "no_sections": 0},
        "images_by_split": {"train": 2, "validate": 1, "test": 1}, "studies_by_split": {"train": 1, "test": 2}})
    _parquet(res / "manifest/images.parquet", [{"key": str(i)} for i in range(4)])
    _parquet(res / "shards/manifest.parquet", [{"key": str(i)} for i in range(3)])
    _parquet(res / "shards/rejects.parquet", [{"key": "3", "reason": "decode_error"}])
    _json(res / "datasets/toy/counts.json", {
        "input_records": 10, "records": 8, "rejected": 2, "rejects_by_reason": {"image_missing": 2},
        "by_split": {"train": 6, "test": 2}, "train_subsets": {"50": 3, "100": 6}})
    _parquet(res / "datasets/toy/records.parquet", [{"key": str(i)} for i in range(8)])
    _parquet(res / "datasets/toy/shards/manifest.parquet", [{"key": str(i)} for i in range(8)])
    pq.write_table(pa.table({"key": pa.array([], pa.string()), "reason": pa.array([], pa.string())}),
                   res / "datasets/toy/shards/rejects.parquet")
    return res


def test_the_counts_page_has_a_row_per_stage_that_adds_up(results):
    text = counts_body(results, ["toy"])
    stages, splits = _tables(text)
    assert stages[0] == ["stage", "data", "counted", "in", "kept", "rejected", "rejected by reason", "adds up"]
    assert stages[1:] == [
        ["sections", "MIMIC-CXR", "report files", "5", "4", "1", "no_sections: 1", "yes"],
        ["manifest", "MIMIC-CXR", "metadata rows", "7", "4", "3", "view_not_frontal: 2, no_split: 1", "yes"],
        ["shards", "MIMIC-CXR", "images", "4", "3", "1", "decode_error: 1", "yes"],
        ["dataset", "toy", "records", "10", "8", "2", "image_missing: 2", "yes"],
        ["dataset_shards", "toy", "images", "8", "8", "0", "–", "yes"],
    ]
    assert "Every stage adds up." in text
    assert splits[1:] == [["MIMIC-CXR", "images", "2", "1", "1", "–"], ["MIMIC-CXR", "studies", "1", "0", "2", "–"],
                          ["toy", "records", "6", "0", "2", "50%: 3, 100%: 6"]]


def test_a_stage_whose_counts_do_not_add_up_is_marked(results):
    _parquet(results / "shards/manifest.parquet", [{"key": "0"}])  # 1 kept + 1 rejected of 4 images
    text = counts_body(results, ["toy"])
    shards = _tables(text)[0][3]
    assert shards[:6] == ["shards", "MIMIC-CXR", "images", "4", "1", "1"] and shards[-1] == "NO"
    assert '<td class="bad">NO</td>' in text
    assert "1 stage(s) do not add up" in text


def test_the_command_writes_the_page(results, tmp_path):
    out = tmp_path / "page/counts.html"
    assert main(["report-page", "counts", str(results), "--datasets", "toy", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<h1>Counts and rejects of every data stage</h1>" in text
    assert "<script" not in text


def test_a_missing_counts_file_is_named(results):
    (results / "datasets/toy/counts.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"datasets/toy/counts\.json"):
        counts_body(results, ["toy"])


def test_the_benchmarks_page_lists_every_job_longest_first(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "evaluate/zero_shot").mkdir(parents=True)
    (tmp_path / "sections.tsv").write_text(header + "3.5\t0:00:03\t430.1\t3299\t156\t197\t0.01\t0.06\t36.3\t1.5\n")
    (tmp_path / "evaluate/zero_shot/rsna.tsv").write_text(
        header + "12.0\t0:00:12\t900.5\t4000\t600\t700\t1\t2\t80\t9.5\n")
    (tmp_path / "loss_curve.tsv").write_text(header + "1.0\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t0.5\n")
    text = benchmarks_body(tmp_path)
    (rows,) = _tables(text)
    assert rows[0][:6] == ["job", "wall s", "h:m:s", "CPU s", "mean load %", "max RSS MB"]
    assert [r[0] for r in rows[1:]] == ["evaluate/zero_shot/rsna", "sections", "loss_curve"]
    assert rows[1][1:6] == ["12.0", "0:00:12", "9.5", "80", "900.5"]
    assert "3 jobs, 16 s of wall-clock time and 12 s of CPU time in all" in text
    assert "largest resident memory was 900.5 MB (evaluate/zero_shot/rsna)" in text


def test_a_file_that_is_no_benchmark_is_named(tmp_path):
    (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match=r"x\.tsv: not a Snakemake benchmark file"):
        benchmarks_body(tmp_path)


def test_the_provenance_page_shows_hashes_versions_and_the_lineage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("raw.csv").write_text("a\n")
    Path("t.csv").write_text("x\n")
    _json(Path("t.csv.provenance.json"), {
        "stage": "tables", "rule": "tables", "run_id": "r1", "code_sha256": "c0de" * 16, "settings_sha256": "5e7" * 4,
        "git": {"commit": "abc123", "dirty": True}, "versions": {"torch": "2.9", "python": "3.11"},
        "run": {"started": "2026-01-01T00:00:00", "ended": "2026-01-01T00:01:00", "host": "h",
                "config_sha256": "cf" * 32, "device": {"cpu": "x86", "gpu": None}},
        "inputs": {"raw": {"path": "raw.csv", "kind": "file", "sha256": "ab" * 32, "bytes": 2}},
        "outputs": [{"path": "t.csv", "kind": "file", "sha256": "cd" * 32, "bytes": 2}]})
    text = provenance_body(["t.csv"])
    facts, outputs, inputs, versions = _tables(text)
    assert ["git commit", "abc123 (uncommitted changes)"] in facts
    assert ["sha256 of the imitate source", "c0de" * 16] in facts
    assert ["sha256 of the whole config", "cf" * 32] in facts
    assert ["device", "cpu: x86"] in facts
    assert outputs[1] == ["t.csv", "file", "cd" * 32, "2"]
    assert inputs[1] == ["raw", "raw.csv", "file", "ab" * 32, "2"]
    assert versions[1:] == [["python", "3.11"], ["torch", "2.9"]]
    assert "t.csv [tables] sha256:cdcdcdcdcdcdcdcd\n└─ raw: raw.csv [raw] sha256:abababababababab" in text


def test_the_provenance_page_names_a_table_without_a_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("t.csv").write_text("x\n")
    with pytest.raises(FileNotFoundError, match=r"t\.csv: no provenance record"):
        provenance_body(["t.csv"])


def test_the_results_page_renders_each_markdown_table(tmp_path):
    (tmp_path / "zero_shot.md").write_text(
        "**Zero-shot** — × 100, mean ± standard deviation over seeds 0, 1\n\n"
        "| method | rsna auc_macro | rsna f1_macro |\n|---|---:|---:|\n"
        "| imitate | 85.71 ± 1.00 | – |\n| IMITATE (paper) | 87.50 | – |\n")
    text = results_body([tmp_path / "zero_shot.md"])
    assert _tables(text) == [[["method", "rsna auc_macro", "rsna f1_macro"], ["imitate", "85.71 ± 1.00", "–"],
                              ["IMITATE (paper)", "87.50", "–"]]]
    assert '<h2 id="zero_shot">zero_shot</h2>' in text and "Zero-shot — × 100" in text
    (tmp_path / "empty.md").write_text("**nothing**\n")
    with pytest.raises(ValueError, match=r"empty\.md: no Markdown table"):
        results_body([tmp_path / "empty.md"])


def _table(rows: list[tuple]) -> pa.Table:
    """Results rows (dataset, task, fraction, method, experiment, seed, metric, value) in the CSV's columns."""
    keys = ("dataset", "task", "fraction", "method", "experiment", "seed", "metric", "value")
    full = [{**dict.fromkeys(CSV_COLUMNS), **dict(zip(keys, row, strict=True))} for row in rows]
    return pa.Table.from_pylist(full)


def _errorbar(ax, label):
    (container,) = [c for c in ax.containers if c.get_label() == label]
    return container


def test_a_trained_tasks_plot_has_a_line_per_method_and_the_papers_markers_on_real_data():
    rows = [("chex", "linear_classification", f, "imitate", "base", seed, "auc_macro", v)
            for f, seed, v in (("1", 0, 0.80), ("1", 1, 0.90), ("100", 0, 0.95), ("100", 1, 0.85))]
    rows += [("chex", "linear_classification", f, "imitate", "lam", 0, "auc_macro", 0.7) for f in ("1", "100")]
    rows += [("toy", "linear_classification", "1", "random_init", "base", 0, "auc_macro", 0.5)]
    fig = task_figure(_table(rows), "linear_classification", {"chex": "chexpert"})
    chex, toy = fig.axes
    assert (chex.get_title(), toy.get_title()) == ("chex auc_macro", "toy auc_macro")
    assert [t.get_text() for t in chex.get_xticklabels()] == ["1%", "100%"]
    line = _errorbar(chex, "imitate").lines[0]
    assert list(line.get_ydata()) == pytest.approx([85.0, 90.0])
    assert line.get_linestyle() == "-"
    dashed = _errorbar(chex, "imitate [lam]").lines[0]
    assert list(dashed.get_ydata()) == pytest.approx([70.0, 70.0]) and dashed.get_linestyle() == "--"
    paper = {ln.get_label(): list(ln.get_ydata()) for ln in chex.get_lines() if ln.get_label().endswith("(paper)")}
    assert paper["IMITATE (paper)"] == [89.1, 89.7]  # Table III, CheXpert at 1 % and 100 %
    assert len(paper) == 9
    assert not [ln for ln in toy.get_lines() if ln.get_label().endswith("(paper)")]
    assert "imitate" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_zero_shot_is_drawn_as_bars_per_metric():
    rows = [("pneumo", "zero_shot", "all", m, "base", 0, metric, v)
            for m, metric, v in (("imitate", "auc_macro", 0.9), ("imitate", "f1_best_macro", 0.6),
                                 ("random_init", "auc_macro", 0.5), ("random_init", "f1_best_macro", 0.3))]
    fig = task_figure(_table(rows), "zero_shot", {"pneumo": "siim"})
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["auc_macro", "f1_best_macro"]
    bars = {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers if hasattr(c, "patches")}
    assert bars == {"imitate": pytest.approx([90.0, 60.0]), "random_init": pytest.approx([50.0, 30.0])}
    paper = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()}
    assert paper["IMITATE (paper)"] == [89.9, 69.1]  # Table VI, SIIM: AUC and F1
