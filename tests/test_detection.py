"""YOLOv3 detection on a frozen encoder: head layout, anchors, targets, loss, decoding, and a tiny full run."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from imitate.evaluate.data.dense import DenseImages, read_dense_targets, read_geometry
from imitate.evaluate.data.shard_images import index_shard_images
from imitate.evaluate.data.stage_batches import StageCache
from imitate.evaluate.heads import HeadSettings
from imitate.evaluate.tasks.detection import Settings, decode_detections, detect
from imitate.losses.yolo import YOLOV3_ANCHORS, assign_targets, detection_loss, yolo_anchors
from imitate.models.backbone import ResNetBackbone
from imitate.models.frozen import FrozenStages
from imitate.models.yolo import HEAD_STAGES, DetectionModel, YoloHead
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards

SIZE = 64
GRIDS = (8, 4, 2)  # cells a side at strides 8, 16, 32 for a 64-px input
CHANNELS = {"resnet18": (128, 256, 512), "resnet50": (512, 1024, 2048)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoder() -> FrozenStages:
    torch.manual_seed(0)
    return FrozenStages(ResNetBackbone("resnet18"))


# ---------------------------------------------------------------- model


@pytest.mark.parametrize("backbone", sorted(CHANNELS))
@pytest.mark.parametrize("size", [64, 224])
def test_head_gives_one_map_per_stride_finest_first(backbone, size):
    channels = CHANNELS[backbone]
    torch.manual_seed(0)
    head = YoloHead(channels)
    stages = [torch.randn(2, c, size // s, size // s) for c, s in zip(channels, (8, 16, 32), strict=True)]
    maps = head(stages)
    assert [tuple(m.shape) for m in maps] == [(2, 3, 5, size // s, size // s) for s in (8, 16, 32)]
    # half the stage's channels, capped at YOLOv3's widths: resnet50 gets YOLOv3's head exactly
    widths = [level.block[0][0].out_channels for level in head.levels]  # coarsest first
    assert widths == ([512, 256, 128] if backbone == "resnet50" else [256, 128, 64])


def test_head_maps_are_anchor_major_and_objectness_starts_unlikely():
    head = YoloHead(CHANNELS["resnet18"])
    stages = [torch.randn(1, c, 8 // i, 8 // i) for c, i in zip(CHANNELS["resnet18"], (1, 2, 4), strict=True)]
    assert torch.sigmoid(head(stages)[0][:, :, 4]).mean() < 0.1
    for level in head.levels:
        torch.nn.init.zeros_(level.output[-1].weight)
        torch.nn.init.zeros_(level.output[-1].bias)
        level.output[-1].bias.data += torch.arange(15.0)
    for level_map in head(stages):
        assert torch.equal(level_map[0, :, :, 0, 0], torch.arange(15.0).view(3, 5))


def test_detection_model_trains_only_the_head_and_keeps_the_encoder_in_eval():
    encoder = _encoder()
    model = DetectionModel(encoder, YoloHead([encoder.channels[i] for i in HEAD_STAGES])).train()
    assert not encoder.training and not any(m.training for m in encoder.modules())
    statistics = {k: v.clone() for k, v in encoder.state_dict().items()}
    maps = model(torch.randn(2, 3, SIZE, SIZE))
    detection_loss(maps, [torch.tensor([[4.0, 4, 30, 20]]), torch.zeros(0, 4)], yolo_anchors(SIZE), SIZE).backward()
    assert all(torch.equal(v, statistics[k]) for k, v in encoder.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in model.head.parameters()}


# ---------------------------------------------------------------- anchors and targets


def test_anchors_are_yolov3s_scaled_to_the_input_smallest_on_stride_8():
    assert torch.equal(yolo_anchors(416), torch.tensor(YOLOV3_ANCHORS, dtype=torch.float32).view(3, 3, 2))
    anchors = yolo_anchors(224)
    assert torch.allclose(anchors[0, 0], torch.tensor([10.0, 13.0]) * 224 / 416)
    assert torch.allclose(anchors[2, 2], torch.tensor([373.0, 326.0]) * 224 / 416)


def _box(centre: tuple[float, float], side: tuple[float, float]) -> list[float]:
    (x, y), (w, h) = centre, side
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def test_each_box_goes_to_its_best_shaped_anchor_at_its_centre_cell():
    anchors = yolo_anchors(SIZE)
    big = anchors[2, 1].tolist()  # a box of exactly this anchor's shape
    boxes = [
        torch.tensor([_box((20.0, 12.0), (2.0, 2.5))]),  # shape IoU 0.62 with anchor (0, 0), 0.44 with (0, 1)
        torch.tensor([_box((40.0, 50.0), big)]),
        torch.zeros(0, 4),
    ]
    targets = assign_targets(boxes, anchors, GRIDS, SIZE)
    assert [int(t.positive.sum()) for t in targets] == [1, 0, 1]
    # image 0: stride 8, anchor 0, cell (x 2, y 1), centre offsets (0.5, 0.5)
    assert targets[0].positive[0, 0, 1, 2]
    expected = torch.tensor([0.5, 0.5, math.log(2.0 / anchors[0, 0, 0]), math.log(2.5 / anchors[0, 0, 1])])
    assert torch.allclose(targets[0].boxes[0, 0, 1, 2], expected)
    # image 1: stride 32, anchor 1, cell (1, 1), offsets (40 / 32 - 1, 50 / 32 - 1), no rescaling
    assert targets[2].positive[1, 1, 1, 1]
    assert torch.allclose(targets[2].boxes[1, 1, 1, 1], torch.tensor([0.25, 0.5625, 0.0, 0.0]), atol=1e-6)
    assert targets[2].boxes.abs().sum() == targets[2].boxes[1, 1, 1, 1].abs().sum()


def test_two_boxes_on_one_anchor_and_cell_leave_the_later_one():
    anchors = yolo_anchors(SIZE)
    side = anchors[1, 1].tolist()
    boxes = [torch.tensor([_box((20.0, 20.0), side), _box((22.0, 18.0), side)])]
    target = assign_targets(boxes, anchors, GRIDS, SIZE)[1]
    assert int(target.positive.sum()) == 1
    assert torch.allclose(target.boxes[0, 1, 1, 1, :2], torch.tensor([22 / 16 - 1, 18 / 16 - 1]))


# ---------------------------------------------------------------- loss


def _zero_maps(batch: int = 1) -> list[torch.Tensor]:
    return [torch.zeros(batch, 3, 5, g, g) for g in GRIDS]


def _maps_from_targets(boxes: list[torch.Tensor]) -> list[torch.Tensor]:
    maps = []
    for target in assign_targets(boxes, yolo_anchors(SIZE), GRIDS, SIZE):
        raw = torch.zeros(*target.positive.shape, 5)
        raw[..., :2] = torch.logit(target.boxes[..., :2].clamp(0.01, 0.99))
        raw[..., 2:4] = target.boxes[..., 2:]
        raw[..., 4] = torch.where(target.positive, 8.0, -8.0)
        maps.append(raw.movedim(-1, 2))
    return maps


def test_loss_is_lower_for_the_targets_than_for_zeros():
    boxes = [torch.tensor([[4.0, 6, 30, 22], [40, 30, 60, 62]]), torch.zeros(0, 4)]
    anchors = yolo_anchors(SIZE)
    good = detection_loss(_maps_from_targets(boxes), boxes, anchors, SIZE)
    zeros = detection_loss(_zero_maps(2), boxes, anchors, SIZE)
    assert torch.isfinite(good) and torch.isfinite(zeros)
    assert good < 0.1 * zeros


def test_an_image_without_boxes_only_adds_objectness_negatives():
    anchors = yolo_anchors(SIZE)
    loss = detection_loss(_zero_maps(), [torch.zeros(0, 4)], anchors, SIZE)
    assert float(loss) == pytest.approx(3 * sum(g * g for g in GRIDS) * math.log(2), rel=1e-6)


def test_negatives_whose_box_overlaps_a_ground_truth_are_ignored():
    anchors = yolo_anchors(SIZE)
    side = anchors[2, 1]
    boxes = [torch.tensor([_box((48.0, 48.0), side.tolist())])]  # assigned to stride 32, anchor 1, cell (1, 1)

    def loss(objectness: float, anchor: int, log_scale: torch.Tensor) -> float:
        maps = _zero_maps()
        maps[2][0, anchor, 2:4, 1, 1] = log_scale  # tx = ty = 0: centred in the cell, like the box
        maps[2][0, anchor, 4, 1, 1] = objectness
        return float(detection_loss(maps, boxes, anchors, SIZE))

    # anchor 2 of the same cell decodes exactly onto the box: unassigned, but ignored whatever it predicts
    on_box = torch.log(side / anchors[2, 2])
    assert loss(8.0, 2, on_box) == pytest.approx(loss(-8.0, 2, on_box))
    # far from the box (a tiny one), the same anchor is a negative again
    assert loss(8.0, 2, torch.tensor([-4.0, -4.0])) > loss(-8.0, 2, torch.tensor([-4.0, -4.0])) + 7


# ---------------------------------------------------------------- decoding


def test_decoding_returns_boxes_at_their_coordinates_and_suppresses_duplicates():
    anchors = yolo_anchors(SIZE)
    maps = [torch.full((1, 3, 5, g, g), -10.0) for g in GRIDS]
    maps[1][0, 1, :4, 1, 2] = 0.0  # stride 16, cell (x 2, y 1): centre (40, 24), anchor (1, 1)'s size
    maps[1][0, 1, 4, 1, 2] = 2.0
    # stride 8, cell (4, 2), offsets 0.9: centre (39.2, 23.2), resized to the same size: IoU 0.68, a duplicate
    maps[0][0, 2, :2, 2, 4] = math.log(0.9 / 0.1)
    maps[0][0, 2, 2:4, 2, 4] = torch.log(anchors[1, 1] / anchors[0, 2])
    maps[0][0, 2, 4, 2, 4] = 1.0
    maps[2][0, 0, :4, 0, 0] = 0.0  # stride 32, cell (0, 0): centre (16, 16), a separate box
    maps[2][0, 0, 4, 0, 0] = 0.0  # score 0.5: kept at conf 0.5
    maps[0][0, 0, :4, 7, 7] = torch.tensor([0.0, 0.0, 3.0, 3.0])  # a big box in the corner, clipped, score 0.4
    maps[0][0, 0, 4, 7, 7] = math.log(0.4 / 0.6)
    (detections,) = decode_detections(maps, anchors, SIZE)
    w, h = anchors[1, 1].tolist()
    small_w, small_h = anchors[2, 0].tolist()
    expected = [[40 - w / 2, 24 - h / 2, 40 + w / 2, 24 + h / 2],
                [16 - small_w / 2, 16 - small_h / 2, 16 + small_w / 2, 16 + small_h / 2]]
    np.testing.assert_allclose(detections.boxes, np.array(expected, dtype=np.float64), atol=1e-4)
    np.testing.assert_allclose(detections.scores, [1 / (1 + math.exp(-2)), 0.5], atol=1e-6)
    (low,) = decode_detections(maps, anchors, SIZE, conf_threshold=0.3)
    np.testing.assert_allclose(low.scores, [1 / (1 + math.exp(-2)), 0.5, 0.4], atol=1e-6)
    side = anchors[0, 0] * math.exp(3.0)
    np.testing.assert_allclose(low.boxes[2], [60 - side[0] / 2, 60 - side[1] / 2, SIZE, SIZE], atol=1e-4)
    (loose,) = decode_detections(maps, anchors, SIZE, nms_iou=0.95)  # the shifted duplicate survives
    assert len(loose.scores) == 3
    crowded = [torch.full((1, 3, 5, g, g), 2.0) for g in GRIDS]  # 252 confident, distinct boxes
    (capped,) = decode_detections(crowded, anchors, SIZE, nms_iou=1.0)
    assert len(capped.scores) == 100


# ---------------------------------------------------------------- a tiny full run

SPLIT_SIZES = {"train": 24, "validate": 8, "test": 8}


def _film(boxes: list[list[float]], rng: np.random.Generator) -> np.ndarray:
    """An 80 x 96 dark image with a bright rectangle at each box."""
    image = rng.normal(60, 10, size=(80, 96))
    for x0, y0, x1, y1 in boxes:
        image[int(y0):int(y1), int(x0):int(x1)] = 230
    return image.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Shards of 40 images (every third without objects), their records and the three splits at 64 px."""
    root = tmp_path_factory.mktemp("objects")
    rng = np.random.default_rng(0)
    rows, records = [], []
    for split, n in SPLIT_SIZES.items():
        for i in range(n):
            key = f"{split}_{i:02d}"
            # objects near one place: a few epochs of a random encoder learn where, if not yet what
            x, y = rng.integers(28, 36), rng.integers(24, 32)
            boxes = [] if i % 3 == 2 else [[float(x), float(y), float(x + 24), float(y + 20)]]  # 16 x 16 at input
            Image.fromarray(_film(boxes, rng)).save(root / f"{key}.png")
            rows.append({"key": key, "path": f"{key}.png", "split": split})
            records.append({"key": key, "boxes": boxes, "mask_rle": None})
    write_shards(pa.Table.from_pylist(rows), root, root / "shards", image_size=SIZE, samples_per_shard=8)
    schema = pa.schema([("key", pa.string()), ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
                        ("mask_rle", pa.string())])
    pq.write_table(pa.Table.from_pylist(records, schema=schema), root / "records.parquet")
    manifest = root / "shards" / "manifest.parquet"
    targets, geometry = read_dense_targets(root / "records.parquet"), read_geometry(manifest)

    def images(split: str, masks: bool = False) -> DenseImages:
        index = index_shard_images(shard_paths(manifest, split))
        return DenseImages(sorted(index), targets, geometry, index, SIZE, masks=masks, seed=1)

    return images


SETTINGS = Settings(HeadSettings(epochs=4, lr=2e-3, batch_size=4, input_size=SIZE, seed=3, frozen_bn="eval"))


def test_detect_runs_scores_and_repeats_on_cpu(toy):
    train, val, test = toy("train"), toy("validate"), toy("test")
    first = detect(_encoder(), train, val, test, SETTINGS, name="toy", preview=7)
    second = detect(_encoder(), train, val, test, SETTINGS, name="toy", preview=7)
    assert np.isfinite(first.metrics["map"]) and np.isfinite(first.metrics["map_mgca"])
    assert (first.metrics, first.history) == (second.metrics, second.history)
    assert set(first.metrics) == {"map", "map_mgca", "ap40", "ap75"}
    assert (first.n_train, first.n_test, len(first.history)) == (24, 8, 4)
    assert first.best_epoch == 1 + int(np.argmin([e.val_score for e in first.history]))
    # the images with ground truth first, by key, then the others; boxes in input pixels
    assert [p.key for p in first.preview] == ["test_00", "test_01", "test_03", "test_04", "test_06", "test_07",
                                              "test_02"]
    assert all(np.array_equal(p.truth, test.boxes(test.keys.index(p.key))) for p in first.preview)
    assert np.array_equal(first.preview[0].image, test[(0, 0)][0][0].numpy())
    assert first.preview[0].image.shape == (SIZE, SIZE)
    # the head has learnt where the objects lie, and finds them...
    assert first.metrics["ap40"] > 0.5
    # ...but also reports them on the healthy images, which MGCA's subset leaves out
    assert len(first.preview[-1].scores) and not len(first.preview[-1].truth)
    assert all((p.scores >= SETTINGS.conf_threshold).all() for p in first.preview)  # the preview shows the cut
    assert first.metrics["map"] < first.metrics["map_mgca"]


def test_detect_with_frozen_bn_train_trains_a_copy_of_the_encoders_batchnorm(toy):
    encoder = _encoder()
    loaded = {k: v.clone() for k, v in encoder.state_dict().items()}
    cache = StageCache(encoder, HEAD_STAGES, batch_size=4, budget_bytes=2**30, device="cpu")
    settings = Settings(dataclasses.replace(SETTINGS.head, epochs=2, frozen_bn="train"), conf_threshold=0.05)
    result = detect(encoder, toy("train"), toy("validate"), toy("test"), settings, name="toy", preview=0, cache=cache)
    assert np.isfinite(result.metrics["map"]) and len(result.history) == 2
    assert all(torch.equal(v, loaded[k]) for k, v in encoder.state_dict().items()) and cache.used_bytes == 0
    frozen = detect(encoder, toy("train"), toy("validate"), toy("test"), dataclasses.replace(
        settings, head=SETTINGS.head), name="toy", preview=0, cache=cache)
    assert cache.used_bytes > 0
    assert frozen.history[0].val_score != result.history[0].val_score


def test_detect_checks_its_inputs(toy):
    train, val = toy("train"), toy("validate")
    with pytest.raises(ValueError, match="masks=False"):
        detect(_encoder(), train, val, toy("test", masks=True), SETTINGS, name="toy")
    with pytest.raises(ValueError, match="input_size is 96"):
        detect(_encoder(), train, val, toy("test"), dataclasses.replace(
            SETTINGS, head=dataclasses.replace(SETTINGS.head, input_size=96)), name="toy")
    with pytest.raises(ValueError, match="multiple of 32"):
        Settings(HeadSettings(input_size=100))
