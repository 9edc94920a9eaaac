"""A PNG grid of test images with their ground truth (green) and the predictions (red), for the report.

Segmentation items (``truth`` and ``predicted`` masks) show the predicted mask filled and the ground
truth outlined; detection items (boxes, with ``scores``) show rectangles, the predictions with their
score. Drawn with Pillow alone, so the same predictions give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

PANEL = 192  # pixels per image in the grid
COLUMNS = 4
_TEXT_ROW = 14
_TRUTH, _PREDICTED = (40, 220, 60), (235, 50, 40)


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` with a 4-neighbour outside it."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _scaled(mask: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((PANEL, PANEL), Image.Resampling.NEAREST)) > 0


def _panel(item: Any) -> Image.Image:
    """One image with its ground truth and prediction drawn over it."""
    size = item.image.shape[0]
    grey = np.asarray(Image.fromarray(item.image).resize((PANEL, PANEL), Image.Resampling.BILINEAR))
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if hasattr(item, "scores"):
        panel = Image.fromarray(rgb.astype(np.uint8))
        pen = ImageDraw.Draw(panel)
        scale = PANEL / size
        for box in np.asarray(item.truth).reshape(-1, 4):
            pen.rectangle([float(v) * scale for v in box], outline=_TRUTH, width=2)
        for box, score in zip(np.asarray(item.predicted).reshape(-1, 4), item.scores, strict=True):
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            pen.rectangle([x0, y0, x1, y1], outline=_PREDICTED, width=1)
            pen.text((x0 + 2, max(y0 - 11, 0)), f"{float(score):.2f}", fill=_PREDICTED)
        return panel
    predicted = _scaled(item.predicted)
    rgb[predicted] = 0.6 * rgb[predicted] + 0.4 * np.array(_PREDICTED, np.float32)
    rgb[_outline(_scaled(item.truth))] = _TRUTH
    return Image.fromarray(rgb.round().astype(np.uint8))


def write_preview(items: Sequence[Any], path: str | Path, *, title: str) -> Path:
    """Draw ``items`` (segmentation or detection previews) in a grid under ``title``; write ``path``."""
    path = Path(path)
    rows = max(1, -(-len(items) // COLUMNS))
    width = COLUMNS * PANEL
    sheet = Image.new("RGB", (width, 2 * _TEXT_ROW + rows * (PANEL + _TEXT_ROW)), (255, 255, 255))
    pen = ImageDraw.Draw(sheet)
    pen.text((4, 1), title, fill=(0, 0, 0))
    pen.text((4, _TEXT_ROW), "green: ground truth   red: prediction", fill=(0, 0, 0))
    if not items:
        pen.text((4, 2 * _TEXT_ROW + 4), "no test images", fill=(0, 0, 0))
    for i, item in enumerate(items):
        x, y = (i % COLUMNS) * PANEL, 2 * _TEXT_ROW + (i // COLUMNS) * (PANEL + _TEXT_ROW)
        sheet.paste(_panel(item), (x, y))
        pen.text((x + 2, y + PANEL + 1), str(item.key)[-30:], fill=(0, 0, 0))  # keys differ at the end
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG", optimize=False)
    return path
