"""Dice for segmentation and mAP for detection: the dense downstream tasks of Table V.

Both follow MGCA's protocol, which IMITATE says it uses, with its choices made explicit:

- Dice is computed per image on thresholded masks and averaged over images. An image whose ground truth is
  empty scores 1 if the prediction is empty too, else 0 (MGCA's convention). The means over positive and
  negative images are reported beside the overall mean, because the all-or-nothing score of the negatives can
  dominate it. ``DiceAccumulator`` keeps one number per image, so a test set never has to be in memory as masks.
- Detection AP is single-class COCO AP as pycocotools' ``COCOeval`` computes it (area "all", 100 detections per
  image, precision sampled at 101 recall points), written out in numpy and checked against torchmetrics'
  pycocotools backend in the tests. mAP averages it over IoU 0.40:0.05:0.75 (MGCA's thresholds). MGCA keeps only
  the detections scoring at least 0.5 and then drops the images without ground truth or without any such
  detection before it computes mAP, so its number ignores missed images and false positives on healthy images,
  and its precision-recall curve ends where the confidence cut does. ``detection_metrics`` reports both:
  ``map_mgca`` as MGCA computes it, and ``map`` as COCO does: every image, every detection (the 100 best per
  image, COCO's ``maxDets``) ranked by score with no confidence cut before AP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

IOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.40 + 0.05 * i, 2) for i in range(8))
MAX_DETECTIONS_PER_IMAGE = 100
# pycocotools' own recall grid, bit for bit: a recall such as 3/10 must land on the same side of each point.
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
_IMAGES_PER_CHUNK = 512  # bounds the padded (images, detections, ground truths) IoU array of the matching


# ---------------------------------------------------------------- segmentation


def dice_scores(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image Dice 2|P∩G| / (|P| + |G|) of bool (N, H, W) masks, float64 (N,).

    An image whose ground truth is empty scores 1.0 if the prediction is empty too and 0.0 otherwise
    (MGCA's convention, which is also the formula with 0/0 read as 1).
    """
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape or predicted.ndim != 3:
        raise ValueError(f"Dice needs two (N, H, W) masks of one shape, got {predicted.shape} and {target.shape}")
    if predicted.dtype != bool or target.dtype != bool:
        raise ValueError(
            f"Dice needs bool masks (threshold the probabilities first), got {predicted.dtype} and {target.dtype}"
        )
    overlap = np.count_nonzero(predicted & target, axis=(1, 2))
    total = np.count_nonzero(predicted, axis=(1, 2)) + np.count_nonzero(target, axis=(1, 2))
    return np.divide(2.0 * overlap, total, out=np.ones(len(total)), where=total > 0)


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


class DiceAccumulator:
    """Per-image Dice gathered batch by batch, so that the masks of a whole test set are never held at once."""

    def __init__(self) -> None:
        self._scores: list[np.ndarray] = []
        self._empty_target: list[np.ndarray] = []

    def add(self, predicted_batch: np.ndarray, target_batch: np.ndarray) -> None:
        """Score one batch of bool (B, H, W) masks (see ``dice_scores``)."""
        self._scores.append(dice_scores(predicted_batch, target_batch))
        self._empty_target.append(~np.asarray(target_batch).any(axis=(1, 2)))

    def metrics(self) -> dict[str, float]:
        """Mean Dice over all images, over those with a non-empty and with an empty ground truth (NaN if none)."""
        if not self._scores:
            raise ValueError("DiceAccumulator.metrics: no batch was added")
        scores, empty = np.concatenate(self._scores), np.concatenate(self._empty_target)
        if not len(scores):
            raise ValueError("DiceAccumulator.metrics: the batches added hold no image")
        return {
            "dice": float(scores.mean()),
            "dice_positive": _mean_or_nan(scores[~empty]),
            "dice_negative": _mean_or_nan(scores[empty]),
        }


def segmentation_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``dice``, ``dice_positive`` and ``dice_negative`` of thresholded bool (N, H, W) masks."""
    accumulator = DiceAccumulator()
    accumulator.add(predicted, target)
    return accumulator.metrics()


# ---------------------------------------------------------------- detection


def _checked_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    """``boxes`` as float64 (K, 4) xyxy, or a ValueError naming ``what`` and the fault."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}: boxes must have shape (K, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{what}: boxes must be finite")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if len(inverted):
        raise ValueError(
            f"{what}: box {inverted[0]} {boxes[inverted[0]].tolist()} is not x0, y0, x1, y1 with x1 >= x0, y1 >= y0"
        )
    return boxes


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == has no single truth value
class Detections:
    """One image's detections: ``boxes`` (K, 4) xyxy in pixels and their ``scores`` (K,)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        boxes = _checked_boxes(self.boxes, "Detections")
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"Detections: {len(boxes)} boxes but {len(scores)} scores")
        if not np.isfinite(scores).all():
            raise ValueError("Detections: scores must be finite")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (..., K, 4) against (..., M, 4) xyxy boxes, (..., K, M); 0 where boxes do not overlap."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    overlap = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return np.divide(overlap, area_a + area_b - overlap, out=np.zeros_like(overlap), where=overlap > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (K, M) of (K, 4) against (M, 4) xyxy boxes in continuous coordinates (area (x1-x0)*(y1-y0), no +1)."""
    return _pairwise_iou(_checked_boxes(a, "box_iou a"), _checked_boxes(b, "box_iou b"))


def _checked_inputs(predictions: Sequence[Detections], targets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The ground-truth boxes as float64 (M, 4) arrays, after checking both lists."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} images of predictions but {len(targets)} of ground truth")
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, Detections):
            raise TypeError(f"predictions[{i}] is a {type(prediction).__name__}, not Detections")
    return [_checked_boxes(boxes, f"ground truth of image {i}") for i, boxes in enumerate(targets)]


def _checked_thresholds(iou_thresholds: Sequence[float]) -> np.ndarray:
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if not len(thresholds) or not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise ValueError(f"IoU thresholds must be a non-empty list in [0, 1], got {list(iou_thresholds)}")
    return thresholds


def _best_detections(predictions: Sequence[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every image's top 100 detections by score (stable), concatenated image by image, best first in each image.

    Returns the boxes (D, 4), scores (D,) and the number kept per image (N,).
    """
    counts = np.array([len(p.scores) for p in predictions], dtype=np.int64)
    if not counts.sum():
        return np.zeros((0, 4)), np.zeros(0), counts
    scores = np.concatenate([p.scores for p in predictions])
    boxes = np.concatenate([p.boxes for p in predictions])
    image = np.repeat(np.arange(len(counts)), counts)
    order = np.lexsort((-scores, image))  # lexsort is stable, as pycocotools' mergesort
    rank = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    kept = order[rank < MAX_DETECTIONS_PER_IMAGE]
    return boxes[kept], scores[kept], np.minimum(counts, MAX_DETECTIONS_PER_IMAGE)


def _padded(boxes: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images' boxes as a padded (C, L, 4) array, the (C, L) mask of real boxes and their flat indices."""
    slot = np.arange(counts.max())
    valid = slot < counts[:, None]
    flat = np.where(valid, starts[:, None] + slot, 0)
    return boxes[flat], valid, flat


def _matches(
    det_boxes: np.ndarray,
    det_counts: np.ndarray,
    gt_boxes: np.ndarray,
    gt_counts: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """(T, D) bool: whether each detection matches a ground truth at each IoU threshold.

    COCO's greedy matching: in each image, detections in descending score each take the still unmatched
    ground truth of highest IoU >= the threshold (the last of equal IoUs, as pycocotools' loop does). All
    thresholds and a chunk of images go at once; the loop runs over the detection rank only.
    """
    matched = np.zeros((len(thresholds), len(det_boxes)), dtype=bool)
    det_starts, gt_starts = np.cumsum(det_counts) - det_counts, np.cumsum(gt_counts) - gt_counts
    images = np.flatnonzero((det_counts > 0) & (gt_counts > 0))
    images = images[np.argsort(det_counts[images], kind="stable")]  # similar detection counts share a chunk
    # pycocotools caps the threshold below 1 so that a perfect box still matches at IoU 1.
    limits = np.minimum(thresholds, 1 - 1e-10)[:, None]
    for start in range(0, len(images), _IMAGES_PER_CHUNK):
        chunk = images[start : start + _IMAGES_PER_CHUNK]
        dets, det_valid, det_flat = _padded(det_boxes, det_starts[chunk], det_counts[chunk])
        gts, gt_valid, _ = _padded(gt_boxes, gt_starts[chunk], gt_counts[chunk])
        iou = np.where(det_valid[:, :, None] & gt_valid[:, None, :], _pairwise_iou(dets, gts), -np.inf)
        n_gt = iou.shape[2]
        taken = np.zeros((len(thresholds), len(chunk), n_gt), dtype=bool)
        chunk_matched = np.zeros((len(thresholds), len(chunk), iou.shape[1]), dtype=bool)
        for rank in range(iou.shape[1]):
            candidates = np.where(taken, -np.inf, iou[None, :, rank, :])
            best = n_gt - 1 - np.argmax(candidates[..., ::-1], axis=-1)
            hit = np.take_along_axis(candidates, best[..., None], axis=-1)[..., 0] >= limits
            chunk_matched[:, :, rank] = hit
            threshold_index, image_index = np.nonzero(hit)
            taken[threshold_index, image_index, best[hit]] = True
        matched[:, det_flat[det_valid]] = chunk_matched[:, det_valid]
    return matched


def _interpolated_ap(scores: np.ndarray, matched: np.ndarray, n_gt: int) -> np.ndarray:
    """(T,) AP: interpolated precision averaged over ``RECALL_POINTS`` (0 where the recall is not reached).

    ``scores`` run image by image, best first within an image, so a stable sort of them breaks ties the way
    pycocotools' accumulate does. NaN if there is no ground truth.
    """
    if not n_gt:
        return np.full(len(matched), np.nan)
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(matched[:, order], axis=1)
    recall = true_positives / n_gt
    precision = true_positives / np.arange(1, len(order) + 1)
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    aps = np.empty(len(matched))
    for t in range(len(matched)):
        index = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        aps[t] = np.append(precision[t], 0.0)[index].mean()  # index == D: recall never reached, precision 0
    return aps


def _average_precisions(
    predictions: Sequence[Detections], targets: list[np.ndarray], thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(T,) APs over all images of checked inputs, and over MGCA's subset: images with truth and predictions.

    The subset needs no second matching: matching is per image, and the subset's detections keep their order.
    """
    gt_counts = np.array([len(boxes) for boxes in targets], dtype=np.int64)
    det_boxes, det_scores, det_counts = _best_detections(predictions)
    gt_boxes = np.concatenate([np.zeros((0, 4)), *targets])
    matched = _matches(det_boxes, det_counts, gt_boxes, gt_counts, thresholds)
    in_mgca = (gt_counts > 0) & (det_counts > 0)
    kept = np.repeat(in_mgca, det_counts)
    all_images = _interpolated_ap(det_scores, matched, int(gt_counts.sum()))
    return all_images, _interpolated_ap(det_scores[kept], matched[:, kept], int(gt_counts[in_mgca].sum()))


def average_precision(predictions: Sequence[Detections], targets: Sequence[np.ndarray], iou_threshold: float) -> float:
    """Single-class COCO AP over all images at one IoU threshold (NaN if there is no ground truth at all).

    ``targets[i]`` holds image i's ground-truth boxes (M, 4) xyxy. Ground truth on images without predictions
    counts as missed; predictions on images without ground truth are false positives.
    """
    targets = _checked_inputs(predictions, targets)
    return float(_average_precisions(predictions, targets, _checked_thresholds([iou_threshold]))[0][0])


def mean_average_precision(
    predictions: Sequence[Detections],
    targets: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> float:
    """Mean over ``iou_thresholds`` of ``average_precision`` over all images."""
    targets = _checked_inputs(predictions, targets)
    return float(_average_precisions(predictions, targets, _checked_thresholds(iou_thresholds))[0].mean())


def mgca_mean_average_precision(
    predictions: Sequence[Detections],
    targets: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> float:
    """mAP over only the images with at least one ground-truth box and at least one prediction.

    This is what MGCA's detector reports: it skips the other images, which hides missed images and false
    positives on healthy ones and so inflates mAP. It is kept only to compare with published numbers.
    """
    targets = _checked_inputs(predictions, targets)
    return float(_average_precisions(predictions, targets, _checked_thresholds(iou_thresholds))[1].mean())


def confident(predictions: Sequence[Detections], conf_threshold: float) -> list[Detections]:
    """Each image's detections scoring at least ``conf_threshold``."""
    return [Detections(p.boxes[p.scores >= conf_threshold], p.scores[p.scores >= conf_threshold]) for p in predictions]


def detection_metrics(
    predictions: Sequence[Detections],
    targets: Sequence[np.ndarray],
    *,
    conf_threshold: float = 0.5,
    map_conf_cut: bool = False,
) -> dict[str, float]:
    """``map``, ``map_mgca``, ``ap40`` and ``ap75`` over ``IOU_THRESHOLDS`` of uncut ``predictions``.

    ``map`` (and its ends ``ap40``, ``ap75``) is COCO's: all images and all detections, no confidence cut
    (with ``map_conf_cut``, the detections scoring at least ``conf_threshold`` only, as before COCO's was
    used). ``map_mgca`` is MGCA's: detections scoring at least ``conf_threshold`` (MGCA: 0.5), on the images
    with ground truth and with such a detection.
    """
    targets = _checked_inputs(predictions, targets)
    thresholds = np.asarray(IOU_THRESHOLDS)
    aps, mgca_aps = _average_precisions(confident(predictions, conf_threshold), targets, thresholds)
    if not map_conf_cut:
        aps = _average_precisions(predictions, targets, thresholds)[0]
    return {"map": float(aps.mean()), "map_mgca": float(mgca_aps.mean()), "ap40": float(aps[0]), "ap75": float(aps[-1])}
