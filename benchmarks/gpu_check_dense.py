"""The dense part of the GPU check: the Table V heads' real training loop, timed per epoch.

The workflow's own ``evaluate_dense`` jobs run on a demo RSNA copy sharded at the segmentation size,
with one method (random init: no pretraining needed), one seed, the whole training split, and a
config's segmentation and detection blocks (the template's: U-Net decoder at 512 px, YOLOv3 head at
224 px, batch 16, 8 loader workers) cut to a few epochs. Their logs give each epoch's training images/s
(:func:`imitate.evaluate.heads.fit_head`): the loader, the augmentation, the frozen encoder
(or the stored stage outputs) and the head, as a real run spends its time.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from gpu_check_workflow import snakemake, write_overlay

DENSE_TASKS = ("segmentation", "detection")
DATASET, METHOD = "rsna", "random_init"
EPOCH_LINE = re.compile(r"epoch (\d+): train loss \S+, validation loss \S+ \(training ([\d.]+) s, ([\d.]+) images/s\)")


def dense_overlay(config: Mapping[str, Any], device: str, epochs: int) -> dict[str, Any]:
    """``config``'s backbone and dense blocks, on ``device``, for one seed, method and dataset."""
    evaluate = config["evaluate"]
    blocks = {task: {**evaluate[task], "datasets": [DATASET], "epochs": epochs, "patience": epochs}
              for task in DENSE_TASKS}
    return {
        "model": {"backbone": config["model"]["backbone"]},
        "evaluate": {"device": device, "seeds": [0], "fractions": [100],
                     "methods": {METHOD: {"weights": "random"}}, **blocks},
    }


def epochs_logged(log: str) -> list[dict[str, float]]:
    """Each epoch's training seconds and images/s, from an evaluation job's log."""
    return [{"epoch": int(e), "seconds": float(s), "images_per_s": float(r)} for e, s, r in EPOCH_LINE.findall(log)]


def job_seconds(benchmark: Path) -> float:
    """The job's wall-clock seconds, from its Snakemake benchmark file."""
    with open(benchmark, newline="") as fh:
        return float(next(csv.DictReader(fh, delimiter="\t"))["s"])


def dense_check(workdir: Path, configfiles: Sequence[Path], config: Mapping[str, Any], *, device: str,
                epochs: int) -> list[dict[str, Any]]:
    """Run both dense evaluations in ``workdir`` (a workflow whose demo RSNA is prepared) and read them."""
    overlay = write_overlay(workdir.parent / "dense.yaml", dense_overlay(config, device, epochs))
    targets = [f"results/evaluate/{task}/{DATASET}/{METHOD}.parquet" for task in DENSE_TASKS]
    # one job at a time: two jobs sharing the GPU (and the loader's cores) would time each other
    snakemake(workdir, [*configfiles, overlay], *targets, cores=1)
    results = []
    for task, target in zip(DENSE_TASKS, targets, strict=True):
        block = config["evaluate"][task]
        rows = pq.read_table(workdir / target).to_pylist()
        log = (workdir / f"logs/evaluate/{task}/{DATASET}/{METHOD}.log").read_text()
        results.append({
            "task": task,
            "backbone": config["model"]["backbone"],
            "input_size": block["input_size"],
            "batch_size": block["batch_size"],
            "workers": block.get("workers", 0),
            "train_images": rows[0]["n_train"],
            "epochs": epochs_logged(log),
            "job_seconds": job_seconds(workdir / f"results/benchmarks/evaluate/{task}/{DATASET}/{METHOD}.tsv"),
            # after two epochs some may be NaN by definition (MGCA's mAP with no detection); the workflow
            # part compares finiteness with a CPU run
            "metrics": {r["metric"]: r["value"] if r["value"] is not None and math.isfinite(r["value"]) else None
                        for r in rows},
        })
    return results
