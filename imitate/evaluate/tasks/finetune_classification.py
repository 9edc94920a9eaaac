"""Fine-tuned classification (the paper's ChestX-ray14 protocol): every encoder weight is trained.

Paper §IV-B: all parameters updated, images at 256 x 256 with "data augmentation as suggested in [28]"
(KAD), AdamW lr 1e-4, batch 64, 50 epochs, macro AUC over the 14 labels. A linear head on the pooled
features, binary cross-entropy per label; after every epoch the model is scored on the validation
split and the best state (validation macro AUC, earliest on ties) is the one tested.

Augmentation (``kad``, our reading of [28]): KAD's released code trains with a random resized crop
(area 0.2-1, aspect 3/4-4/3), a horizontal flip and RandAugment over mostly geometric operations; its
ChestX-ray14 fine-tuning script is not public. We keep the crop and the flip and stand in for the
geometric RandAugment operations with a rotation of up to ±10°. ``none`` takes the evaluation center
crop (an ablation). Validation and test images take the center crop alone.

Where: the DataLoader workers only decode and crop (uint8, one channel); flip, rotation and the
normalisation run on the whole batch on the device (:func:`imitate.images.transforms.apply_augmentations`,
as pretraining does). The per-image rotation on the CPU cost more than decoding, and the workers could
not feed an H100; uint8 batches are also a twelfth of the float ones to copy. The normalisation is
pretraining's ([0, 1], three channels, ImageNet mean/std), the input the encoder learned on.

Not in the paper, and chosen here: weight decay 1e-6 (MGCA's downstream value) and a constant learning
rate. Training images are read from the shards by key (:mod:`imitate.evaluate.data.shard_images`), never
held in memory. The best epoch is chosen by :func:`imitate.evaluate.fit.fit`. On CPU the run is
deterministic for a seed (deterministic algorithms are enforced); on CUDA it runs in bf16 autocast with
channels_last, as pretraining does, and is not bitwise reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from imitate.datasets.base import KINDS
from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.data.shard_images import LabelledImages, Transform, epoch_loader, index_shard_images
from imitate.evaluate.device import autocast, deterministic_on_cpu, model_device
from imitate.evaluate.encoders import build_encoder
from imitate.evaluate.fit import FitResult, Selection, fit
from imitate.evaluate.metrics.classification import classification_metrics, macro_auc
from imitate.evaluate.request import EvalRequest, fit_name, fits_progress
from imitate.evaluate.rows import result_rows
from imitate.evaluate.settings import from_block
from imitate.images.transforms import KAD_AUGMENTS, kad_augment, kad_crop_transform
from imitate.shards.reader import shard_paths

log = logging.getLogger(__name__)

FINETUNE_KINDS = tuple(k for k in KINDS if k != "multiclass")


@dataclass(frozen=True)
class Settings:
    """Optimisation and input of fine-tuning (paper §IV-B defaults); ``device`` is ``cpu`` or ``cuda``."""

    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 64
    weight_decay: float = 1e-6
    crop_size: int = 224
    augment: str = "kad"
    workers: int = 4
    device: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.augment not in KAD_AUGMENTS:
            raise ValueError(f"finetune augment must be one of {', '.join(KAD_AUGMENTS)}, got {self.augment!r}")
        if min(self.epochs, self.batch_size, self.crop_size) < 1 or self.workers < 0:
            raise ValueError("finetune epochs, batch_size and crop_size must be >= 1 and workers >= 0")
        if torch.device(self.device).type not in ("cpu", "cuda"):
            raise ValueError(f"finetune device must be cpu or cuda, got {self.device!r}")

    @classmethod
    def from_block(cls, block: Mapping[str, Any], **fixed: Any) -> Settings:
        """The settings of an ``evaluate.finetune_classification`` block, with ``fixed`` ones (crop_size,
        device, seed) added."""
        return from_block(cls, block, "evaluate.finetune_classification", **fixed)


@dataclass(frozen=True)
class FinetuneResult:
    """Test metrics (``auc_macro``, ``auc:<label>``) of the best validation epoch, and the run's history.

    ``test_probabilities`` (N, L) are the best state's sigmoid outputs on the test images, sorted by key.
    """

    metrics: dict[str, float]
    fit: FitResult
    n_train: int
    n_test: int
    test_probabilities: np.ndarray


def finetune(
    encoder: nn.Module,
    num_features: int,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    train_keys: Sequence[str],
    settings: Settings,
    name: str | None = None,
) -> FinetuneResult:
    """Train ``encoder`` (in place) and a new linear head on the ``train_keys`` images; test the best epoch.

    ``shards_manifest`` is the ``manifest.parquet`` of the prepared dataset's shards; the training images
    come from its train shards, validation and test from all of its validate and test shards. Labels
    come from ``dataset`` by key. ``name`` (the dataset's by default) heads the progress lines.
    """
    _check_inputs(encoder, dataset, train_keys)
    device = torch.device(settings.device)
    train = _split_images(dataset, shards_manifest, "train", sorted(train_keys), settings,
                          kad_crop_transform(settings.crop_size, settings.augment))
    center_crop = kad_crop_transform(settings.crop_size, "none")
    val = _split_images(dataset, shards_manifest, "validate", None, settings, center_crop)
    test = _split_images(dataset, shards_manifest, "test", None, settings, center_crop)
    if len(train) < 2:
        raise ValueError(f"dataset {dataset.name!r}: fine-tuning needs at least 2 training images, got {len(train)}")
    val_labels = val.labels.numpy()
    if not np.isfinite(macro_auc(val_labels, np.zeros_like(val_labels))):
        raise ValueError(f"dataset {dataset.name!r}: no label has both classes in the validate split")

    with torch.random.fork_rng(devices=[]):  # the head's initialisation, without touching the caller's RNG
        torch.manual_seed(settings.seed)
        head = nn.Linear(num_features, len(dataset.label_names))
    model = nn.Sequential(encoder, head).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

    def loader(images: LabelledImages, epoch: int, shuffle: bool) -> DataLoader:
        return epoch_loader(images, epoch=epoch, batch_size=settings.batch_size, workers=settings.workers,
                            shuffle=shuffle, pin_memory=device.type == "cuda")

    def train_epoch(epoch: int) -> tuple[float, int]:
        generator = None
        if settings.augment == "kad":
            epoch_seed = int(np.random.SeedSequence([settings.seed, epoch]).generate_state(1)[0])
            generator = torch.Generator(device=device).manual_seed(epoch_seed)
        return _train_epoch(model, loader(train, epoch, shuffle=True), optimizer, generator), len(train)

    def validate() -> float:
        return macro_auc(val_labels, _predict(model, loader(val, 0, shuffle=False)))

    with deterministic_on_cpu(device):
        result = fit(model, train_epoch, validate, epochs=settings.epochs,
                     selection=Selection("macro AUC", maximise=True), name=name or dataset.name)
        test_scores = _predict(model, loader(test, 0, shuffle=False))
    metrics = classification_metrics(dataset.kind, test.labels.numpy(), test_scores, dataset.label_names)
    return FinetuneResult(metrics=metrics, fit=result, n_train=len(train), n_test=len(test),
                          test_probabilities=test_scores)


def _check_inputs(encoder: nn.Module, dataset: EvalDataset, train_keys: Sequence[str]) -> None:
    """ValueError unless ``dataset`` has fine-tunable labels, every encoder weight trains and no key repeats."""
    if dataset.kind not in FINETUNE_KINDS:
        raise ValueError(f"dataset {dataset.name!r}: fine-tuning takes {' or '.join(FINETUNE_KINDS)} labels, "
                         f"not {dataset.kind!r}")
    if not all(p.requires_grad for p in encoder.parameters()):
        raise ValueError("fine-tuning trains every encoder weight, but some are frozen (use build_encoder)")
    if len(set(train_keys)) != len(train_keys):
        raise ValueError(f"dataset {dataset.name!r}: the training keys repeat some images")


def _split_images(
    dataset: EvalDataset,
    manifest: str | Path,
    split: str,
    keys: list[str] | None,
    settings: Settings,
    transform: Transform,
) -> LabelledImages:
    """The images of ``split``'s shards (only ``keys`` when given), labelled from ``dataset``."""
    index = index_shard_images(shard_paths(manifest, split))
    if keys is None:
        keys = sorted(index)
    missing = [k for k in keys if k not in index]
    if missing:
        raise ValueError(f"{manifest}: {len(missing)} {split} image(s) are not in the {split} shards, "
                         f"e.g. {missing[:5]}")
    labels = dataset.targets(keys)
    position = dataset.index()
    elsewhere = [k for k in keys if dataset.splits[position[k]] != split]
    if elsewhere:
        raise ValueError(f"{manifest}: images {elsewhere[:5]} are in the {split} shards but dataset "
                         f"{dataset.name!r} puts them in another split")
    return LabelledImages(keys, labels, index, transform, seed=settings.seed)


def _inputs(images: Tensor, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """A loader's uint8 crops as the model's input on ``device``: augmented (with a generator), normalised."""
    x = kad_augment(images.to(device, non_blocking=True), generator)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _train_epoch(
    model: nn.Module, batches: DataLoader, optimizer: torch.optim.Optimizer, generator: torch.Generator | None
) -> float:
    """One pass over ``batches``, augmented on the device by ``generator``; the mean loss per image."""
    model.train()
    device = model_device(model)
    total = torch.zeros((), device=device)
    count = 0
    for images, targets in batches:
        targets = targets.to(device, non_blocking=True)
        with autocast(device):
            logits = model(_inputs(images, device, generator))
        loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(targets)
        count += len(targets)
    return float(total) / count


@torch.inference_mode()
def _predict(model: nn.Module, batches: DataLoader) -> np.ndarray:
    """Sigmoid probabilities (N, L) of every image of ``batches``, in order, in eval mode."""
    model.eval()
    device = model_device(model)
    scores = []
    for images, _ in batches:
        with autocast(device):
            logits = model(_inputs(images, device, None))
        scores.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(scores)


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Fine-tuning rows: a fresh encoder trained per subset fraction and seed."""
    dataset = request.dataset()
    info = request.run_info(dataset)
    rows: list[dict[str, object]] = []
    fits = fits_progress(request, log)
    for seed in request.seeds:
        settings = Settings.from_block(request.settings, crop_size=request.crop_size, device=request.device, seed=seed)
        for fraction, keys in sorted(request.training_subsets(seed).items()):
            encoder = build_encoder(request.method, request.backbone, seed=seed, pretrained=request.weights_file)
            result = finetune(encoder, encoder.num_features, dataset, request.shards, keys, settings,
                              name=f"fine-tuning, {fit_name(request, seed, fraction)}")
            rows += result_rows(info, fraction=fraction, seed=seed, metrics=result.metrics, n_train=result.n_train,
                                n_test=result.n_test, best_epoch=result.fit.best_epoch)
            fits.advance()
    return rows
