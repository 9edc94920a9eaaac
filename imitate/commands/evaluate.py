"""imitate evaluate: a downstream task on one method's frozen encoder."""

from __future__ import annotations

import argparse

from imitate.config import parse_settings
from imitate.evaluate.linear import ProbeSettings
from imitate.evaluate.linear_classification import LinearTask, evaluate_linear
from imitate.parquet import write_table
from imitate.provenance import stage_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate evaluate``."""
    parser.add_argument("--task", choices=["linear_classification"], default="linear_classification")
    parser.add_argument("--method", required=True, help="imitate, random_init, or a name for --weights")
    parser.add_argument("--weights", default=None, help="encoder safetensors (torchvision ResNet keys)")
    parser.add_argument("--shards", required=True, help="shard manifest.parquet with train/validate/test")
    parser.add_argument("--labels", required=True, help="study-level label CSV (CheXpert format)")
    parser.add_argument("--subsets", required=True, help="subsets Parquet from `imitate subsets`")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--crop-size", type=int, required=True, help="center crop fed to the encoder")
    parser.add_argument("--dataset", default="mimic-cxr", help="dataset name written in the results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", default=None, help="JSON of evaluate.<task> (else --config)")
    parser.add_argument("--config", default=None, help="config.yaml to read evaluate.<task> from")
    parser.add_argument("--out", required=True, help="result rows (Parquet)")
    parser.add_argument("--run-id", default="adhoc", help="run name recorded in results and provenance")


def main(args: argparse.Namespace) -> int:
    """Run one method on one task."""
    settings = parse_settings(args.settings, args.config, "evaluate")
    if args.config and not args.settings:
        settings = settings[args.task]
    probe = ProbeSettings(
        epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"],
        weight_decay=settings.get("weight_decay", 1e-6), seed=args.seed,
    )
    task = LinearTask(settings["labels"], settings["uncertain"], args.backbone, args.crop_size, probe)
    inputs = {"shards": args.shards, "labels": args.labels, "subsets": args.subsets}
    if args.weights:
        inputs["weights"] = args.weights
    recorded = {**settings, "method": args.method, "backbone": args.backbone, "crop_size": args.crop_size,
                "dataset": args.dataset}
    with stage_run(f"evaluate:{args.task}", inputs=inputs, settings=recorded, outputs=[args.out],
                   run_id=args.run_id, seeds={"probe": args.seed}):
        table = evaluate_linear(
            method=args.method, weights=args.weights, shard_manifest=args.shards, labels_csv=args.labels,
            subsets=args.subsets, task=task, dataset=args.dataset, run_id=args.run_id,
        )
        write_table(table, args.out)
    return 0
