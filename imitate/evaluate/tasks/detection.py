"""Object detection on a frozen encoder (paper Table V, §IV-B): YOLOv3's head trained, scored by mAP.

The paper follows MGCA: YOLOv3 on the pretrained ResNet's stages 2-4, only the head trained, no data
augmentation, AdamW lr 5e-4, weight decay 1e-6, batch 16, up to 50 epochs with early stopping on the
validation loss (:func:`imitate.evaluate.head_training.fit_head`; the loss below, in eval mode). Images
are squashed to ``input_size`` (MGCA: 224) and normalised as in pretraining.

YOLOv3, one class (:mod:`imitate.models.yolo` for the head):

- Anchors: YOLOv3's nine COCO anchors for a 416 input, scaled by ``input_size / 416`` as MGCA does; the
  three smallest at stride 8, the three largest at stride 32.
- Assignment: a ground-truth box goes to the one anchor (of nine) whose shape, centred on the box, has the
  highest IoU with it (the first on ties), at the cell holding the box's centre on that anchor's level.
  Its targets are the centre's offsets in the cell (tx, ty in [0, 1]) and tw, th = log(box side / anchor
  side). Boxes under 1 px on a side count as 1 px there, so the logs stay finite. When two boxes land on
  one anchor of one cell, the later box (record order) keeps it, as in Darknet.
- Loss, in float32, each term weighted 1 and summed, then divided by the number of images in the batch:
  objectness BCE-with-logits on every anchor (target 1 on the assigned ones, 0 on the others, except that
  an unassigned anchor whose decoded box has IoU > 0.5 with some ground truth is left out, as in YOLOv3);
  for the assigned anchors, BCE of sigmoid(tx), sigmoid(ty) against the offsets and squared error of tw,
  th against their targets. An image without boxes only adds objectness negatives. (Darknet also scales
  the box terms by 2 - w h; this does not, so every box counts the same.)
- Decoding: centre = (cell + sigmoid(t)) x stride, side = anchor x exp(t), clipped to the image; score =
  sigmoid(objectness). Boxes scoring at least ``conf_threshold`` (MGCA: 0.5) go through NMS at IoU
  ``nms_iou`` (0.5); at most 100 per image are kept.

Metrics: :func:`imitate.evaluate.dense_metrics.detection_metrics` over all test images (``map``) and over
MGCA's subset (``map_mgca``, which skips images without ground truth or without predictions). Boxes are
compared in input pixels: squashing the image to a square scales x and y separately, and IoU is unchanged
by such an axis-aligned scaling, so mapping back to original pixels would not change any score.

On CPU a run is deterministic for a seed (the head's initialisation comes from ``seed`` inside
``fork_rng``, the epoch order from ``(seed, epoch)``); on CUDA it runs in bf16 autocast.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from imitate.evaluate.dense_data import DenseImages
from imitate.evaluate.dense_metrics import Detections, detection_metrics
from imitate.evaluate.head_training import EpochLoss, HeadSettings, fit_head, stage_cache
from imitate.evaluate.runtime import autocast, deterministic_on_cpu, model_device
from imitate.evaluate.stage_batches import StageBatch, StageBatches, StageCache
from imitate.models.frozen import FrozenStages
from imitate.models.yolo import HEAD_STAGES, YoloHead

log = logging.getLogger(__name__)

YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
YOLOV3_INPUT_SIZE = 416
IGNORE_IOU = 0.5
MAX_DETECTIONS = 100
MIN_BOX_SIDE = 1.0
_MAX_LOG_SCALE = math.log(1000 / 16)  # torchvision's bound on a decoded size delta: exp() cannot overflow


@dataclass(frozen=True)
class DetectionSettings:
    """The head's training (MGCA's detection input, 224) and the decoding thresholds (MGCA's, 0.5 both)."""

    head: HeadSettings = field(default_factory=lambda: HeadSettings(input_size=224))
    conf_threshold: float = 0.5
    nms_iou: float = 0.5
    head_widths: tuple[int, ...] | None = None  # YoloHead's block widths, finest first (None: YOLOv3's)

    def __post_init__(self) -> None:
        if not (0 <= self.conf_threshold <= 1 and 0 < self.nms_iou <= 1):
            raise ValueError(f"detection needs conf_threshold in [0, 1] and nms_iou in (0, 1]: {self}")
        if self.head.input_size % 32:
            raise ValueError(f"detection input_size must be a multiple of 32 (the stride-32 grid must tile it), "
                             f"got {self.head.input_size}")


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
    history: tuple[EpochLoss, ...]
    preview: tuple[PreviewBoxes, ...]


@dataclass(frozen=True)
class LevelTargets:
    """One level's targets: the assigned anchors (B x A x H x W bool) and their box targets (B x A x H x W
    x 4: tx, ty offsets in the cell, tw, th log scales; zero where not assigned)."""

    positive: Tensor
    boxes: Tensor


def yolo_anchors(input_size: int) -> Tensor:
    """YOLOv3's anchors for ``input_size``: (3 levels, 3 anchors, width and height) in input pixels,
    stride 8's first."""
    return torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32).view(3, 3, 2) * (input_size / YOLOV3_INPUT_SIZE)


def _last_of_each(keys: Tensor) -> Tensor:
    """Indices of the last occurrence of each distinct value of ``keys``."""
    order = torch.argsort(keys, stable=True)
    ordered = keys[order]
    last = torch.ones_like(ordered, dtype=torch.bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    return order[last]


def assign_targets(
    boxes: Sequence[Tensor], anchors: Tensor, grid_sizes: Sequence[int], input_size: int
) -> list[LevelTargets]:
    """YOLOv3's targets for each image's (M, 4) xyxy input-pixel ``boxes`` on square grids of ``grid_sizes``
    cells a side (finest first), with ``anchors`` from :func:`yolo_anchors` (on the targets' device)."""
    device = anchors.device
    n_anchors = anchors.shape[1]
    truth = torch.cat([torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4) for b in boxes]).to(device)
    image = torch.repeat_interleave(torch.arange(len(boxes), device=device),
                                    torch.tensor([len(b) for b in boxes], device=device))
    size = (truth[:, 2:] - truth[:, :2]).clamp(min=MIN_BOX_SIDE)
    centre = (truth[:, :2] + truth[:, 2:]) / 2
    flat_anchors = anchors.reshape(-1, 2)
    overlap = torch.minimum(size[:, None], flat_anchors[None]).prod(-1)
    shape_iou = overlap / (size.prod(-1)[:, None] + flat_anchors.prod(-1)[None] - overlap)
    best = shape_iou.argmax(1)  # the first maximum on ties
    targets = []
    for level, grid in enumerate(grid_sizes):
        positive = torch.zeros(len(boxes), n_anchors, grid, grid, dtype=torch.bool, device=device)
        values = torch.zeros(len(boxes), n_anchors, grid, grid, 4, device=device)
        here = torch.nonzero(best // n_anchors == level).squeeze(1)
        anchor = best[here] % n_anchors
        in_cells = centre[here] * (grid / input_size)
        cell = in_cells.floor().clamp(0, grid - 1)
        box_targets = torch.cat([(in_cells - cell).clamp(0, 1), torch.log(size[here] / anchors[level, anchor])], 1)
        b, x, y = image[here], cell[:, 0].long(), cell[:, 1].long()
        keep = _last_of_each(((b * n_anchors + anchor) * grid + y) * grid + x)  # index_put needs unique indices
        b, anchor, x, y = b[keep], anchor[keep], x[keep], y[keep]
        positive[b, anchor, y, x] = True
        values[b, anchor, y, x] = box_targets[keep]
        targets.append(LevelTargets(positive, values))
    return targets


def _decode(raw: Tensor, anchors: Tensor, input_size: int) -> Tensor:
    """B x A x H x W x 5 raw outputs -> B x A x H x W x 4 xyxy boxes in input pixels (not clipped)."""
    grid = raw.shape[-2]
    stride = input_size / grid
    cells = torch.arange(grid, device=raw.device, dtype=raw.dtype)
    cell_xy = torch.stack([cells[None, :].expand(grid, grid), cells[:, None].expand(grid, grid)], -1)
    centre = (torch.sigmoid(raw[..., :2]) + cell_xy) * stride
    side = torch.exp(raw[..., 2:4].clamp(max=_MAX_LOG_SCALE)) * anchors[None, :, None, None, :]
    return torch.cat([centre - side / 2, centre + side / 2], -1)


def _padded_truth(boxes: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """Images' boxes as B x M x 4 (zero-padded) and the B x M mask of real ones."""
    count = max((len(b) for b in boxes), default=0)
    padded = torch.zeros(len(boxes), count, 4, device=device)
    valid = torch.zeros(len(boxes), count, dtype=torch.bool, device=device)
    for i, b in enumerate(boxes):
        padded[i, : len(b)] = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).to(device)
        valid[i, : len(b)] = True
    return padded, valid


def _best_iou(predicted: Tensor, truth: Tensor, valid: Tensor) -> Tensor:
    """B x N: each predicted box's highest IoU with its image's real ground-truth boxes (0 if none)."""
    top_left = torch.maximum(predicted[:, :, None, :2], truth[:, None, :, :2])
    bottom_right = torch.minimum(predicted[:, :, None, 2:], truth[:, None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_predicted = (predicted[..., 2:] - predicted[..., :2]).clamp(min=0).prod(-1)
    area_truth = (truth[..., 2:] - truth[..., :2]).clamp(min=0).prod(-1)
    union = area_predicted[:, :, None] + area_truth[:, None, :] - overlap
    iou = (overlap / union.clamp(min=1e-9)).masked_fill(~valid[:, None, :], 0)
    return iou.amax(-1) if iou.shape[-1] else iou.new_zeros(iou.shape[:2])


def detection_loss(maps: Sequence[Tensor], boxes: Sequence[Tensor], anchors: Tensor, input_size: int) -> Tensor:
    """YOLOv3's loss of the raw ``maps`` (B x A x 5 x H x W, finest first) for each image's xyxy input-pixel
    ``boxes``, per image of the batch (module docstring)."""
    raws = [m.float().movedim(2, -1) for m in maps]  # B x A x H x W x 5
    targets = assign_targets(boxes, anchors, [r.shape[-2] for r in raws], input_size)
    truth, valid = _padded_truth(boxes, anchors.device)
    total = raws[0].new_zeros(())
    for raw, target, level_anchors in zip(raws, targets, anchors, strict=True):
        with torch.no_grad():
            decoded = _decode(raw, level_anchors, input_size).flatten(1, 3)
            overlaps = _best_iou(decoded, truth, valid).view(target.positive.shape) > IGNORE_IOU
        counted = target.positive | ~overlaps
        objectness = F.binary_cross_entropy_with_logits(raw[..., 4], target.positive.float(), reduction="none")
        assigned, box_targets = raw[target.positive], target.boxes[target.positive]
        total = (total + objectness[counted].sum()
                 + F.binary_cross_entropy_with_logits(assigned[:, :2], box_targets[:, :2], reduction="sum")
                 + F.mse_loss(assigned[:, 2:4], box_targets[:, 2:], reduction="sum"))
    return total / len(boxes)


def decode_detections(
    maps: Sequence[Tensor], anchors: Tensor, input_size: int, *, conf_threshold: float = 0.5, nms_iou: float = 0.5
) -> list[Detections]:
    """Each image's detections from the raw ``maps``: boxes (xyxy input pixels, clipped to the image) scoring
    at least ``conf_threshold``, after NMS at ``nms_iou``, at most :data:`MAX_DETECTIONS`, best first."""
    raws = [m.detach().float().movedim(2, -1) for m in maps]
    boxes = torch.cat([_decode(r, a, input_size).flatten(1, 3) for r, a in zip(raws, anchors, strict=True)], 1)
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
    settings: DetectionSettings,
    *,
    name: str,
    preview: int = 8,
    cache: StageCache | None = None,
) -> DetectionResult:
    """Train a YOLOv3 head on ``encoder`` (frozen) with ``train`` / ``val``; score the best state on ``test``.

    The three sets must be built at ``settings.head.input_size`` with ``masks=False``. ``preview`` test images
    come back with their boxes: the first by key among those with ground truth, then the others. ``cache``
    holds the encoder's outputs of images seen before (nothing is augmented, so the training images too);
    without it one is made for this run.
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
    cache = cache if cache is not None else stage_cache(encoder, HEAD_STAGES, settings.head)
    with torch.random.fork_rng(devices=[]):  # the head's initialisation, without touching the caller's RNG
        torch.manual_seed(settings.head.seed)
        head = YoloHead([encoder.channels[i] for i in HEAD_STAGES], widths=settings.head_widths).to(device)
    if device.type == "cuda":
        head = head.to(memory_format=torch.channels_last)
    anchors = yolo_anchors(size).to(device)

    def head_loss(head: nn.Module, batch: StageBatch) -> Tensor:
        stages, _, boxes = batch
        return detection_loss(head(stages), boxes, anchors, size)

    with deterministic_on_cpu(device):
        train_batches, val_batches, test_batches = (cache.batches(images) for images in (train, val, test))
    fit = fit_head(head, head_loss, train_batches, val_batches, settings.head, name=name)
    predictions = _predict(head, test_batches, anchors, settings)
    truths = [test.boxes(i) for i in range(len(test))]
    metrics = detection_metrics(predictions, truths)
    log.info("%s: best epoch %d, test %s", name, fit.best_epoch,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return DetectionResult(metrics, fit.best_epoch, len(train), len(test), fit.history,
                           _previews(test, truths, predictions, preview))


@torch.inference_mode()
def _predict(head: nn.Module, batches: StageBatches, anchors: Tensor, settings: DetectionSettings) -> list[Detections]:
    """The detections of every image of ``batches``, in order, in eval mode."""
    head.eval()
    device = model_device(head)
    detections: list[Detections] = []
    with deterministic_on_cpu(device):
        for stages, _, _ in batches.epoch(0, shuffle=False):
            with autocast(device):
                maps = head(stages)
            detections += decode_detections(maps, anchors, settings.head.input_size,
                                            conf_threshold=settings.conf_threshold, nms_iou=settings.nms_iou)
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
