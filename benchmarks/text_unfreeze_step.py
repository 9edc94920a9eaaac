"""Table XI's training cost: pretraining step time and trainable parameters against unfrozen text layers.

The same trainer and in-memory batch for every n: with n = 0 the batch holds precomputed text vectors
(the default, fast path); with n > 0 it holds token ids of ``--tokens`` tokens per text, which the
text encoder (the embed block's, loaded offline) turns into vectors in every step, its last n layers
trained. Prints one line per n: median step time, image pairs/s and trainable parameters.

    python benchmarks/text_unfreeze_step.py --config config.yaml --unfreeze 0 1 2 6 --steps 10
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace

import torch
from common import machine

from imitate.config import load_config
from imitate.embed.embeddings import embedding_facts, text_settings
from imitate.embed.encoder import load_encoder
from imitate.train.settings import PretrainConfig, config_from_settings
from imitate.train.text import TextLayers
from imitate.train.trainer import Batch, Trainer


def batches(cfg: PretrainConfig, dim: int, tokens: int, vocab: int) -> Iterator[Batch]:
    """One batch, repeated: augmented float views, and text vectors (n = 0) or token ids (n > 0)."""
    g = torch.Generator().manual_seed(0)
    n = cfg.batch_size
    batch: Batch = {
        "view1": torch.randn(n, 3, cfg.crop_size, cfg.crop_size, generator=g),
        "view2": torch.randn(n, 3, cfg.crop_size, cfg.crop_size, generator=g),
        "has_findings": torch.ones(n, dtype=torch.bool),
    }
    if cfg.text_unfreeze == 0:
        batch |= {f"{s}_emb": torch.randn(n, dim, generator=g) for s in ("findings", "impression")}
    else:
        for section in ("findings", "impression"):
            batch[f"{section}_input_ids"] = torch.randint(1000, vocab, (n, tokens), generator=g)
            batch[f"{section}_attention_mask"] = torch.ones(n, tokens, dtype=torch.long)
    return itertools.repeat(batch)


def step_seconds(trainer: Trainer, source: Iterator[Batch], warmup: int, steps: int) -> list[float]:
    """Wall time of each of ``steps`` training steps after ``warmup`` unmeasured ones."""
    for batch in itertools.islice(source, warmup):
        trainer.train_step(batch)
    times = []
    for batch in itertools.islice(source, steps):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="model:, pretrain: and embed: blocks to use")
    parser.add_argument("--unfreeze", type=int, nargs="+", default=[0, 1, 2, 6])
    parser.add_argument("--tokens", type=int, default=64, help="tokens per text (demo reports: about 40-80)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    config = load_config(args.config)
    settings = text_settings(config["embed"])
    encoder = load_encoder(settings.encoder, trust_remote_code=settings.trust_remote_code)
    facts = embedding_facts(encoder, settings.embed)
    base = config_from_settings(config["model"], config["pretrain"], config["seed"])
    base = replace(base, device="cpu", model=replace(base.model, text_dim=facts["dim"]))
    print(f"{datetime.date.today()} on {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{base.model.backbone}, crop {base.crop_size}, batch {base.batch_size}; text encoder {settings.encoder} "
          f"({facts['dim']}-d), {args.tokens} tokens per text")
    for n in args.unfreeze:
        cfg = replace(base, text_unfreeze=n)
        torch.manual_seed(cfg.seed)
        text = None if n == 0 else TextLayers(load_encoder(settings.encoder), n, settings.embed.pooling)
        trainer = Trainer(cfg, torch.device("cpu"), total_steps=args.warmup + args.steps, text=text)
        times = step_seconds(trainer, batches(cfg, facts["dim"], args.tokens, facts["vocab_size"]), args.warmup,
                             args.steps)
        params = trainer.trainable_parameters()
        median = statistics.median(times)
        print(f"unfreeze {n}: step {1000 * median:7.1f} ms (median of {args.steps}), "
              f"{cfg.batch_size / median:6.1f} pairs/s, trainable {params['image'] / 1e6:.2f} M image + "
              f"{params['text'] / 1e6:.2f} M text")


if __name__ == "__main__":
    main()
