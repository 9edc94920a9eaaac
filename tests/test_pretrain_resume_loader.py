"""SIGTERM mid-epoch and ``--resume`` with the real WebDataset loader and two DataLoader workers.

``test_pretrain.py`` interrupts and resumes a run fed by an in-memory loader. Here ``imitate pretrain``
runs as a subprocess on real shards with ``workers: 2`` and is sent SIGTERM once a step of the second
epoch is in its metrics log: its main process alone (``kill PID``, a launcher forwarding preemption), or
its whole process group, workers included (SLURM's ``scancel`` and preemption). It is then resumed; its
weights and step records must be those of a run that was never interrupted.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds
from PIL import Image
from safetensors.torch import load_file

from imitate.embed.store import METADATA_KEY

DIM = 8
TRAIN_SHARDS, PER_SHARD, VAL_IMAGES = 2, 8, 4
MODEL = {"backbone": "resnet18", "token_size": 4, "attn_dim": 16, "attn_heads": 2, "proj_dim": 8}
SETTINGS = {
    "crop_size": 32,
    "batch_size": 2,
    "epochs": 2,
    "lr": 1e-3,
    "weight_decay": 0.05,
    "workers": 2,
    "rotation_degrees": 15.0,
}
STEPS_PER_EPOCH = TRAIN_SHARDS * PER_SHARD // SETTINGS["batch_size"]  # 8
TOTAL_STEPS = STEPS_PER_EPOCH * SETTINGS["epochs"]
WEIGHTS = ("model.safetensors", "encoder.safetensors")
VOLATILE = ("images_per_s", "seconds")  # timings: the only fields of a metrics record that may differ


def write_dataset(root: Path) -> tuple[Path, Path]:
    """Two train shards of 8 images and one validate shard of 4, their manifest and text embeddings."""
    rng = np.random.default_rng(7)
    rows = []
    layout = [("train", s, PER_SHARD) for s in range(TRAIN_SHARDS)] + [("validate", 0, VAL_IMAGES)]
    for split, shard, n in layout:
        name = f"{split}-{shard:06d}.tar"
        with wds.TarWriter(str(root / name)) as sink:
            for _ in range(n):
                study, key = 60000000 + len(rows), f"{split}{len(rows):04d}"
                png = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (40, 44), dtype=np.uint8), mode="L").save(png, format="PNG")
                meta = {"key": key, "study_id": study, "split": split}
                sink.write({"__key__": key, "png": png.getvalue(), "json": json.dumps(meta).encode()})
                rows.append({"shard": name, "key": key, "study_id": study, "split": split})
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest.parquet")
    emb = pa.list_(pa.float16(), DIM)
    has_findings = [i % 3 != 0 for i in range(len(rows))]
    table = pa.table(
        {
            "study_id": pa.array([r["study_id"] for r in rows], pa.int64()),
            "findings_emb": pa.array([rng.normal(size=DIM).tolist() if f else None for f in has_findings], emb),
            "impression_emb": pa.array([rng.normal(size=DIM).tolist() for _ in rows], emb),
            "has_findings": pa.array(has_findings),
        }
    )
    facts = {"encoder": "tiny", "weights_sha256": "0" * 64, "dim": DIM, "pooling": "cls", "max_length": 32}
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(facts)}), root / "embeddings.parquet")
    return root / "manifest.parquet", root / "embeddings.parquet"


def start(data: tuple[Path, Path], out: Path, *extra: str) -> subprocess.Popen:
    """``python -m imitate pretrain`` on the tiny shards, seed 5, stderr to ``out.log``, in a session (and
    process group) of its own."""
    manifest, embeddings = data
    command = [sys.executable, "-m", "imitate", "pretrain", "--shards", str(manifest), "--embeddings"]
    command += [str(embeddings), "--model-settings", json.dumps(MODEL), "--settings", json.dumps(SETTINGS)]
    command += ["--seed", "5", "--out-dir", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    out.mkdir(parents=True, exist_ok=True)
    with (out.parent / f"{out.name}.log").open("w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def finish(process: subprocess.Popen, out: Path) -> tuple[int, str]:
    """Wait for the run; its exit status and its log."""
    status = process.wait(timeout=300)
    return status, (out.parent / f"{out.name}.log").read_text()


def records(out: Path) -> list[dict]:
    """The metrics log, less its timing fields."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE} for line in lines]


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (its DataLoader workers), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_step_of_epoch(process: subprocess.Popen, out: Path, epoch: int) -> dict:
    """Poll the metrics log until it holds a step record of ``epoch`` (fails if the run ends first)."""
    metrics = out / "metrics.jsonl"
    while process.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        steps = [json.loads(line) for line in lines if line.endswith("}")]
        hit = [r for r in steps if r["type"] == "step" and r["epoch"] == epoch]
        if hit:
            return hit[0]
        time.sleep(0.005)
    log = (out.parent / f"{out.name}.log").read_text()
    raise AssertionError(f"the run ended (status {process.returncode}) before a step of epoch {epoch}:\n{log[-4000:]}")


@pytest.mark.parametrize("target", ["process", "group"])
def test_sigterm_mid_epoch_with_two_loader_workers_then_resume_gives_the_uninterrupted_run(tmp_path: Path, target):
    data = write_dataset(tmp_path)
    whole_out, out = tmp_path / "whole", tmp_path / "interrupted"
    whole = start(data, whole_out)  # the reference, alongside the interrupted run
    try:
        check_interrupted_then_resumed(data, out, whole, whole_out, target)
    finally:
        if whole.poll() is None:  # a failure above left it running
            whole.kill()
            whole.wait()


def check_interrupted_then_resumed(
    data: tuple[Path, Path], out: Path, whole: subprocess.Popen, whole_out: Path, target: str
) -> None:
    run = start(data, out)
    first = wait_for_step_of_epoch(run, out, epoch=1)
    workers = children(run.pid)
    if target == "group":
        os.killpg(run.pid, signal.SIGTERM)
    else:
        run.send_signal(signal.SIGTERM)
    status, log = finish(run, out)

    # a clean stop: the flag, not a kill; the resume state on disk; no exports yet; the workers gone
    assert status == 128 + signal.SIGTERM, log[-4000:]
    assert "SIGTERM received: stopping after this step" in log and "Traceback" not in log, log[-4000:]
    assert f"stopped by SIGTERM; resume from {out / 'resume.pt'} with --resume" in log, log[-4000:]
    assert len(workers) == SETTINGS["workers"], f"expected 2 DataLoader workers under the run, found {workers}"
    assert not [pid for pid in workers if alive(pid)], "DataLoader workers outlived the interrupted run"
    assert (out / "resume.pt").is_file() and not any((out / name).exists() for name in WEIGHTS)
    state = torch.load(out / "resume.pt", map_location="cpu", weights_only=True)
    position, step = state["position"], state["step"]
    assert position["epoch"] == 1 and 0 < position["batch"] < STEPS_PER_EPOCH, position  # mid-epoch
    assert first["step"] == STEPS_PER_EPOCH + 1 and step == STEPS_PER_EPOCH + position["batch"], (first, state)
    assert [r["step"] for r in records(out) if r["type"] == "step"] == list(range(1, step + 1))

    status, log = finish(start(data, out, "--resume"), out)
    assert status == 0, log[-4000:]
    assert f"resuming from {out / 'resume.pt'} at epoch 1, batch {position['batch']}" in log, log[-4000:]
    status, whole_log = finish(whole, whole_out)
    assert status == 0, whole_log[-4000:]

    for name in WEIGHTS:  # CPU runs are deterministic: bit for bit, header included
        assert (out / name).read_bytes() == (whole_out / name).read_bytes(), name
        reference, resumed = load_file(whole_out / name), load_file(out / name)
        assert reference.keys() == resumed.keys()
        assert all(torch.equal(reference[k], resumed[k]) for k in reference), name
    logged = records(out)
    steps = [r["step"] for r in logged if r["type"] == "step"]
    assert steps == list(range(1, TOTAL_STEPS + 1)), steps  # no gap, no repeat
    assert [r["epoch"] for r in logged if r["type"] == "epoch"] == [0, 1]
    assert logged == records(whole_out)  # every loss of every step and epoch, as uninterrupted
    assert not (out / "resume.pt").exists()
