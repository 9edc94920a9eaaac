"""What each job asks of a machine: resources on every rule, the profiles, the formulas against measurements.

The plans are Snakemake's own dry runs (the job blocks it prints), with the auto-loaded default profile
and with profiles/slurm, on the demo config and on config/mimic.yaml pointed at placeholder raw files. The
formulas of :mod:`imitate.scheduling.resources` are checked against the figures docs/benchmarks.md
measured, and the declared memory against what every job of the tiny run used (its benchmark files).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from imitate.scheduling import resources as res
from tests.helpers.real_tree import snakemake, write_placeholder_world
from tests.helpers.workflow import ROOT, TINY, run_snakemake

SLURM = ROOT / "profiles" / "slurm"
GPU_RULES = {"pretrain", "pretrain_experiment", "embed", "embed_variant", "evaluate", "evaluate_dense",
             "evaluate_experiment", "evaluate_dense_experiment"}
LOCAL_RULES = {"preflight", "demo_data", "embed_map", "loss_curve", "loss_curve_experiment", "tables",
               "provenance_catalog", "export", "ablation", "report_results", "report_counts",
               "report_provenance", "report_benchmarks", "all"}
# rules whose wall time scales with a Parquet input: <TBD> in a plan until that input is written
SCALED = {"shards", "dataset_shards", "embed", "embed_variant", "pretrain", "pretrain_experiment", "evaluate",
          "evaluate_dense", "evaluate_experiment", "evaluate_dense_experiment"}

# Loads the workflow through Snakemake's API in a fresh interpreter (the Snakefile sets the umask) and
# prints each rule's logs, declared resources and whether it runs where Snakemake runs.
RULES_SCRIPT = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(sys.argv[1]),
                            config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[2:]]),
                            workdir=Path.cwd())._workflow
    print(json.dumps({r.name: {"log": [str(f) for f in r.log], "resources": sorted(r.resources),
                               "local": r.name in workflow._localrules or r.norun} for r in workflow.rules}))
"""


def _rules(workdir: Path, *configfiles: Path) -> dict[str, dict]:
    run = subprocess.run([sys.executable, "-c", RULES_SCRIPT, str(ROOT / "Snakefile"), *map(str, configfiles)],
                         capture_output=True, text=True, cwd=workdir, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _jobs(stdout: str) -> list[tuple[str, dict[str, str], int]]:
    """(rule, resources, threads) of every job block a dry run printed."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", stdout, flags=re.MULTILINE)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        line = re.search(r"^\s+resources: (.+)$", block, flags=re.MULTILINE)
        found = dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {}
        threads = re.search(r"^\s+threads: (\d+)$", block, flags=re.MULTILINE)
        jobs.append((rule, found, int(threads.group(1)) if threads else 1))
    return jobs


def _check_plan(stdout: str, *, gpu: int, partitions: bool) -> list[tuple[str, dict[str, str], int]]:
    jobs = _jobs(stdout)
    assert len(jobs) > 30
    for rule, found, _ in jobs:
        if rule == "all":
            continue
        assert re.fullmatch(r"\d+", found.get("mem_mb", "")), (rule, found)
        runtime = r"\d+|<TBD>" if rule in SCALED else r"\d+"
        assert re.fullmatch(runtime, found.get("runtime", "")), (rule, found)
        if rule in GPU_RULES:
            assert found["gpu"] == str(gpu), (rule, found)
        if partitions:
            assert found["slurm_partition"] == ("gpu" if rule in GPU_RULES else "cpu"), (rule, found)
        else:
            assert "slurm_partition" not in found, rule
    return jobs


# --- every rule -------------------------------------------------------------------------------------


def test_every_rule_has_one_log_and_declares_memory_and_time_and_the_light_ones_run_locally(tmp_path):
    rules = _rules(tmp_path, TINY)
    assert {"sections", "shards", "pretrain", "evaluate_dense", "ablation"} <= set(rules)
    for name, rule in rules.items():
        if name == "all":  # the default target runs nothing
            continue
        assert len(rule["log"]) == 1, name
        assert {"mem_mb", "runtime"} <= set(rule["resources"]), name
    assert {name for name, rule in rules.items() if "gpu" in rule["resources"]} == GPU_RULES
    demo_writers = {name for name in rules if name.startswith("dataset_demo_")}
    assert demo_writers
    assert {name for name, rule in rules.items() if rule["local"]} == LOCAL_RULES | demo_writers


def test_a_table_source_swaps_the_demo_writer_for_its_own_rule(tmp_path):
    overlay = tmp_path / "table.yaml"
    overlay.write_text(yaml.safe_dump({"data": {
        "source": "table", "table": "exports/reports.csv",
        "columns": {"path": "path", "patient": "patient_id", "study": "study_id", "report": "report"}}}))
    rules = _rules(tmp_path, TINY, overlay)
    assert "demo_data" not in rules
    source = rules["source_table"]
    assert len(source["log"]) == 1 and {"mem_mb", "runtime"} <= set(source["resources"]) and not source["local"]


# --- the plans ----------------------------------------------------------------------------------------


def test_demo_plan_with_the_default_profile_shows_resources_on_every_job(tmp_path):
    run = run_snakemake(tmp_path, "--dry-run")
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"workflow specific profile {ROOT / 'profiles' / 'default'}" in run.stderr  # found from elsewhere
    jobs = _check_plan(run.stdout, gpu=0, partitions=False)
    sections = next(found for rule, found, _ in jobs if rule == "sections")
    assert sections["runtime"] == str(res.BASE_MINUTES)


def test_demo_plan_with_the_slurm_profile_names_a_partition_for_every_job(tmp_path):
    run = run_snakemake(tmp_path, "--dry-run", "--profile", str(SLURM))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"profiles {SLURM} and workflow specific profile" in run.stderr
    _check_plan(run.stdout, gpu=0, partitions=True)


@pytest.fixture(scope="module")
def placeholder_world(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("placeholders")
    write_placeholder_world(base)
    return base


@pytest.mark.parametrize("profile", [(), ("--profile", str(SLURM))], ids=["default", "slurm"])
def test_template_plan_asks_for_a_gpu_on_the_cuda_stages_and_resources_on_every_job(placeholder_world, profile):
    base = placeholder_world
    run = snakemake(base / "work", "--dry-run", "--configfile", str(base / "my-run.yaml"), *profile,
                    env={"TORCH_HOME": str(base / "torch")})
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = _check_plan(run.stdout, gpu=1, partitions=bool(profile))  # the template runs every GPU stage on cuda
    pretrain = next(found for rule, found, _ in jobs if rule == "pretrain")
    # config/mimic.yaml: 8 loader workers beside the trainer (1 GB each), doubled
    assert pretrain["mem_mb"] == str(2 * (res.TORCH_MB + 8 * res.LOADER_WORKER_MB))


def test_the_default_profile_leaves_the_keys_a_cluster_profile_sets_to_it():
    """A key of the auto-loaded profile replaces the same key of --profile: these would drop the SLURM
    profile's partitions (default-resources, set-resources) or cap every cluster job's threads (cores)."""
    default = yaml.safe_load((ROOT / "profiles/default/config.yaml").read_text())
    slurm = yaml.safe_load((SLURM / "config.yaml").read_text())
    assert not {"default-resources", "set-resources", "cores", "jobs", "executor"} & set(default)
    assert not set(default) & set(slurm)
    assert slurm["executor"] == "slurm" and slurm["retries"] >= 1
    assert set(slurm["set-resources"]) == GPU_RULES


# --- the formulas against measurements ------------------------------------------------------------


def test_the_estimates_cover_the_measured_runs():
    # docs/benchmarks.md, "Image shards": MIMIC-CXR's 377,110 images on 16 processes, projected 19-20 min
    assert 20 <= res.shards_minutes(377_110, 16, 1) <= 2 * 20 + res.BASE_MINUTES + 1
    # "Demo main job": pretraining 10 epochs x 1,160 images, ResNet18, crop 64, one thread: 5 min 34 s
    demo = {"epochs": 10, "crop_size": 64, "threads": 1, "device": "cpu"}
    assert 5.6 <= res.pretrain_minutes(1160, demo, "resnet18", 0, 1) <= 4 * 5.6 + res.BASE_MINUTES
    # "Demo main job": embed, 2,680 texts of 1,340 studies on 2 threads: 16 s
    assert res.embed_minutes(1340, "cpu", 2, 1) >= 16 / 60
    # "Quick start with segmentation and detection": a dense job on 400 RSNA images, 64 px, at most
    # 5 epochs, 2 seeds, subsets of 1, 10 and 100 %: up to 71 s
    dense = res.evaluate_minutes("segmentation", 400, {"epochs": 5}, 64, [0, 1], [1, 10, 100], "cpu", 1)
    assert 71 / 60 <= dense <= 30
    # a retry asks for twice the time and memory
    assert res.shards_minutes(377_110, 16, 2) >= 2 * res.shards_minutes(377_110, 16, 1) - 1
    assert res.pool_mb(8, 2) == 2 * res.pool_mb(8, 1)


def test_gpus_follow_the_device():
    assert (res.gpus("cuda"), res.gpus("cpu")) == (1, 0)


def test_rows_read_the_footer_and_a_missing_input_is_left_to_be_determined(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(123))}), path, row_group_size=50)
    assert res.rows(path) == 123
    missing = tmp_path / "none.parquet"
    with pytest.raises(FileNotFoundError) as caught:
        res.rows(str(missing))
    assert caught.value.filename == str(missing)  # Snakemake shows <TBD> only for its job's own input


def test_every_job_of_the_tiny_run_declared_more_memory_than_it_used(tiny_run):
    run = run_snakemake(tiny_run, "--dry-run", "--forceall")
    assert run.returncode == 0, run.stderr[-3000:]
    declared = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", run.stdout, flags=re.MULTILINE)[1:]:
        benchmark = re.search(r"^\s+benchmark: (\S+)$", block, flags=re.MULTILINE)
        mem = re.search(r"mem_mb=(\d+)", block)
        if benchmark:
            assert mem and re.search(r"runtime=\d+", block), block[:300]  # every input exists: numbers
            declared[benchmark.group(1)] = int(mem.group(1))
    assert len(declared) > 30
    for path, mem_mb in declared.items():
        used = float(next(csv.DictReader((tiny_run / path).open(), delimiter="\t"))["max_rss"])
        assert used < mem_mb, (path, used, mem_mb)


# --- format ------------------------------------------------------------------------------------------


def test_the_workflow_files_are_snakefmt_clean():
    run = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "."], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
