"""Shared fixtures: one tiny end-to-end run of the workflow, reused by every test that inspects it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.workflow import run_snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A workdir in which the whole workflow has run on the tiny config."""
    workdir = tmp_path_factory.mktemp("tiny_workflow")
    run = run_snakemake(workdir)
    if run.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        pytest.fail(f"snakemake failed:\n{run.stderr[-5000:]}\n{logs}")
    return workdir


@pytest.fixture(scope="module")
def text():
    """The text encoder of the joint space (a real MiniLM), once per test module (zero-shot, retrieval)."""
    from imitate.embed.embeddings import EmbedSettings
    from imitate.evaluate.vision_language import TextSettings, load_text_tower

    return load_text_tower(TextSettings(embed=EmbedSettings(max_length=32, batch_size=8)))


@pytest.fixture
def one_torch_thread():
    """Tiny models run as fast on one thread, and two slow down badly when the cores are busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
