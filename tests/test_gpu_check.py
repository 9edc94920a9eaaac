"""benchmarks/gpu_check.py in its CPU rehearsal (``--device cpu --tiny``), so the GPU check never rots,
and its workflow comparison on runs broken on purpose, so that its checks can fail."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.workflow import ROOT

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def workflow_checks():
    """The check's workflow module, imported as the script imports it (from benchmarks/)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import gpu_check_workflow

        yield gpu_check_workflow
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_the_cpu_rehearsal_runs_every_part(tiny_run, tmp_path):
    out = tmp_path / "check"
    command = [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--tiny", "--out", str(out),
               "--reference", str(tiny_run), "--cores", "2"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["errors"] == {} and set(report["parts"]) == {"pretrain", "text", "workflow", "dense"}
    (eager,) = report["parts"]["pretrain"]
    assert eager["compile"] is False and eager["last_loss"] is not None
    for rate in (eager["model_in_memory"]["images_per_s"], eager["pipeline_from_shards"]["images_per_s"]):
        assert rate > 0
    assert eager["train_images_in_shards"] > 0 and 0 <= eager["pipeline_from_shards"]["data_wait_share"] < 1
    profile = eager["profile"]  # the targets are missed on a CPU, so the profiler ran
    assert profile["steps"] == 5 and profile["top_cpu_ops"] and profile["next_batch_cpu_ms"] > 0
    text = report["parts"]["text"]
    assert text["reports"] == text["rows_out"] == 200 and 0 < text["distinct_texts"] <= text["texts"] <= 400
    flow = report["parts"]["workflow"]
    assert flow["failed"] == [] and flow["passed"] == len(flow["checks"]) > 20
    dense = {d["task"]: d for d in report["parts"]["dense"]}
    assert set(dense) == {"segmentation", "detection"}
    for task in dense.values():  # the real evaluation jobs, two epochs each, timed from their logs
        assert [e["epoch"] for e in task["epochs"]] == [1, 2] and all(e["images_per_s"] > 0 for e in task["epochs"])
        assert task["train_images"] > 0 and task["job_seconds"] > 0
    assert set(dense["segmentation"]["metrics"]) == {"dice", "dice_positive", "dice_negative"}
    assert {"map", "ap40", "ap75"} <= set(dense["detection"]["metrics"])
    markdown = (out / "gpu_check.md").read_text()
    assert "TINY rehearsal" in markdown and "| tiny workflow, CPU vs cpu |" in markdown
    assert tiny_run.joinpath("results/tables/zero_shot.csv").is_file()  # the reference was copied, not changed


def _rewrite_table(path: Path, edit) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = edit(rows)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_the_comparison_catches_lost_rows_non_finite_metrics_and_other_devices(tiny_run, tmp_path, workflow_checks):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run / "results", broken / "results")
    assert all(c["ok"] for c in workflow_checks.compare_tables(tiny_run, broken))

    table = broken / "results/tables/linear_classification.csv"
    _rewrite_table(table, lambda rows: rows[1:])  # a lost row
    _rewrite_table(broken / "results/tables/retrieval.csv", lambda rows: [{**rows[0], "value": "nan"}, *rows[1:]])
    failed = {c["check"] for c in workflow_checks.compare_tables(tiny_run, broken) if not c["ok"]}
    assert failed == {"results/tables/linear_classification.csv: same rows",
                      "results/tables/retrieval.csv: metrics finite"}

    checks = {c["check"]: c["ok"] for c in workflow_checks.compare_provenance(tiny_run, broken, "cpu")}
    assert all(checks.values()), checks
    checks = {c["check"]: c["ok"] for c in workflow_checks.compare_provenance(tiny_run, broken, "cuda")}
    assert checks["provenance: settings say device cuda"] is False  # the records say cpu
    assert checks["provenance: the GPU is named"] is False
    for record in broken.joinpath("results/evaluate/retrieval").rglob("*.provenance.json"):
        record.unlink()  # an evaluation task whose records are gone
    checks = {c["check"]: c["ok"] for c in workflow_checks.compare_provenance(tiny_run, broken, "cpu")}
    assert checks["provenance: every embed, pretrain and evaluation stage recorded"] is False


def test_settings_devices_reads_nested_settings(workflow_checks):
    settings = {"device": "cuda", "text_settings": {"device": "cpu", "map": {"studies": 5}}, "seeds": [{"device": "x"}]}
    assert workflow_checks.settings_devices(settings) == {"cuda", "cpu", "x"}
