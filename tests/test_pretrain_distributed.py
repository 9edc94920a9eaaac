"""Pretraining under ``torchrun``: two CPU ranks on gloo, and one process through the process group."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers.pretrain_shards import write_tiny_dataset

MODEL = {"backbone": "resnet18", "token_size": 4, "attn_dim": 32, "attn_heads": 2, "proj_dim": 16}
SETTINGS = {"crop_size": 32, "batch_size": 2, "epochs": 1, "lr": 1e-3, "weight_decay": 0.05, "workers": 0}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


def pretrain(launcher: list[str], manifest: Path, embeddings: Path, out: Path) -> subprocess.CompletedProcess:
    """``imitate pretrain`` on the tiny dataset, started by ``launcher``; fails the test if it fails."""
    command = [
        *launcher, "-m", "imitate", "pretrain", "--shards", str(manifest), "--embeddings", str(embeddings),
        "--model-settings", json.dumps(MODEL), "--settings", json.dumps(SETTINGS), "--out-dir", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def steps_logged(out: Path) -> int:
    return sum(1 for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["type"] == "step")


@pytest.mark.parametrize("poisoned", [False, True], ids=["clean", "nan-in-a-study"])
def test_two_cpu_ranks_under_torchrun_end_with_identical_weights(tmp_path: Path, poisoned: bool):
    manifest, embeddings = write_tiny_dataset(tmp_path)
    if poisoned:  # a NaN in one training study's text: each rank must skip the same steps
        table = pq.read_table(embeddings)
        impression = np.array(table["impression_emb"].to_pylist(), dtype=np.float16)
        impression[0, 0] = np.nan
        column = pa.array(impression.tolist(), table.schema.field("impression_emb").type)
        pq.write_table(table.set_column(2, "impression_emb", column), embeddings)
    out = tmp_path / "ddp"
    result = pretrain([*TORCHRUN, "2"], manifest, embeddings, out)
    digests = dict(re.findall(r"rank (\d) of 2: final weights sha256 (\w+)", result.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], result.stderr[-4000:]
    card = json.loads((out / "model_card.json").read_text())
    assert card["steps"] == 2  # 8 images / (2 ranks x batch 2) per epoch
    assert card["skipped_steps"] == (1 if poisoned else 0)
    record = json.loads((out / "encoder.safetensors.provenance.json").read_text())
    assert record["settings"]["world_size"] == 2 and record["settings"]["torchrun"] is True
    assert steps_logged(out) == 2


def test_one_process_under_torchrun_runs_the_distributed_path_and_trains_as_a_plain_run(tmp_path: Path):
    """World size 1 through the process group (DDP, gathers): what one GPU rehearses before many."""
    manifest, embeddings = write_tiny_dataset(tmp_path)
    plain = pretrain([sys.executable], manifest, embeddings, tmp_path / "plain")
    single = pretrain([*TORCHRUN, "1"], manifest, embeddings, tmp_path / "torchrun")
    assert "process group: rank 0 of 1, backend gloo" in single.stderr, single.stderr[-4000:]
    assert "process group" not in plain.stderr
    for name in ("encoder.safetensors", "model.safetensors"):  # CPU runs are deterministic: the same bytes
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "torchrun" / name).read_bytes(), name
    torchrun = {
        run: json.loads((tmp_path / run / "encoder.safetensors.provenance.json").read_text())["settings"]["torchrun"]
        for run in ("plain", "torchrun")
    }
    assert torchrun == {"plain": False, "torchrun": True}
    assert steps_logged(tmp_path / "torchrun") == steps_logged(tmp_path / "plain") == 4
