"""imitate evaluate: one method on one downstream task and dataset, over every seed -> result rows."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from imitate.evaluate.rows import rows_table
from imitate.evaluate.tasks import DENSE_TASKS, TASKS
from imitate.io.parquet import write_table
from imitate.provenance import stage_run

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate evaluate``."""
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--records", required=True, help="records.parquet of `imitate dataset`")
    parser.add_argument("--subsets", required=True, help="subsets.parquet of `imitate dataset`")
    parser.add_argument("--shards", required=True, help="the dataset's shard manifest.parquet")
    parser.add_argument("--method", required=True, help="method name written in the results")
    parser.add_argument("--weights", required=True, help="random | imagenet | pretrain | an encoder file")
    parser.add_argument("--prefix", default="", help="key prefix of the ResNet inside the weights file")
    parser.add_argument("--weights-file", default=None,
                        help="the file evaluated: encoder.safetensors (or model.safetensors for zero-shot and "
                             "retrieval) for pretrain, the torch-cache file for imagenet")
    parser.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--crop-size", type=int, required=True, help="center crop fed to the encoder")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", required=True, help="JSON of the task's evaluate.<task> block")
    parser.add_argument("--model-settings", default="{}", help="JSON of the model block (random vision-language model)")
    parser.add_argument("--text-settings", default="{}", help="JSON of the embed block (the frozen text encoder)")
    parser.add_argument("--out", required=True, help="result rows (Parquet)")
    parser.add_argument("--preview", default=None,
                        help="segmentation and detection: PNG of test predictions (largest subset, first seed)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[],
                        help="training fractions (percent) to evaluate; default: every subset of --subsets")
    parser.add_argument("--experiment", default="base", help="experiment name written in the results")
    parser.add_argument("--experiment-sha256", default=None, help="sha256 of the experiment's overrides")
    parser.add_argument("--run-id", default="adhoc", help="run name recorded in results and provenance")


def main(args: argparse.Namespace) -> int:
    """Run one method on one task and dataset."""
    from imitate.evaluate.encoders import Method
    from imitate.evaluate.request import EvalRequest, evaluate

    request = EvalRequest(
        task=args.task,
        records=Path(args.records),
        subsets=Path(args.subsets),
        shards=Path(args.shards),
        method=Method(args.method, args.weights, args.prefix),
        weights_file=Path(args.weights_file) if args.weights_file else None,
        backbone=args.backbone,
        crop_size=args.crop_size,
        batch_size=args.batch_size,
        device=args.device,
        seeds=tuple(args.seeds),
        settings=json.loads(args.settings),
        model_settings=json.loads(args.model_settings),
        text_settings=json.loads(args.text_settings),
        run_id=args.run_id,
        preview=Path(args.preview) if args.preview else None,
        fractions=tuple(args.fractions),
        experiment=args.experiment,
        experiment_sha256=args.experiment_sha256,
    )
    if (request.preview is not None) != (request.task in DENSE_TASKS):
        raise SystemExit(f"--preview is required for {', '.join(DENSE_TASKS)} and only for them")
    inputs = {"records": request.records, "subsets": request.subsets, "shards": request.shards}
    if request.weights_file:
        inputs["weights"] = request.weights_file
    outputs = [args.out, *([request.preview] if request.preview else [])]
    with stage_run(f"evaluate:{args.task}", inputs=inputs, settings=request.recorded(), outputs=outputs,
                   run_id=args.run_id, seeds={f"seed{i}": s for i, s in enumerate(request.seeds)}) as run:
        rows = evaluate(request)
        write_table(rows_table(rows), args.out, run.parquet_metadata())
    log.info("%s: %d result rows", args.out, len(rows))
    return 0
