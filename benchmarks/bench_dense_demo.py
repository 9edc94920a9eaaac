"""One dense job of the demo, timed: seconds per epoch and per job, and the test scores.

Runs a Table V job the way the workflow does (adapter demo files -> records -> shards ->
``imitate.evaluate.request.evaluate``) with the demo's settings from ``config.yaml``, on the demo's own
dataset size, one seed, the random-init encoder and the 100 % subset. ``--set key=value`` overrides a
setting of the task's block (YAML values), e.g. ``--set frozen_bn=eval`` or ``--set epochs=3``.
Besides the wall-clock training seconds that each epoch logs, it reports the process's CPU seconds from
one epoch's log line to the next (training and validation), which other processes sharing the cores
inflate far less than the wall clock.

    python benchmarks/bench_dense_demo.py segmentation siim --set epochs=3 --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import logging
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch
import yaml
from common import machine
from snakemake.utils import validate

from imitate.config import DEMO_CONFIG, SCHEMA_PATH
from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.dataset import prepare_dataset, write_prepared
from imitate.evaluate.encoders import Method
from imitate.evaluate.request import EvalRequest, evaluate
from imitate.evaluate.settings import task_settings
from imitate.shards.writer import write_shards


class EpochTimes(logging.Handler):
    """Collects, at each epoch's log line of :func:`imitate.evaluate.fit.fit`, its training seconds and
    the process's CPU time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: list[float] = []
        self.cpu: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "imitate.evaluate.fit" and "epoch %d: train loss" in str(record.msg):
            self.seconds.append(float(record.args[5]))  # type: ignore[index]
            self.cpu.append(time.process_time())


def prepared(config: dict, name: str, where: Path) -> Path:
    """The demo copy of dataset ``name`` at its demo size, prepared and sharded; its directory."""
    entry = config["datasets"][name]
    adapter = load_adapter(name, {**entry, "root": where / "raw"})
    adapter.write_demo(DemoSpec(n_images=entry["demo"]["n_images"], seed=config["demo"]["seed"],
                                image_size=entry["demo"]["image_size"]))
    out = where / "prepared"
    write_prepared(prepare_dataset(adapter, seed=config["seed"], fractions=[100], split_draw=entry.get("split")), out)
    write_shards(pq.read_table(out / "records.parquet"), where / "raw", out / "shards",
                 image_size=entry["image_size"], samples_per_shard=config["shards"]["samples_per_shard"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=["segmentation", "detection"])
    parser.add_argument("dataset")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    block = config["evaluate"][args.task]
    block.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    validate(config, str(SCHEMA_PATH))
    times = EpochTimes()
    logging.getLogger("imitate").addHandler(times)
    logging.getLogger("imitate").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp:
        out = prepared(config, args.dataset, Path(tmp))
        start = time.perf_counter()
        rows = evaluate(EvalRequest(
            task=args.task, records=out / "records.parquet", subsets=out / "subsets.parquet",
            shards=out / "shards" / "manifest.parquet", method=Method("random_init", "random"), weights_file=None,
            backbone=config["model"]["backbone"], crop_size=config["pretrain"]["crop_size"], batch_size=64,
            device="cpu", seeds=(0,), settings=task_settings(block, args.dataset), model_settings=config["model"],
            text_settings=config["embed"], run_id="bench-dense-demo",
        ))
        total = time.perf_counter() - start
    print(f"{datetime.date.today()} {machine()}, {torch.get_num_threads()} threads; {args.task} on the demo's "
          f"{args.dataset}, overrides {args.overrides or 'none'}")
    cpu = [b - a for a, b in zip(times.cpu, times.cpu[1:], strict=False)]
    print(f"epochs {len(times.seconds)}: training s/epoch median {statistics.median(times.seconds):.2f} "
          f"(first {times.seconds[0]:.2f}); CPU s/epoch (training + validation, after the first) median "
          f"{statistics.median(cpu) if cpu else float('nan'):.2f}; job {total:.1f} s")
    print(", ".join(f"{row['metric']} {row['value']:.4f}" for row in rows))


if __name__ == "__main__":
    main()
