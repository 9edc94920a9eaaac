"""data.source: table in the workflow: the tiny run's demo, read from its exports/reports.csv, pretrains the same.

A copy of the tiny run's demo MIMIC-CXR is read through ``data.source: table`` (the tiny config
otherwise) up to pretraining, and everything is compared with the tiny run's MIMIC-layout run: the
manifest's counts and tables, the shards byte for byte, and the pretrained weights.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from safetensors.numpy import load_file

from tests.helpers.workflow import TINY, run_snakemake

DEMO = "results/demo_data/physionet.org"
TABLE_DATA = {
    "source": "table",
    "table": "exports/reports.csv",
    "columns": {"path": "path", "patient": "patient_id", "study": "study_id", "image": "image_id", "view": "view",
                "split": "split", "report": "report"},
}
TARGETS = ("results/pretrain/model.safetensors", "results/pretrain/encoder.safetensors")


@pytest.fixture(scope="module")
def table_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("table_source") / "work"
    shutil.copytree(tiny_run / DEMO, workdir / DEMO, symlinks=True)
    overlay = workdir.parent / "table.yaml"
    overlay.write_text(yaml.safe_dump({"data": TABLE_DATA}))
    run = run_snakemake(workdir, *TARGETS, "--configfile", str(TINY), str(overlay))  # targets before the files
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{run.stderr[-5000:]}\n{logs[-10000:]}")
    return workdir, run


def _table(path: Path):
    return pq.read_table(path).replace_schema_metadata(None)


def test_the_table_source_runs_its_stage_and_no_demo_writer(table_run):
    workdir, run = table_run
    jobs = re.findall(r"^(\w+)\s+\d+$", run.stderr.split("Job stats:", 1)[1].split("\n\n", 1)[0], flags=re.M)
    assert "source_table" in jobs and "demo_data" not in jobs
    counts = json.loads((workdir / "results/source/counts.json").read_text())
    assert counts["rejects"] == 0 and counts["rows"] == counts["images"] > 0 and counts["split"] == "column"


def test_the_manifest_is_the_mimic_layouts(table_run, tiny_run):
    workdir, _ = table_run
    ours = json.loads((workdir / "results/manifest/counts.json").read_text())
    theirs = json.loads((tiny_run / "results/manifest/counts.json").read_text())
    # the table names files, not image trees: its images are counted by extension, one tree each here
    by_ext, by_tree = ours.pop("images_by_tree"), theirs.pop("images_by_tree")
    assert by_ext == {"*.dcm": by_tree["mimic-cxr/2.0.0/files/*.dcm"],
                      "*.jpg": by_tree["mimic-cxr-jpg/2.0.0/files/*.jpg"]}
    assert ours == theirs
    for name in ("images", "studies", "rejects"):
        assert _table(workdir / f"results/manifest/{name}.parquet").equals(
            _table(tiny_run / f"results/manifest/{name}.parquet")), name


def test_the_shards_are_byte_identical(table_run, tiny_run):
    workdir, _ = table_run
    ours = sorted(p.relative_to(workdir) for p in (workdir / "results/shards").rglob("*.tar"))
    assert ours and ours == sorted(p.relative_to(tiny_run) for p in (tiny_run / "results/shards").rglob("*.tar"))
    for rel in ours:
        assert (workdir / rel).read_bytes() == (tiny_run / rel).read_bytes(), rel
    shard_manifest = "results/shards/manifest.parquet"
    assert _table(workdir / shard_manifest).equals(_table(tiny_run / shard_manifest))


def test_the_pretrained_weights_are_the_same(table_run, tiny_run):
    workdir, _ = table_run
    for target in TARGETS:
        ours, theirs = load_file(workdir / target), load_file(tiny_run / target)
        assert ours.keys() == theirs.keys()
        assert all((ours[k] == theirs[k]).all() for k in ours), target
