"""imitate pretrain: shards x frozen text embeddings -> IMITATE vision encoder."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import torch.distributed

from imitate.config import ConfigError, load_config, parse_settings
from imitate.embed.store import read_embedding_facts
from imitate.models.backbone import init_file
from imitate.provenance import file_sha256, stage_run
from imitate.train.distributed import init_distributed
from imitate.train.interrupt import InterruptedRunError
from imitate.train.pretrain import ShardSplit, pretrain
from imitate.train.settings import PretrainConfig, config_from_settings

log = logging.getLogger(__name__)

OUTPUTS = ("checkpoint.pt", "encoder.safetensors", "model.safetensors", "metrics.jsonl", "model_card.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate pretrain``."""
    parser.add_argument("--shards", required=True, help="shard manifest.parquet (train and validate splits)")
    parser.add_argument("--embeddings", required=True, help="embeddings Parquet from `imitate embed`")
    parser.add_argument("--config", default=None, help="config.yaml with the model: and pretrain: blocks")
    parser.add_argument("--settings", default=None, help="JSON of the pretrain block (else --config)")
    parser.add_argument("--model-settings", default=None, help="JSON of the model block (else --config)")
    parser.add_argument(
        "--text-settings",
        default=None,
        help="JSON of the embed block (else --config's): the text encoder of pretrain.text_unfreeze > 0",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: the config's seed, else 0")
    parser.add_argument("--out-dir", required=True, help="directory for the four pretraining outputs")
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT_DIR/resume.pt if an interrupted run left one"
    )
    parser.add_argument("--run-id", default=None, help="run name recorded in provenance")


def text_block(args: argparse.Namespace, cfg: PretrainConfig) -> dict[str, Any] | None:
    """The ``embed:`` block whose encoder trains with unfrozen text layers; None when none is unfrozen
    (then the flag is not read) or none is given (then :func:`pretrain` says what is missing)."""
    if cfg.text_unfreeze == 0:
        return None
    if args.text_settings is None:
        return dict(load_config(args.config)["embed"]) if args.config else None
    try:
        block = json.loads(args.text_settings)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--text-settings is not valid JSON: {exc}") from exc
    if not isinstance(block, dict):
        raise ConfigError("--text-settings must be a JSON object (the config's embed: block)")
    return block


def recorded_inputs(args: argparse.Namespace, cfg: PretrainConfig, text: dict[str, Any] | None) -> dict[str, str]:
    """The input files of the provenance record: shards, embeddings, initial weights, the trained text encoder."""
    inputs = {"shards": args.shards, "embeddings": args.embeddings}
    weights = init_file(cfg.model.backbone, cfg.model.init)
    if weights is not None and weights.is_file():  # a missing file fails below, with the backbone's message
        inputs["init_weights"] = str(weights)
    if text is not None:  # imported here: transformers takes seconds, and a frozen run never needs it
        from imitate.embed.embeddings import text_settings
        from imitate.embed.encoder import resolve_encoder_dir

        inputs["text_encoder"] = str(resolve_encoder_dir(text_settings(text).encoder))
    return inputs


def main(args: argparse.Namespace) -> int:
    """Run the pretrain stage."""
    model = parse_settings(args.model_settings, args.config, "model")
    settings = parse_settings(args.settings, args.config, "pretrain")
    seed = args.seed
    if seed is None:
        seed = load_config(args.config)["seed"] if args.config else 0
    cfg = config_from_settings(model, settings, seed)
    out = Path(args.out_dir)
    train = ShardSplit.from_manifest(args.shards, "train")
    val = ShardSplit.from_manifest(args.shards, "validate")
    log.info(
        "train: %d images in %d shards; validate: %d images in %d shards",
        train.num_samples,
        len(train.paths),
        val.num_samples,
        len(val.paths),
    )
    text = text_block(args, cfg)
    inputs = recorded_inputs(args, cfg, text)
    ranks = init_distributed(cfg.device)
    recorded = {"model": model, "pretrain": settings, "world_size": ranks.world_size, "torchrun": ranks.distributed}
    record = stage_run(
        "pretrain",
        inputs=inputs,
        settings={**recorded, **({} if text is None else {"text": text})},
        outputs=[out / name for name in OUTPUTS],
        run_id=args.run_id,
        seeds={"torch": seed},
    )
    try:
        with record if ranks.is_main else contextlib.nullcontext():  # rank 0 writes the provenance
            result = pretrain(
                cfg,
                shards=train,
                val_shards=val,
                embeddings=args.embeddings,
                out_dir=out,
                text_facts=read_embedding_facts(args.embeddings),
                resume=args.resume,
                ranks=ranks,
                data={"shards_manifest": file_sha256(args.shards), "embeddings": file_sha256(args.embeddings)},
                text_settings=text,
            )
    except InterruptedRunError as exc:  # preempted: the resume state is on disk
        log.warning("%s", exc)
        return 128 + exc.signum
    finally:
        if ranks.distributed:
            torch.distributed.destroy_process_group()
    log.info(
        "pretrain: %d epochs, %d steps (%d skipped); best epoch %d, val loss %.4f",
        result.epochs,
        result.steps,
        result.skipped_steps,
        result.best_epoch,
        result.best_val_loss,
    )
    return 0
