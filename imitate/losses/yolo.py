"""YOLOv3's geometry and loss for one class: anchors, target assignment, box decoding, the loss.

The detection head is :mod:`imitate.models.yolo`; the task that trains it is
:mod:`imitate.evaluate.tasks.detection`.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

YOLOV3_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
YOLOV3_INPUT_SIZE = 416
IGNORE_IOU = 0.5
MIN_BOX_SIDE = 1.0
_MAX_LOG_SCALE = math.log(1000 / 16)  # torchvision's bound on a decoded size delta: exp() cannot overflow


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


def decode_boxes(raw: Tensor, anchors: Tensor, input_size: int) -> Tensor:
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
            decoded = decode_boxes(raw, level_anchors, input_size).flatten(1, 3)
            overlaps = _best_iou(decoded, truth, valid).view(target.positive.shape) > IGNORE_IOU
        counted = target.positive | ~overlaps
        objectness = F.binary_cross_entropy_with_logits(raw[..., 4], target.positive.float(), reduction="none")
        assigned, box_targets = raw[target.positive], target.boxes[target.positive]
        total = (total + objectness[counted].sum()
                 + F.binary_cross_entropy_with_logits(assigned[:, :2], box_targets[:, :2], reduction="sum")
                 + F.mse_loss(assigned[:, 2:4], box_targets[:, 2:], reduction="sum"))
    return total / len(boxes)
