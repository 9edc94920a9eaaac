"""The real-data template, tested as it ships: config/mimic.yaml planned and run against a scratch tree.

A user copies config/mimic.yaml, points its roots at their raw files and its encoder at a local copy,
and runs ``snakemake --cores all --configfile my-run.yaml``. These tests do exactly that: a dry run
against a tree of placeholder files (what the plan holds), and a rehearsal of the whole pipeline on
demo-format raw files in a temporary tree laid out as the README says, with only sizes, epochs and
devices shrunk by a second config file.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from imitate.config import load_run_config
from tests.helpers.real_tree import (
    BACKBONE,
    DEMO_CONFIG,
    TEMPLATE,
    snakemake,
    tree_digest,
    used_datasets,
    write_imagenet_weights,
    write_placeholder_world,
    write_raw_world,
)
from tests.helpers.workflow import TINY


def _template() -> dict:
    return yaml.safe_load(TEMPLATE.read_text())


def test_the_template_is_complete_on_its_own():
    config = load_run_config([TEMPLATE])  # validates: every required key is in the template itself
    assert config["data"]["source"] == "mimic" and "demo" not in config
    assert not [name for name, entry in config["datasets"].items() if "demo" in entry]
    assert config == _template()  # nothing merged in from config.yaml


def test_without_a_configfile_the_demo_config_is_used_alone():
    assert load_run_config([]) == yaml.safe_load(DEMO_CONFIG.read_text())


def test_config_files_merge_in_order_without_the_demo(tmp_path):
    override = tmp_path / "small.yaml"
    override.write_text("pretrain: {epochs: 2}\ndatasets: {rsna: {image_size: 64}}\n")
    config = load_run_config([TEMPLATE, override])
    assert config["pretrain"]["epochs"] == 2 and config["pretrain"]["lr"] == 4.0e-5
    assert config["datasets"]["rsna"] == {**_template()["datasets"]["rsna"], "image_size": 64}
    assert "demo" not in config


@pytest.fixture(scope="module")
def placeholder_world(tmp_path_factory) -> tuple[Path, dict]:
    """The template with its roots under a tmp tree of empty placeholder raw files (enough to plan)."""
    base = tmp_path_factory.mktemp("placeholders")
    return base, write_placeholder_world(base)


def _plan(base: Path, *args: str) -> subprocess.CompletedProcess:
    """A dry run of the placeholder world, with its torch cache."""
    return snakemake(base / "work", "--dry-run", "--printshellcmds", *args, env={"TORCH_HOME": str(base / "torch")})


def _planned_jobs(stdout: str) -> list[str]:
    return re.findall(r"^rule (\w+):", stdout, flags=re.MULTILINE)


def test_dry_run_of_the_template_plans_no_demo_job_and_no_write_into_raw_data(placeholder_world):
    base, _ = placeholder_world
    run = _plan(base, "--configfile", str(base / "my-run.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = _planned_jobs(run.stdout)
    assert "pretrain" in jobs and "evaluate" in jobs and "tables" in jobs
    assert not [job for job in jobs if "demo" in job]
    outputs = [path for line in re.findall(r"^\s+output: (.+)$", run.stdout, flags=re.MULTILINE)
               for path in line.split(", ")]
    assert outputs and all(path.startswith("results/") for path in outputs)
    assert str(base / "data") not in "".join(re.findall(r"^\s+(?:output|log): .+$", run.stdout, re.MULTILINE))


def test_dry_run_uses_the_template_s_options_and_split_for_every_dataset(placeholder_world):
    base, config = placeholder_world
    run = _plan(base, "--until", "dataset", "--configfile", str(base / "my-run.yaml"))
    assert run.returncode == 0, run.stderr[-3000:]
    commands = {m.group(1): m.group(0) for m in re.finditer(r"imitate dataset (\w+) .*", run.stdout)}
    assert set(commands) == set(used_datasets(config))
    for name, command in commands.items():
        entry = _template()["datasets"][name]
        options = json.loads(re.search(r"--options '([^']*)'", command).group(1))
        assert options == entry.get("options", {}), name
        split = re.search(r"--split '([^']*)'", command)
        assert (json.loads(split.group(1)) if split else None) == entry.get("split"), name
    assert re.search(r'--split \'\{"validate": 5000\}\'', commands["chexpert"])


def test_a_key_the_real_config_leaves_out_takes_the_schema_default_not_the_demo_value(placeholder_world, tmp_path):
    base, _ = placeholder_world
    template = yaml.safe_load((base / "my-run.yaml").read_text())
    del template["pretrain"]["rotation_degrees"]  # the demo says 15, the schema (the paper) 180
    del template["evaluate"]["segmentation"]["alpha"]  # the demo says 1, the paper 10
    copy = tmp_path / "trimmed.yaml"
    copy.write_text(yaml.safe_dump(template))
    run = _plan(base, "--forceall", "--configfile", str(copy))
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"rotation_degrees": 180' in run.stdout and '"rotation_degrees": 15' not in run.stdout
    assert '"alpha": 10' in run.stdout and '"alpha": 1,' not in run.stdout


def test_a_demo_copy_into_a_real_root_is_refused_at_load_time(tmp_path):
    override = tmp_path / "raw-demo.yaml"
    raw = tmp_path / "raw" / "rsna"
    override.write_text(yaml.safe_dump({"datasets": {"rsna": {"root": str(raw)}}}))
    run = snakemake(tmp_path, "--dry-run", "--configfile", str(TINY), str(override))
    assert run.returncode != 0
    assert f"rule dataset_demo_rsna writes '{raw}/stage_2_train_labels.csv' inside datasets.rsna.root" in run.stdout
    assert not raw.exists()


def test_demo_mimic_outside_results_is_refused(tmp_path):
    override = tmp_path / "raw-mimic.yaml"
    override.write_text(yaml.safe_dump({"data": {"root": str(tmp_path / "physionet")}}))
    run = snakemake(tmp_path, "--dry-run", "--configfile", str(TINY), str(override))
    assert run.returncode != 0 and "rule demo_data writes" in run.stdout and "inside data.root" in run.stdout


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess, dict, dict]:
    """The shipped template run end to end on a scratch tree of real-format raw files."""
    base = tmp_path_factory.mktemp("rehearsal")
    config = write_raw_world(base)
    write_imagenet_weights(base / "torch", BACKBONE)  # the override's backbone
    (base / "work").mkdir()
    before = tree_digest(base / "data")
    run = snakemake(base / "work", "--configfile", str(base / "my-run.yaml"), str(base / "small.yaml"),
                     env={"TORCH_HOME": str(base / "torch")})
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted((base / "work/logs").rglob("*.log")))
        pytest.fail(f"the rehearsal failed:\n{run.stderr[-4000:]}\n{logs[-8000:]}")
    return base, config, run, before, tree_digest(base / "data")


def test_rehearsal_writes_nothing_under_the_raw_roots(rehearsal):
    _, _, _, before, after = rehearsal
    assert before and after == before


def test_rehearsal_runs_no_demo_rule(rehearsal):
    base, _, run, _, _ = rehearsal
    work = base / "work"
    assert not [job for job in re.findall(r"rule (\w+):", run.stdout + run.stderr) if "demo" in job]
    assert not [log for log in (work / "logs").rglob("*.log") if "demo" in log.name]
    stages = {json.loads(p.read_text())["stage"] for p in (work / "results").rglob("*.provenance.json")}
    assert {"sections", "manifest", "shards", "embed", "pretrain", "dataset", "tables"} <= stages
    assert any(stage.startswith("evaluate") for stage in stages)
    assert not {"demo-data", "dataset-demo"} & stages


def test_rehearsal_prepares_every_dataset_with_the_template_s_options_and_split(rehearsal):
    base, config, _, _, _ = rehearsal
    template = _template()
    for name in used_datasets(config):
        facts = json.loads(pq.read_schema(base / f"work/results/datasets/{name}/records.parquet")
                           .metadata[b"imitate.dataset"])
        entry = template["datasets"][name]
        assert facts["options"] == {**facts["options"], **entry.get("options", {})}, name
        if "split" in entry:
            assert facts["split_draw"] == entry["split"], name
        assert facts["seed"] == template["seed"], name
    chexpert = json.loads((base / "work/results/datasets/chexpert/counts.json").read_text())
    assert chexpert["by_split"]["validate"] == 5000  # Table II, from the template, not the demo's 60


def test_rehearsal_tables_mark_the_datasets_as_real(rehearsal):
    base, _, _, _, _ = rehearsal
    tables = base / "work/results/tables"
    for task in ("linear_classification", "finetune_classification", "segmentation", "detection", "zero_shot"):
        markdown = (tables / f"{task}.md").read_text()
        assert "(paper)" in markdown, task  # the paper's rows appear beside datasets holding real files
    rows = list(csv.DictReader((tables / "linear_classification.csv").open()))
    assert {r["method"] for r in rows} == {"imitate", "random_init", "imagenet_init"}
    assert {r["run_id"] for r in rows} == {"mimic-imitate-r50"}


def test_rehearsal_second_run_has_nothing_to_do(rehearsal):
    base, _, _, _, _ = rehearsal
    run = snakemake(base / "work", "--dry-run", "--configfile", str(base / "my-run.yaml"), str(base / "small.yaml"),
                     env={"TORCH_HOME": str(base / "torch")})
    assert run.returncode == 0 and "Nothing to be done" in run.stdout + run.stderr
