"""Pretraining throughput: the real pipeline from shards against the same model on in-memory tensors.

(a) ``pipeline``: the training split's shards and the text embeddings through the pretraining loader
    (two augmented views per image) into :class:`~imitate.train.trainer.Trainer` steps;
(b) ``model``: the same trainer on one random batch already on the device, as the loader delivers it
    (no decoding; uint8 crops that the trainer augments on CUDA, augmented float views on the CPU).

Both print image pairs/s over ``--steps`` steps after ``--warmup`` unmeasured ones; (a)/(b) is the data
pipeline's efficiency (1.0: the model never waits for data). The model and settings come from a
config file (the demo's by default), the data from a finished workflow's ``results/`` directory.

    python benchmarks/pretrain_throughput.py --results results --config config.yaml --steps 10
"""

from __future__ import annotations

import argparse
import datetime
import itertools
from dataclasses import replace
from pathlib import Path

import torch
from common import machine
from gpu_check_speed import memory_batches, timed_steps

from imitate.config import load_config
from imitate.train.data import build_pretrain_loader, load_embeddings, steps_per_epoch
from imitate.train.pretrain import ShardSplit
from imitate.train.settings import config_from_settings
from imitate.train.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="a finished workflow's results/")
    parser.add_argument("--config", default="config.yaml", help="model: and pretrain: blocks to use")
    parser.add_argument("--device", default=None, help="default: the config's pretrain.device")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: the config's)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    config = load_config(args.config)
    cfg = config_from_settings(config["model"], config["pretrain"], config["seed"])
    overrides = {"device": args.device, "batch_size": args.batch_size, "workers": args.workers}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    embeddings = load_embeddings(args.results / "embed/embeddings.parquet")
    dim = next(iter(embeddings.values())).impression.shape[0]
    cfg = replace(cfg, model=replace(cfg.model, text_dim=dim))
    split = ShardSplit.from_manifest(args.results / "shards/manifest.parquet", "train")
    needed = args.warmup + args.steps
    epochs = -(-needed // steps_per_epoch(split.num_samples, cfg.batch_size))
    device = torch.device(cfg.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"{datetime.date.today()} on {name}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{cfg.model.backbone}, crop {cfg.crop_size}, batch {cfg.batch_size}, {cfg.workers} loader workers")

    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, device, total_steps=needed)
    model_rate = timed_steps(trainer, memory_batches(cfg, dim, device), args.warmup, args.steps)["pairs_per_s"]
    print(f"(b) model on in-memory tensors: {model_rate:8.1f} image pairs/s")

    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, device, total_steps=needed)
    loaders = (
        build_pretrain_loader([str(p) for p in split.paths], embeddings, crop_size=cfg.crop_size,
                              batch_size=cfg.batch_size, num_samples=split.num_samples, workers=cfg.workers,
                              seed=cfg.seed, epoch=epoch, augment=cfg.augment, rotation_degrees=cfg.rotation_degrees,
                              crop_only=cfg.crop_only)
        for epoch in range(epochs)
    )
    batches = itertools.chain.from_iterable(loaders)
    pipeline_rate = timed_steps(trainer, batches, args.warmup, args.steps)["pairs_per_s"]
    print(f"(a) real pipeline from shards:  {pipeline_rate:8.1f} image pairs/s")
    print(f"(a)/(b) data-pipeline efficiency: {pipeline_rate / model_rate:.2f}")


if __name__ == "__main__":
    main()
