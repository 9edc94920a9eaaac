"""The report's preview grid: ground truth in green, predictions in red, same bytes for the same input."""

from types import SimpleNamespace

import numpy as np
from PIL import Image

from imitate.evaluate.preview import COLUMNS, PANEL, write_preview


def _mask(y0, y1, x0, x1, size=32):
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_segmentation_preview_fills_predictions_and_outlines_truth(tmp_path):
    image = np.full((32, 32), 100, np.uint8)
    item = SimpleNamespace(key="a", image=image, truth=_mask(8, 24, 8, 24), predicted=_mask(0, 8, 0, 8))
    path = write_preview([item], tmp_path / "seg.png", title="segmentation: demo")
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(int)
    top = sheet.shape[0] - PANEL - 14  # the panel row starts below the title and legend lines
    assert sheet.shape[1] == COLUMNS * PANEL
    red = sheet[top + 10, 10]  # inside the predicted square (upper left eighth of the panel)
    assert red[0] > red[1] + 40 and red[0] > red[2] + 40
    edge = sheet[top + PANEL // 4, PANEL // 2]  # on the ground truth's upper edge
    assert edge[1] > edge[0] + 100
    middle = sheet[top + PANEL // 2, PANEL // 2]  # inside the truth, outside the prediction: the image
    assert abs(middle[0] - middle[1]) < 3
    again = write_preview([item], tmp_path / "again.png", title="segmentation: demo")
    assert again.read_bytes() == path.read_bytes()


def test_detection_preview_draws_boxes(tmp_path):
    image = np.full((64, 64), 90, np.uint8)
    item = SimpleNamespace(key="b", image=image, truth=np.array([[16, 16, 48, 48]], np.float32),
                           predicted=np.array([[0, 40, 20, 60]], np.float32), scores=np.array([0.9], np.float32))
    path = write_preview([item, item], tmp_path / "det.png", title="detection: demo")
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(int)
    top = sheet.shape[0] - PANEL - 14
    green = sheet[top + PANEL // 2, PANEL // 4]  # the truth's left side, x = 16 / 64 of the panel
    assert green[1] > green[0] + 100
    red = sheet[top + PANEL * 50 // 64, PANEL * 20 // 64]  # the prediction's right side, x = 20 / 64
    assert red[0] > red[1] + 100
    assert write_preview([], tmp_path / "none.png", title="empty").is_file()
