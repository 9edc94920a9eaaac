"""Object detection on a frozen encoder (paper Table V, §IV-B): YOLOv3's head trained, scored by mAP.

The paper follows MGCA: YOLOv3 on the pretrained ResNet's stages 2-4, only the head trained, no data
augmentation, AdamW lr 5e-4, weight decay 1e-6, batch 16, up to 50 epochs with early stopping on the
validation loss (:func:`imitate.evaluate.heads.fit_head`; the loss below, in eval mode). Images
are squashed to ``input_size`` (MGCA: 224) and normalised as in pretraining. The frozen encoder's
BatchNorm trains on the training batches as in MGCA (``frozen_bn``, :mod:`imitate.models.frozen`).

YOLOv3, one class: the head is :mod:`imitate.models.yolo`; anchors, target assignment, box decoding and
the loss are :mod:`imitate.losses.yolo`. Detections are the boxes left by NMS at IoU ``nms_iou`` (0.5), at
most 100 per image, best first.

Metrics: :func:`imitate.evaluate.metrics.dense.detection_metrics`: ``map`` is COCO's, over all test images and
all those detections (no confidence cut before AP; ``map_conf_cut`` restores the cut); ``map_mgca`` is MGCA's,
over the detections scoring at least ``conf_threshold`` (MGCA: 0.5) on the images with ground truth and with
such a detection. The preview shows the detections above ``conf_threshold``. Boxes are
compared in input pixels: squashing the image to a square scales x and y separately, and IoU is unchanged
by such an axis-aligned scaling, so mapping back to original pixels would not change any score.

On CPU a run is deterministic for a seed (the head's initialisation comes from ``seed`` inside
``fork_rng``, the epoch order from ``(seed, epoch)``); on CUDA it runs in bf16 autocast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import nms

from imitate.evaluate.data.dense import DenseImages
from imitate.evaluate.data.stage_batches import StageBatch, StageBatches, StageCache
from imitate.evaluate.dense import DenseJob, run_dense
from imitate.evaluate.device import autocast, deterministic_on_cpu, model_device
from imitate.evaluate.fit import EpochScore
from imitate.evaluate.heads import HeadSettings, dense_settings, fit_head, head_encoder, with_encoder
from imitate.evaluate.metrics.dense import Detections, confident, detection_metrics
from imitate.evaluate.request import EvalRequest
from imitate.losses.yolo import decode_boxes, detection_loss, yolo_anchors
from imitate.models.frozen import FrozenStages
from imitate.models.yolo import HEAD_STAGES, YoloHead

log = logging.getLogger(__name__)

MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Settings:
    """The head's training (MGCA's detection input, 224), the decoding thresholds (MGCA's, 0.5 both) and
    whether ``map`` too is computed after the confidence cut (``map_conf_cut``; COCO's: not)."""

    head: HeadSettings = field(default_factory=lambda: HeadSettings(input_size=224))
    conf_threshold: float = 0.5
    nms_iou: float = 0.5
    map_conf_cut: bool = False
    head_widths: tuple[int, ...] | None = None  # YoloHead's block widths, finest first (None: YOLOv3's)

    def __post_init__(self) -> None:
        if not (0 <= self.conf_threshold <= 1 and 0 < self.nms_iou <= 1):
            raise ValueError(f"detection needs conf_threshold in [0, 1] and nms_iou in (0, 1]: {self}")
        if self.head.input_size % 32:
            raise ValueError(f"detection input_size must be a multiple of 32 (the stride-32 grid must tile it), "
                             f"got {self.head.input_size}")

    @classmethod
    def from_block(cls, block: Mapping[str, Any], *, device: str, seed: int) -> Settings:
        """The settings of an ``evaluate.detection`` block (its head keys make the :class:`HeadSettings`)."""
        return dense_settings(cls, block, "evaluate.detection", device=device, seed=seed)


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == has no single truth value
class PreviewBoxes:
    """One test image (uint8 S x S) with its ground-truth boxes and the predicted boxes and scores."""

    key: str
    image: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class DetectionResult:
    """Test metrics of the best validation epoch (``map``, ``map_mgca``, ``ap40``, ``ap75``), the run's
    history and a few test images with their boxes."""

    metrics: dict[str, float]
    best_epoch: int
    n_train: int
    n_test: int
    history: tuple[EpochScore, ...]
    preview: tuple[PreviewBoxes, ...]


def decode_detections(
    maps: Sequence[Tensor], anchors: Tensor, input_size: int, *, conf_threshold: float = 0.5, nms_iou: float = 0.5
) -> list[Detections]:
    """Each image's detections from the raw ``maps``: boxes (xyxy input pixels, clipped to the image) scoring
    at least ``conf_threshold``, after NMS at ``nms_iou``, at most :data:`MAX_DETECTIONS`, best first."""
    raws = [m.detach().float().movedim(2, -1) for m in maps]
    boxes = torch.cat([decode_boxes(r, a, input_size).flatten(1, 3) for r, a in zip(raws, anchors, strict=True)], 1)
    boxes = boxes.clamp(0, input_size)
    scores = torch.cat([torch.sigmoid(r[..., 4]).flatten(1) for r in raws], 1)
    detections = []
    for image_boxes, image_scores in zip(boxes, scores, strict=True):
        confident = image_scores >= conf_threshold
        image_boxes, image_scores = image_boxes[confident], image_scores[confident]
        kept = nms(image_boxes, image_scores, nms_iou)[:MAX_DETECTIONS]
        detections.append(Detections(image_boxes[kept].cpu().numpy(), image_scores[kept].cpu().numpy()))
    return detections


def detect(
    encoder: FrozenStages,
    train: DenseImages,
    val: DenseImages,
    test: DenseImages,
    settings: Settings,
    *,
    name: str,
    preview: int = 8,
    cache: StageCache | None = None,
) -> DetectionResult:
    """Train a YOLOv3 head on ``encoder`` (frozen) with ``train`` / ``val``; score the best state on ``test``.

    The three sets must be built at ``settings.head.input_size`` with ``masks=False``. ``preview`` test images
    come back with their boxes: the first by key among those with ground truth, then the others. ``cache``
    holds the encoder's outputs of images seen before (nothing is augmented, so the training images too);
    without it one is made for this run. With ``frozen_bn: train`` the run trains the BatchNorm of its own
    copy of ``encoder`` and caches nothing (:func:`imitate.evaluate.heads.head_encoder`).
    """
    size = settings.head.input_size
    for split, images in (("train", train), ("validate", val), ("test", test)):
        if images.size != size:
            raise ValueError(f"{name}: the {split} images are {images.size} px but input_size is {size}")
        if images.masks:
            raise ValueError(f"{name}: detection reads no masks; build the {split} DenseImages with masks=False")
    if not len(test) or preview < 0:
        raise ValueError(f"{name}: detection needs test images and preview >= 0, got {len(test)} and {preview}")
    device = torch.device(settings.head.device)
    encoder, cache = head_encoder(encoder, HEAD_STAGES, settings.head, cache, name=name)
    with torch.random.fork_rng(devices=[]):  # the head's initialisation, without touching the caller's RNG
        torch.manual_seed(settings.head.seed)
        head = YoloHead([encoder.channels[i] for i in HEAD_STAGES], widths=settings.head_widths).to(device)
    if device.type == "cuda":
        head = head.to(memory_format=torch.channels_last)
    head = with_encoder(head, encoder)
    anchors = yolo_anchors(size).to(device)

    def head_loss(head: nn.Module, batch: StageBatch) -> Tensor:
        stages, _, boxes = batch
        return detection_loss(head(stages), boxes, anchors, size)

    with deterministic_on_cpu(device):
        train_batches, val_batches, test_batches = (cache.batches(images) for images in (train, val, test))
    fit = fit_head(head, head_loss, train_batches, val_batches, settings.head, name=name)
    predictions = _predict(head, test_batches, anchors, settings)
    truths = [test.boxes(i) for i in range(len(test))]
    metrics = detection_metrics(predictions, truths, conf_threshold=settings.conf_threshold,
                                map_conf_cut=settings.map_conf_cut)
    log.info("%s: best epoch %d, test %s", name, fit.best_epoch,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return DetectionResult(metrics, fit.best_epoch, len(train), len(test), fit.history,
                           _previews(test, truths, confident(predictions, settings.conf_threshold), preview))


@torch.inference_mode()
def _predict(head: nn.Module, batches: StageBatches, anchors: Tensor, settings: Settings) -> list[Detections]:
    """The detections of every image of ``batches``, in order, in eval mode: NMS and the 100 best, no cut."""
    head.eval()
    device = model_device(head)
    detections: list[Detections] = []
    with deterministic_on_cpu(device):
        for stages, _, _ in batches.epoch(0, shuffle=False):
            with autocast(device):
                maps = head(stages)
            detections += decode_detections(maps, anchors, settings.head.input_size, conf_threshold=0.0,
                                            nms_iou=settings.nms_iou)
    return detections


def _previews(
    test: DenseImages, truths: list[np.ndarray], predictions: list[Detections], count: int
) -> tuple[PreviewBoxes, ...]:
    """The first ``count`` test images by key, those with ground truth first, with their boxes."""
    order = sorted(range(len(test)), key=lambda i: (not len(truths[i]), test.keys[i]))[:count]
    return tuple(
        PreviewBoxes(test.keys[i], test[(0, i)][0][0].numpy(), truths[i], predictions[i].boxes, predictions[i].scores)
        for i in order
    )


def run(request: EvalRequest) -> list[dict[str, object]]:
    """Detection rows for every fraction and seed."""

    def train_and_test(job: DenseJob, settings: Settings) -> DetectionResult:
        return detect(job.encoder, job.train_images(job.train_keys), job.val, job.test, settings, name=job.name,
                      cache=job.cache)

    return run_dense(request, read_settings=Settings.from_block, stages=lambda encoder: HEAD_STAGES, masks=False,
                     train_and_test=train_and_test)
