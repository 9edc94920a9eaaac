"""The dense tasks of Table V: segmentation and detection heads on a frozen encoder, per subset and seed.

For every seed and every frozen training subset of the dataset (1 / 10 / 100 %) a new head is trained on
the method's frozen encoder, early-stopped on the validation split and scored on the whole test split.
Validation and test are the images of those splits' shards. The segmentation training set may be
balanced (the paper's SIIM protocol: every positive plus as many negatives), drawn with the dataset's
subset seed so that every method and every evaluation seed sees the same images. A preview of the
test predictions (largest subset, first seed) is drawn for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imitate.evaluate.dataset import EvalDataset, read_subsets
from imitate.evaluate.dense_data import (
    DenseImages,
    has_dense_targets,
    is_positive,
    read_dense_targets,
    read_geometry,
)
from imitate.evaluate.detection import DetectionSettings, detect
from imitate.evaluate.encoders import Method, frozen_stages
from imitate.evaluate.head_training import DEFAULT_CACHE_GIB, HeadSettings, stage_cache
from imitate.evaluate.preview import write_preview
from imitate.evaluate.rows import RunInfo, result_rows
from imitate.evaluate.segmentation import SegmentationSettings, balanced_keys, segment
from imitate.evaluate.shard_images import index_shard_images
from imitate.models.yolo import HEAD_STAGES
from imitate.shards.reader import shard_paths

log = logging.getLogger(__name__)


def head_settings(settings: Mapping[str, Any], device: str, seed: int) -> HeadSettings:
    """The optimisation settings of a dense task's config block."""
    return HeadSettings(epochs=settings["epochs"], patience=settings["patience"], lr=settings["lr"],
                        weight_decay=settings["weight_decay"], batch_size=settings["batch_size"],
                        input_size=settings["input_size"], workers=settings.get("workers", 0), device=device,
                        seed=seed, cache_gib=settings.get("cache_gib", DEFAULT_CACHE_GIB))


def _check_size(shards_manifest: Path, input_size: int, name: str) -> None:
    """Log when the shards are smaller than the input (the images are then upsampled)."""
    table = pq.read_table(shards_manifest, columns=["width", "height"])
    shorter = min(min(table["width"].to_pylist()), min(table["height"].to_pylist()))
    if shorter < input_size:
        log.warning("%s: shard images are %d px on their shorter side, upsampled to the %d px input; "
                    "shard the dataset at image_size >= %d to keep the detail", name, shorter, input_size, input_size)


def evaluate_dense(
    *,
    info: RunInfo,
    method: Method,
    dataset: EvalDataset,
    records: Path,
    shards_manifest: Path,
    subsets: Path,
    weights: Path | None,
    backbone: str,
    device: str,
    seeds: Sequence[int],
    settings: Mapping[str, Any],
    preview: Path | None,
) -> list[dict[str, object]]:
    """Result rows of ``method`` on ``info.task`` (segmentation or detection) for every fraction and seed."""
    targets = read_dense_targets(records)
    if not has_dense_targets(targets):
        raise ValueError(f"dataset {dataset.name!r} has no boxes or masks in {records}: it cannot be used for "
                         f"{info.task}")
    segmentation = info.task == "segmentation"
    geometry = read_geometry(shards_manifest)
    index = {split: index_shard_images(shard_paths(shards_manifest, split)) for split in ("train", "validate", "test")}
    _check_size(shards_manifest, settings["input_size"], dataset.name)
    subset_keys = read_subsets(subsets)

    def images(keys: Sequence[str], split: str, seed: int) -> DenseImages:
        return DenseImages(keys, targets, geometry, index[split], settings["input_size"], masks=segmentation,
                           seed=seed)

    rows: list[dict[str, object]] = []
    shown = None
    encoder = cache = None
    for seed in seeds:
        head = head_settings(settings, device, seed)
        if encoder is None or method.is_random:
            encoder = frozen_stages(method, backbone, seed=seed, pretrained=weights).to(device)
            cache = stage_cache(encoder, range(len(encoder.channels)) if segmentation else HEAD_STAGES, head)
        val, test = images(sorted(index["validate"]), "validate", seed), images(sorted(index["test"]), "test", seed)
        for fraction, keys in sorted(subset_keys.items()):
            missing = [k for k in keys if k not in index["train"]]
            if missing:
                raise ValueError(f"{subsets}: {len(missing)} subset images are not in the train shards, "
                                 f"e.g. {missing[:3]} (rerun the dataset and shards stages)")
            name = f"{dataset.name} {method.name} {fraction:g}% seed {seed}"
            if segmentation:
                task_settings = SegmentationSettings(
                    head=head, alpha=settings["alpha"], augment=settings["augment"], threshold=settings["threshold"],
                    negatives_per_positive=settings["negatives_per_positive"],
                    decoder_channels=tuple(settings["decoder_channels"]),
                )
                keys = balanced_keys(keys, lambda k: is_positive(targets[k]), task_settings.negatives_per_positive,
                                     dataset.facts.get("seed", 0))
                result = segment(encoder, images(keys, "train", seed), val, test, task_settings, name=name,
                                 cache=cache)
            else:
                widths = settings.get("head_widths")
                task_settings = DetectionSettings(head=head, conf_threshold=settings["conf_threshold"],
                                                  nms_iou=settings["nms_iou"],
                                                  head_widths=tuple(widths) if widths else None)
                result = detect(encoder, images(keys, "train", seed), val, test, task_settings, name=name,
                                cache=cache)
            log.info("%s: %s (best epoch %d)", name, result.metrics, result.best_epoch)
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=result.n_train,
                                n_test=result.n_test, best_epoch=result.best_epoch)
            if seed == seeds[0] and fraction == max(subset_keys):
                shown = result.preview
    if preview is not None and shown is not None:
        write_preview(shown, preview, title=f"{info.task}: {dataset.name}, {method.name}, "
                                            f"{max(subset_keys):g}% of train, seed {seeds[0]}")
    return rows

