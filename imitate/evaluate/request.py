"""One evaluation request (task x dataset x method, all seeds) dispatched to its task module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imitate.evaluate.dataset import EvalDataset, load_eval_dataset, read_subsets
from imitate.evaluate.encoders import Method
from imitate.evaluate.rows import DENSE_TASKS, FRACTION_ALL, RunInfo, result_rows
from imitate.provenance.record import file_sha256


@dataclass(frozen=True)
class EvalRequest:
    """Everything one ``imitate evaluate`` run needs: the prepared dataset, the method and the settings."""

    task: str
    records: Path
    subsets: Path
    shards: Path
    method: Method
    weights_file: Path | None
    backbone: str
    crop_size: int
    batch_size: int
    device: str
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    model_settings: Mapping[str, Any]
    text_settings: Mapping[str, Any]
    run_id: str
    preview: Path | None = None  # the dense tasks' PNG of test predictions

    def recorded(self) -> dict[str, Any]:
        """The settings a provenance record keeps (paths are recorded as inputs instead)."""
        skip = {"records", "subsets", "shards", "weights_file", "run_id", "preview"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def evaluate(request: EvalRequest) -> list[dict[str, object]]:
    """Result rows of ``request`` (one per metric, fraction and seed)."""
    dataset = load_eval_dataset(request.records)
    checkpoint = file_sha256(request.weights_file) if request.weights_file else None
    info = RunInfo(dataset=dataset.name, task=request.task, method=request.method.name, run_id=request.run_id,
                   checkpoint_sha256=checkpoint)
    if request.task == "linear_classification":
        from imitate.evaluate.linear import ProbeSettings
        from imitate.evaluate.linear_classification import FeatureSettings, evaluate_linear

        s = request.settings
        probe = ProbeSettings(epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"],
                              weight_decay=s.get("weight_decay", 1e-6))
        features = FeatureSettings(request.backbone, request.crop_size, request.batch_size, request.device)
        return evaluate_linear(info=info, method=request.method, dataset=dataset, shards_manifest=request.shards,
                               subsets=request.subsets, weights=request.weights_file, features=features,
                               probe=probe, seeds=request.seeds)
    if request.task in ("zero_shot", "retrieval"):
        return _vision_language(request, info, dataset)
    if request.task in DENSE_TASKS:
        from imitate.evaluate.dense import evaluate_dense

        return evaluate_dense(info=info, method=request.method, dataset=dataset, records=request.records,
                              shards_manifest=request.shards, subsets=request.subsets, weights=request.weights_file,
                              backbone=request.backbone, device=request.device, seeds=request.seeds,
                              settings=request.settings, preview=request.preview)
    return _finetune(request, info, dataset)


def _vision_language(request: EvalRequest, info: RunInfo, dataset: EvalDataset) -> list[dict[str, object]]:
    """Zero-shot or retrieval rows: the pretrained model once, a random model per seed."""
    from imitate.evaluate.retrieval import retrieval_metrics
    from imitate.evaluate.vision_language import (
        load_text_tower,
        load_vl_model,
        model_config_from_dict,
        random_vl_model,
        text_settings,
    )
    from imitate.evaluate.zero_shot import prompts_from_config, zero_shot_metrics

    if request.method.weights not in ("pretrain", "random"):
        raise ValueError(f"{request.task} needs a whole IMITATE model: method {request.method.name!r} has "
                         f"weights {request.method.weights!r} (use pretrain or random)")
    text = load_text_tower(text_settings(request.text_settings), device=request.device)
    s = request.settings
    rows: list[dict[str, object]] = []
    seeds = request.seeds if request.method.is_random else request.seeds[:1]
    for seed in seeds:
        if request.method.is_random:
            cfg = model_config_from_dict({**request.model_settings, "text_dim": text.encoder.dim}, "config model:")
            joint = random_vl_model(cfg, seed)
        else:
            if request.weights_file is None:
                raise ValueError(f"{request.task}: method {request.method.name!r} needs its model.safetensors")
            joint = load_vl_model(request.weights_file)
        joint.model.to(request.device)
        common = {"text": text, "crop_size": request.crop_size, "batch_size": request.batch_size,
                  "device": request.device}
        if request.task == "zero_shot":
            prompts = prompts_from_config({**s["templates"], "names": s.get("names", {})})
            metrics = zero_shot_metrics(joint, dataset, request.shards, prompts=prompts, **common)
        else:
            metrics = retrieval_metrics(joint, dataset, request.shards, ks=s["k"], **common)
        rows += result_rows(info, fraction=FRACTION_ALL, seed=seed, metrics=metrics, n_train=None,
                            n_test=len(dataset.keys_of("test")))
    return rows


def _finetune(request: EvalRequest, info: RunInfo, dataset: EvalDataset) -> list[dict[str, object]]:
    """Fine-tuning rows: a fresh encoder trained per subset fraction and seed."""
    from imitate.evaluate.encoders import FEATURE_DIMS, build_encoder
    from imitate.evaluate.finetune import FinetuneSettings, finetune

    s = request.settings
    rows: list[dict[str, object]] = []
    for seed in request.seeds:
        for fraction, keys in sorted(read_subsets(request.subsets).items()):
            encoder = build_encoder(request.method, request.backbone, seed=seed, pretrained=request.weights_file)
            settings = FinetuneSettings(
                epochs=s["epochs"], lr=s["lr"], batch_size=s["batch_size"], weight_decay=s.get("weight_decay", 1e-6),
                crop_size=request.crop_size, augment=s.get("augment", "kad"), workers=s.get("workers", 0),
                device=request.device, seed=seed,
            )
            result = finetune(encoder, FEATURE_DIMS[request.backbone], dataset, request.shards, keys, settings)
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=result.n_train,
                                n_test=result.n_test, best_epoch=result.best_epoch)
    return rows
