"""The report as the front page of a run: ``snakemake --report report.html`` on the tiny run, opened in headless
Chromium (Debian's package) and walked through as a reader would, by clicking its menu and buttons.

Every page must render without a console error or uncaught exception: the front page describing the workflow and
the run, each task's plot (decoded as an image) and the results tables, the counts and rejects of every data
stage, the provenance records and the run times. The expected content comes from the run's own files (the tiny
config, the Markdown tables, the benchmark folder), read here independently of the report's code.

The results page with the linear-classification plot is saved as a screenshot; with ``IMITATE_REPORT_SCREENSHOT``
set (``IMITATE_REPORT_SCREENSHOT=docs/report.png pytest tests/test_report.py``) it is also written there: that
is how the README's screenshot is made.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.chromium import Browser
from tests.helpers.workflow import TINY, run_snakemake

SCREENSHOT_ENV = "IMITATE_REPORT_SCREENSHOT"
TASKS = ("detection", "finetune_classification", "linear_classification", "retrieval", "segmentation", "zero_shot")
ROWS = "[...document.querySelectorAll('nav table tbody tr')].map(r => [...r.cells].map(c => c.textContent.trim()))"


@pytest.fixture(scope="module")
def report(tiny_run: Path, tmp_path_factory) -> Path:
    """The tiny run's report as one self-contained HTML file."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    run = run_snakemake(tiny_run, "--report", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    return out


@pytest.fixture
def page(report: Path) -> Iterator[Browser]:
    """The report open on its front page, the rule graph drawn; afterwards, no error may have been logged."""
    browser = Browser(width=1400, height=1000)
    try:
        browser.open(report)
        browser.wait_for("typeof app !== 'undefined' && !!document.querySelector('#rulegraph canvas')")
        yield browser
        assert browser.errors == [], browser.errors
    finally:
        browser.close()


def test_the_browser_catches_a_pages_errors(tmp_path):
    """The harness itself: what the ``page`` fixture requires to stay empty does fill on a broken page."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>console.error('logged'); notDefined();</script></body>")
    browser = Browser()
    try:
        browser.open(broken)
        assert browser.evaluate("document.readyState") == "complete"
        assert any("logged" in error for error in browser.errors), browser.errors
        assert any("notDefined is not defined" in error for error in browser.errors), browser.errors
    finally:
        browser.close()


def _menu(page: Browser, name: str) -> list[list[str]]:
    """Click a category in the menu (going home first, by the breadcrumbs); the rows of the list it shows."""
    link = f"[...document.querySelectorAll('nav a')].find(a => a.textContent.trim() === {json.dumps(name)})"
    page.evaluate(f"void ({link} || document.querySelector('nav ol li a').click())")
    page.wait_for(f"!!{link}")
    page.evaluate(f"{link}.click()")
    return page.wait_for(f"(() => {{ const rows = {ROWS}; return rows.length && rows; }})()")


def _view(page: Browser, *cells: str) -> None:
    """Click the view button of the listed result whose first cells are ``cells``."""
    page.evaluate(f"[...document.querySelectorAll('nav table tbody tr')].find(r => {json.dumps(list(cells))}"
                  ".every((text, i) => r.cells[i].textContent.trim() === text)).querySelector('a').click()")


def _frame_rows(page: Browser, name: str) -> list[list[str]]:
    """The table rows (cell texts) of the HTML result ``name`` shown in the content frame."""
    context = page.frame_context(f"filename={name}")
    rows = "[...document.querySelectorAll('tr')].map(r => [...r.cells].map(c => c.textContent.trim()))"
    return page.wait_for(f"document.readyState === 'complete' && {rows}", context)


def test_the_front_page_describes_the_workflow_and_the_run(page):
    config = yaml.safe_load(TINY.read_text())
    text = page.wait_for("document.querySelector('.prose').innerText")
    assert f"IMITATE run {config['run_id']}" in text
    assert f"synthetic demo ({config['demo']['n_studies']} studies" in text
    for stage in ("sections", "manifest", "shards", "embed", "pretrain", "dataset_shards", "evaluate", "tables"):
        assert stage in text
    for task, block in config["evaluate"].items():
        if isinstance(block, dict) and "datasets" in block:
            assert f"{task} on {', '.join(block['datasets'])}" in text
    assert f"seeds {', '.join(map(str, config['evaluate']['seeds']))}" in text
    links = page.evaluate("[...document.querySelectorAll('.prose a')].map(a => a.textContent)")
    assert links == ["Results", "counts.html", "provenance.html", "benchmarks.html"]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_results_page_shows_each_tasks_plot_and_tables(page, tiny_run, tmp_path):
    rows = _menu(page, "Results")
    listed = [row[:2] for row in rows]
    assert listed == [["all tasks", "tables"]] + [[t, c] for t in TASKS
                                                  for c in ("plot", "table (CSV)", "table (Markdown)")]
    _view(page, "linear_classification", "plot")
    width = page.wait_for("(() => { const img = document.querySelector('img[src^=\"data:image/png\"]');"
                          " return img && img.complete && img.naturalWidth; })()")
    assert width == _png_size(tiny_run / "results/tables/linear_classification.png")[0]
    shot = tmp_path / "report.png"
    page.screenshot(shot)
    assert _png_size(shot) == (1400, 1000)
    if os.environ.get(SCREENSHOT_ENV):
        Path(os.environ[SCREENSHOT_ENV]).write_bytes(shot.read_bytes())

    _view(page, "all tasks", "tables")
    shown = _frame_rows(page, "results.html")
    for task in TASKS:  # every table's header and method rows, as the Markdown file has them
        lines = (tiny_run / f"results/tables/{task}.md").read_text().splitlines()
        table = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines if ln.startswith("| ")]
        assert all(row in shown for row in table), (task, table)


def test_the_counts_provenance_and_run_time_pages_render(page, tiny_run):
    assert _menu(page, "Data") == [["results/report/counts.html", ""]]
    _view(page, "results/report/counts.html")
    counts = _frame_rows(page, "counts.html")
    stages = [row for row in counts if len(row) == 8][1:]
    assert [row[0] for row in stages][:3] == ["sections", "manifest", "shards"]
    datasets = [name for name, entry in yaml.safe_load(TINY.read_text())["datasets"].items()]
    assert sorted(row[1] for row in stages if row[0] == "dataset") == sorted(datasets)
    assert all(row[-1] == "yes" for row in stages), stages
    manifest = json.loads((tiny_run / "results/manifest/counts.json").read_text())
    assert stages[1][3:6] == [str(manifest[k]) for k in ("metadata_rows", "images", "rejects")]

    provenance = _menu(page, "Provenance")
    assert ["results/report/provenance.html", ""] in provenance
    _view(page, "results/report/provenance.html")
    context = page.frame_context("filename=provenance.html")
    tree = page.wait_for("document.readyState === 'complete' && document.querySelector('pre') &&"
                         " document.querySelector('pre').textContent", context)
    assert tree.startswith("results/tables/linear_classification.csv [tables] sha256:")
    assert "[raw directory" in tree

    _menu(page, "Run time and memory")
    _view(page, "results/report/benchmarks.html")
    jobs = {row[0] for row in _frame_rows(page, "benchmarks.html")[1:]}
    on_disk = {p.relative_to(tiny_run / "results/benchmarks").with_suffix("").as_posix()
               for p in (tiny_run / "results/benchmarks").rglob("*.tsv")}
    assert jobs - {"report/benchmarks"} == on_disk - {"report/benchmarks"}  # its own: from an earlier build only
    assert {"sections", "pretrain", "evaluate/zero_shot/rsna/imitate"} <= jobs
