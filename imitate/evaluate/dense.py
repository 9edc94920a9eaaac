"""The dense tasks' run (Table V): a head per subset and seed on the method's frozen encoder.

For every seed and every frozen training subset of the dataset (1 / 10 / 100 %) a new head is trained on
the method's frozen encoder, early-stopped on the validation split and scored on the whole test split
(the task's own ``train_and_test``). Validation and test are the images of those splits' shards. A
pretrained encoder and its cache of stage outputs serve every seed; a random one is drawn per seed. A
preview of the test predictions (largest subset, first seed) is drawn for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from imitate.evaluate.data.dense import DenseImages, DenseTarget, has_dense_targets, read_dense_targets, read_geometry
from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.data.shard_images import index_shard_images
from imitate.evaluate.data.stage_batches import StageCache
from imitate.evaluate.encoders import frozen_stages
from imitate.evaluate.heads import HeadSettings, stage_cache
from imitate.evaluate.preview import write_preview
from imitate.evaluate.request import EvalRequest, fit_name, fits_progress
from imitate.evaluate.rows import result_rows
from imitate.models.frozen import FrozenStages
from imitate.shards.reader import shard_paths

log = logging.getLogger(__name__)


class DenseSettings(Protocol):
    """What the runner reads of a dense task's settings: the head's optimisation and input."""

    @property
    def head(self) -> HeadSettings: ...


class DenseResult(Protocol):
    """What the runner reads of one trained and tested head."""

    metrics: dict[str, float]
    n_train: int
    n_test: int
    preview: tuple[Any, ...]

    @property
    def best_epoch(self) -> int: ...


@dataclass(frozen=True)
class DenseJob:
    """One (subset, seed) of a dense task: the frozen encoder and its cache, the training keys and the
    images (``train_images(keys)`` builds the training set), the targets and a name for the logs."""

    encoder: FrozenStages
    cache: StageCache
    train_keys: list[str]
    train_images: Callable[[Sequence[str]], DenseImages]
    val: DenseImages
    test: DenseImages
    targets: dict[str, DenseTarget]
    dataset: EvalDataset
    seed: int
    name: str


def _check_size(shards_manifest: Path, input_size: int, name: str) -> None:
    """Log when the shards are smaller than the input (the images are then upsampled)."""
    table = pq.read_table(shards_manifest, columns=["width", "height"])
    shorter = min(min(table["width"].to_pylist()), min(table["height"].to_pylist()))
    if shorter < input_size:
        log.warning("%s: shard images are %d px on their shorter side, upsampled to the %d px input; "
                    "shard the dataset at image_size >= %d to keep the detail", name, shorter, input_size, input_size)


def run_dense(
    request: EvalRequest,
    *,
    read_settings: Callable[..., DenseSettings],
    stages: Callable[[FrozenStages], Iterable[int]],
    masks: bool,
    train_and_test: Callable[[DenseJob, Any], DenseResult],
) -> list[dict[str, object]]:
    """Result rows of a dense task for every fraction and seed.

    ``read_settings(block, device=, seed=)`` is the task's ``Settings.from_block``, ``stages`` the encoder
    outputs its head reads, ``masks`` whether the images carry masks.
    """
    dataset, records, manifest = request.dataset(), request.records, request.shards
    info = request.run_info(dataset)
    targets = read_dense_targets(records)
    if not has_dense_targets(targets):
        raise ValueError(f"dataset {dataset.name!r} has no boxes or masks in {records}: it cannot be used for "
                         f"{request.task}")
    geometry = read_geometry(manifest)
    index = {split: index_shard_images(shard_paths(manifest, split)) for split in ("train", "validate", "test")}
    by_seed = {seed: read_settings(request.settings, device=request.device, seed=seed) for seed in request.seeds}
    input_size = by_seed[request.seeds[0]].head.input_size
    _check_size(manifest, input_size, dataset.name)
    largest = max(request.training_subsets(request.seeds[0]))

    def images(keys: Sequence[str], split: str, seed: int) -> DenseImages:
        return DenseImages(keys, targets, geometry, index[split], input_size, masks=masks, seed=seed)

    rows: list[dict[str, object]] = []
    shown, encoder, cache, fits = None, None, None, fits_progress(request, log)
    for seed in request.seeds:
        settings = by_seed[seed]
        if encoder is None or request.method.is_random:
            encoder = frozen_stages(request.method, request.backbone, seed=seed,
                                    pretrained=request.weights_file).to(request.device)
            cache = stage_cache(encoder, stages(encoder), settings.head)
        val, test = images(sorted(index["validate"]), "validate", seed), images(sorted(index["test"]), "test", seed)
        for fraction, keys in sorted(request.training_subsets(seed).items()):
            missing = [k for k in keys if k not in index["train"]]
            if missing:
                raise ValueError(f"{request.subsets}: {len(missing)} subset images are not in the train shards, "
                                 f"e.g. {missing[:3]} (rerun the dataset and shards stages)")
            name = f"{dataset.name} {request.method.name}, {fit_name(request, seed, fraction)}"
            job = DenseJob(encoder, cache, keys, lambda chosen, s=seed: images(chosen, "train", s), val, test,
                           targets, dataset, seed, name)
            result = train_and_test(job, settings)
            log.info("%s: %s (best epoch %d)", name, result.metrics, result.best_epoch)
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=result.n_train,
                                n_test=result.n_test, best_epoch=result.best_epoch)
            fits.advance()
            if seed == request.seeds[0] and fraction == largest:
                shown = result.preview
    if request.preview is not None and shown is not None:
        write_preview(shown, request.preview, title=f"{request.task}: {dataset.name}, {request.method.name}, "
                                                    f"{largest:g}% of train, seed {request.seeds[0]}")
    return rows
