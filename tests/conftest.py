"""Shared fixtures: one tiny end-to-end run of the workflow, reused by every test that inspects it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny.yaml"


def run_snakemake(workdir: Path, *args: str, snakefile: Path = ROOT / "Snakefile") -> subprocess.CompletedProcess:
    """``snakemake`` on the tiny config in ``workdir``, with this interpreter's environment."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
           "--configfile", str(TINY), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=workdir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A workdir in which the whole workflow has run on the tiny config."""
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    run = run_snakemake(workdir)
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{run.stderr[-5000:]}\n{logs}")
    return workdir


@pytest.fixture
def one_torch_thread():
    """Tiny models run as fast on one thread, and two slow down badly when the cores are busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
