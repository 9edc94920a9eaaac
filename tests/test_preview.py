"""The report's preview grid: ground truth in green, predictions in red, same bytes for the same input."""

from types import SimpleNamespace

import numpy as np
from PIL import Image

from imitate.evaluate.preview import COLUMNS, PANEL, write_preview


def _mask(y0, y1, x0, x1, size=32):
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _read(path):
    """The PNG as written, read back by Pillow: H x W x 3 integers."""
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        return np.asarray(png).astype(int)


def test_segmentation_preview_fills_predictions_and_outlines_truth(tmp_path):
    image = np.full((32, 32), 100, np.uint8)
    item = SimpleNamespace(key="a", image=image, truth=_mask(8, 24, 8, 24), predicted=_mask(0, 8, 0, 8))
    path = write_preview([item], tmp_path / "seg.png", title="segmentation: demo")
    sheet = _read(path)
    assert sheet.shape == (2 * 14 + PANEL + 14, COLUMNS * PANEL, 3)  # title, legend, one row of panels, its key
    panel = sheet[28 : 28 + PANEL, :PANEL]
    scale = PANEL // 32
    # the prediction filled: 60 % of the grey 100 plus 40 % of red (235, 50, 40)
    predicted = _mask(0, 8 * scale, 0, 8 * scale, PANEL)
    assert (panel[predicted] == (154, 80, 76)).all()
    # the truth (rows and columns 8..23 of 32) outlined in green, one panel pixel wide
    truth = _mask(8 * scale, 24 * scale, 8 * scale, 24 * scale, PANEL)
    outline = truth & ~_mask(8 * scale + 1, 24 * scale - 1, 8 * scale + 1, 24 * scale - 1, PANEL)
    assert (panel[outline] == (40, 220, 60)).all()
    assert (panel[~predicted & ~outline] == 100).all()  # everywhere else: the image
    again = write_preview([item], tmp_path / "again.png", title="segmentation: demo")
    assert again.read_bytes() == path.read_bytes()
    # another prediction changes exactly the pixels either prediction covers
    moved = SimpleNamespace(key="a", image=image, truth=item.truth, predicted=_mask(24, 32, 24, 32))
    other = _read(write_preview([moved], tmp_path / "moved.png", title="segmentation: demo"))
    changed = (other != sheet).any(axis=2)
    assert (changed[28 : 28 + PANEL, :PANEL] == predicted | _mask(24 * scale, PANEL, 24 * scale, PANEL, PANEL)).all()
    assert changed.sum() == 2 * (8 * scale) ** 2


def test_detection_preview_draws_boxes(tmp_path):
    image = np.full((64, 64), 90, np.uint8)
    item = SimpleNamespace(
        key="b",
        image=image,
        truth=np.array([[16, 16, 48, 48]], np.float32),
        predicted=np.array([[0, 40, 20, 60]], np.float32),
        scores=np.array([0.9], np.float32),
    )
    path = write_preview([item, item], tmp_path / "det.png", title="detection: demo")
    sheet = _read(path)
    assert sheet.shape == (2 * 14 + PANEL + 14, COLUMNS * PANEL, 3)
    scale = PANEL // 64
    for left in (0, PANEL):  # both items, side by side
        panel = sheet[28 : 28 + PANEL, left : left + PANEL]
        # the truth (16..48 of 64) a 2-pixel green rectangle: its left side at x = 48, 49, its right at 143, 144
        middle = panel[32 * scale]
        assert (middle[[16 * scale, 16 * scale + 1, 48 * scale - 1, 48 * scale]] == (40, 220, 60)).all()
        assert (middle[[16 * scale - 1, 16 * scale + 2, 32 * scale, 48 * scale + 1]] == 90).all()
        # the prediction (x 0..20, y 40..60) a 1-pixel red rectangle: its right side at x = 60 (below the truth)
        assert (panel[49 * scale : 59 * scale, 20 * scale] == (235, 50, 40)).all()
        assert (panel[49 * scale : 59 * scale, 20 * scale + 1] == 90).all()
    moved = SimpleNamespace(
        key="b", image=image, truth=item.truth, predicted=np.array([[30, 2, 60, 10]], np.float32), scores=item.scores
    )
    other = _read(write_preview([moved, item], tmp_path / "moved.png", title="detection: demo"))
    changed = (other != sheet).any(axis=2)
    assert not changed[:, PANEL:].any()  # the second panel is the same item
    panel = changed[28 : 28 + PANEL, :PANEL]  # the first: the old box's right side gone, the new one's drawn
    assert panel[49 * scale : 59 * scale, 20 * scale].all() and panel[3 * scale : 10 * scale, 60 * scale].all()
    # no items: the title, the legend and a note, on white
    empty = _read(write_preview([], tmp_path / "none.png", title="empty"))
    assert empty.shape == (2 * 14 + PANEL + 14, COLUMNS * PANEL, 3)
    inked = (empty < 128).all(axis=2).any(axis=1)  # rows with black text
    assert inked[:14].any() and inked[14:28].any() and inked[28:48].any()
    assert (empty[48:] == 255).all()
