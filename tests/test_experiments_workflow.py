"""Two experiments on the tiny workflow (a stronger prior, and one text layer trained: Table XI): shared
stages are not recomputed, each experiment's encoder is evaluated, the tables hold both, provenance
follows each branch, and an edit reruns one experiment only.

The experiments run in a copy of the tiny run's tree (its .snakemake metadata included), so the jobs of
this run are exactly what the experiments add to a finished base run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from tests.helpers.workflow import TINY, run_snakemake

EXPERIMENTS = {
    "strong_prior": {"label": "λ 0.6", "pretrain": {"lambda": 0.6}},
    "unfrozen": {"label": "Unfreeze_1", "pretrain": {"text_unfreeze": 1}},  # Table XI, through the rules
}
ABLATIONS = {
    "prior": {"title": "Prior strength", "rows": ["base", "strong_prior"], "plot": "pretrain.lambda",
              "columns": [{"task": "linear_classification", "dataset": "toy", "fraction": 100}]},
    "text": {"title": "Text layers", "rows": ["unfrozen", "base"], "trainable_parameters": True,
                "columns": [{"task": "segmentation", "dataset": "rsna", "fraction": 50}]},
}


def _overlay(path: Path, experiments: dict) -> Path:
    path.write_text(yaml.safe_dump({"experiments": experiments, "ablations": ABLATIONS}, allow_unicode=True))
    return path


def _job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table Snakemake prints before running (or planning) the jobs."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, flags=re.MULTILINE)}
    counts.pop("total", None)
    return counts


@pytest.fixture(scope="module")
def experiment_run(tiny_run, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("experiments") / "work"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    overlay = _overlay(workdir.parent / "experiments.yaml", EXPERIMENTS)
    run = run_snakemake(workdir, "--configfile", str(TINY), str(overlay))
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{run.stderr[-5000:]}\n{logs[-10000:]}")
    return workdir, run


def test_shared_stages_are_not_recomputed_and_each_experiment_trains_once(experiment_run):
    _, run = experiment_run
    jobs = _job_counts(run.stderr)
    for shared in ("sections", "manifest", "shards", "embed", "dataset", "dataset_shards", "pretrain", "evaluate",
                   "evaluate_dense"):
        assert shared not in jobs, shared
    assert jobs["embed_variant"] == 1  # token ids; the prior shares the base's embeddings
    assert jobs["pretrain_experiment"] == 2 and jobs["loss_curve_experiment"] == 2
    assert jobs["evaluate_experiment"] == 1 and jobs["evaluate_dense_experiment"] == 1  # each table's column
    assert jobs["ablation"] == 2


def test_each_experiment_pretrains_on_its_embeddings(experiment_run):
    workdir, _ = experiment_run
    from imitate.provenance.lineage import read_record

    used = {name: read_record(workdir / f"results/experiments/{name}/pretrain/encoder.safetensors")["inputs"]
            ["embeddings"]["path"] for name in EXPERIMENTS}
    assert used["strong_prior"] == "results/embed/embeddings.parquet"
    assert re.fullmatch(r"results/embed/[0-9a-f]{12}/embeddings\.parquet", used["unfrozen"])
    assert "findings_input_ids" in pq.read_schema(workdir / used["unfrozen"]).names
    card = read_record(workdir / "results/experiments/strong_prior/pretrain/encoder.safetensors")
    assert card["experiment"] == "strong_prior" and '"lambda": 0.6' in str(card["settings"]).replace("'", '"')


def test_the_task_table_holds_the_base_and_the_experiment(experiment_run):
    workdir, _ = experiment_run
    table = pacsv.read_csv(workdir / "results/tables/linear_classification.csv").to_pylist()
    mine = [r for r in table if r["experiment"] == "strong_prior"]
    assert mine and {r["dataset"] for r in mine} == {"toy"} and {r["fraction"] for r in mine} == {100}
    assert {r["method"] for r in mine} == {"imitate"} and len({r["experiment_sha256"] for r in mine}) == 1
    assert {r["experiment"] for r in table} == {"base", "strong_prior"}
    assert "| imitate [strong_prior] |" in (workdir / "results/tables/linear_classification.md").read_text()


def test_the_ablation_table_holds_each_experiment_s_own_numbers(experiment_run):
    workdir, _ = experiment_run
    part = pq.read_table(workdir / "results/experiments/strong_prior/evaluate/linear_classification/toy"
                         / "imitate.parquet")
    values = [r["value"] for r in part.to_pylist() if r["fraction"] == "100" and r["metric"] == "auc_macro"]
    expected = np.array(values) * 100
    text = (workdir / "results/tables/ablations/prior.md").read_text()
    assert f"| λ 0.6 | {expected.mean():.2f} ± {expected.std(ddof=1):.2f} |" in text
    assert "| IMITATE |" in text
    rows = pacsv.read_csv(workdir / "results/tables/ablations/prior.csv").to_pylist()
    assert {(r["experiment"], r["x"]) for r in rows} == {("base", 0.2), ("strong_prior", 0.6)}
    for name in ("prior", "text"):
        assert (workdir / f"results/tables/ablations/{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_provenance_of_an_ablation_table_shows_each_experiment_s_branch(experiment_run):
    workdir, _ = experiment_run
    out = subprocess.run([sys.executable, "-m", "imitate", "provenance", "results/tables/ablations/text.csv"],
                         cwd=workdir, capture_output=True, text=True, check=True).stdout
    assert "results/experiments/unfrozen/pretrain/encoder.safetensors [pretrain]" in out
    assert "results/pretrain/encoder.safetensors [pretrain]" in out
    assert re.search(r"results/embed/[0-9a-f]{12}/embeddings\.parquet \[embed\]", out)


def test_the_catalog_answers_which_experiments_used_an_embeddings_file(experiment_run):
    workdir, _ = experiment_run
    query = ("SELECT DISTINCT a.experiment FROM edges e JOIN artifacts a ON a.path = e.output "
             "WHERE e.input = ? AND a.experiment IS NOT NULL ORDER BY 1")
    with duckdb.connect(str(workdir / "results/provenance.duckdb"), read_only=True) as con:
        shared = con.execute(query, ["results/embed/embeddings.parquet"]).fetchall()
        variants = con.execute("SELECT DISTINCT input FROM edges WHERE input LIKE 'results/embed/%/embeddings.parquet'"
                               ).fetchall()
        own = sorted(con.execute(query, [path]).fetchall() for (path,) in variants)
    assert shared == [("base",), ("strong_prior",)] and own == [[("unfrozen",)]]


def test_a_second_run_does_nothing_and_an_edit_reruns_only_that_experiment(experiment_run):
    workdir, _ = experiment_run
    overlay = workdir.parent / "experiments.yaml"
    again = run_snakemake(workdir, "--configfile", str(TINY), str(overlay), "--dry-run")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    edited = _overlay(workdir.parent / "edited.yaml", {**EXPERIMENTS, "strong_prior": {"pretrain": {"lambda": 0.7}}})
    plan = run_snakemake(workdir, "--configfile", str(TINY), str(edited), "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = _job_counts(plan.stdout + plan.stderr)
    # and what reads the tables: the export's card, the catalog and the report's pages (counts do not change)
    assert jobs == {"pretrain_experiment": 1, "loss_curve_experiment": 1, "evaluate_experiment": 1, "ablation": 1,
                    "tables": 1, "export": 1, "provenance_catalog": 1, "report_results": 1, "report_provenance": 1,
                    "report_benchmarks": 1, "all": 1}
    assert set(re.findall(r"experiment=(\w+)", plan.stdout)) == {"strong_prior"}


def test_the_report_holds_the_ablation_tables_and_each_experiment_s_loss_curve(experiment_run, tmp_path):
    workdir, _ = experiment_run
    report = tmp_path / "report.zip"
    out = run_snakemake(workdir, "--configfile", str(TINY), str(workdir.parent / "experiments.yaml"),
                        "--report", str(report))
    assert out.returncode == 0, out.stderr[-3000:]
    names = zipfile.ZipFile(report).namelist()
    for part in ("/prior.md", "/prior.png", "/text.csv", "/text.png"):
        assert any(n.endswith(part) for n in names), (part, names)
    assert sum(n.endswith("/loss_curve.png") for n in names) == 3  # the base's and each experiment's


def test_table_xi_trains_a_text_layer_through_the_rules_and_shows_its_parameters(experiment_run):
    workdir, _ = experiment_run
    cards = {name: json.loads((workdir / path / "pretrain/model_card.json").read_text())
             for name, path in (("unfrozen", "results/experiments/unfrozen"), ("base", "results"))}
    assert cards["unfrozen"]["text_unfreeze"] == 1 and cards["base"]["text_unfreeze"] == 0
    one_layer = cards["unfrozen"]["trainable_parameters"]["text"] - cards["base"]["trainable_parameters"]["text"]
    # one MiniLM layer: q, k, v, out 4 x (384 x 384 + 384); intermediate 384 x 1536 + 1536; output 1536 x 384 + 384;
    # two LayerNorms 2 x (2 x 384)
    assert one_layer == 4 * (384 * 384 + 384) + (384 * 1536 + 1536) + (1536 * 384 + 384) + 2 * 2 * 384
    millions = {name: sum(card["trainable_parameters"].values()) / 1e6 for name, card in cards.items()}
    text = (workdir / "results/tables/ablations/text.md").read_text()
    assert f"| Unfreeze_1 | {millions['unfrozen']:.1f} |" in text and f"| IMITATE | {millions['base']:.1f} |" in text
