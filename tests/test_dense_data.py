"""Masks and boxes follow their images through the shard resize and the dense tasks' squash to a square."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imitate.datasets.masks import box_mask, encode_rle
from imitate.evaluate.data.dense import (
    DenseImages,
    DenseTarget,
    Geometry,
    collate_dense,
    has_dense_targets,
    input_mask,
    read_dense_targets,
    read_geometry,
)
from imitate.evaluate.data.shard_images import index_shard_images
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards

# (key, original width, height, box x0, y0, x1, y1): wide, tall and square films with one bright box each
FILMS = [("wide", 200, 120, 40, 30, 110, 90), ("tall", 90, 150, 10, 60, 50, 140), ("square", 128, 128, 64, 0, 128, 32)]


@pytest.mark.parametrize("crop", [(0, 0, 1024, 1024), (13, 40, 1001, 990), (0, 0, 2544, 3056)])
def test_a_box_round_trips_through_the_resize(crop):
    geometry = Geometry(crop[2], crop[3], crop)
    boxes = np.array([[264.0, 152.0, 477.0, 531.0], [crop[0], crop[1], crop[2], crop[3]]], np.float32)
    for size in (64, 224, 512):
        on_input = geometry.to_input(boxes, size)
        assert np.allclose(on_input[1], [0, 0, size, size])  # the shown part fills the input
        assert np.allclose(geometry.to_original(on_input, size), boxes, atol=1e-3)


def test_box_mask_fills_pixels_whose_centres_are_inside():
    mask = box_mask([[1, 0, 3, 2], [2.4, 2.4, 3.6, 3.6], [0.6, 2.6, 1.4, 3.4]], 4, 5)
    expected = np.zeros((4, 5), bool)
    expected[0:2, 1:3] = True  # integer box: pixels x0 .. x1 - 1
    expected[2:4, 2:4] = True  # centres 2.5 and 3.5 are inside 2.4 .. 3.6; the third box covers no centre
    assert np.array_equal(mask, expected)
    assert box_mask([[-5, -5, 99, 99]], 2, 3).all()  # clipped to the image


def test_mask_is_sampled_at_input_pixel_centres():
    geometry = Geometry(8, 4, (0, 0, 8, 4))
    mask = np.zeros((4, 8), bool)
    mask[:, 4:] = True  # the right half
    assert np.array_equal(geometry.mask_to_input(mask, 4), np.tile([False, False, True, True], (4, 1)))
    with pytest.raises(ValueError, match="shape"):
        geometry.mask_to_input(mask.T, 4)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The FILMS written as PNGs with bright boxes, sharded at shorter side 48, and their records."""
    root = tmp_path_factory.mktemp("dense")
    records = []
    for key, width, height, x0, y0, x1, y1 in FILMS:
        image = np.full((height, width), 40, np.uint8)
        image[y0:y1, x0:x1] = 250
        Image.fromarray(image).save(root / f"{key}.png")
        mask_rle = encode_rle(box_mask([[x0, y0, x1, y1]], height, width)) if key != "tall" else None
        records.append({"key": key, "path": f"{key}.png", "split": "train", "boxes": [[x0, y0, x1, y1]],
                        "mask_rle": mask_rle})
    table = pa.Table.from_pylist(records)
    pq.write_table(table.select(["key", "boxes", "mask_rle"]), root / "records.parquet")
    write_shards(table.select(["key", "path", "split"]), root, root / "shards", image_size=48)
    return root


def test_images_masks_and_boxes_stay_aligned_at_the_input_size(shards):
    manifest = shards / "shards" / "manifest.parquet"
    geometry = read_geometry(manifest)
    assert geometry["wide"] == Geometry(200, 120, (0, 0, 200, 120))
    targets = read_dense_targets(shards / "records.parquet")
    assert targets["tall"].mask_rle is None and targets["wide"].boxes.shape == (1, 4) and has_dense_targets(targets)
    index = index_shard_images(shard_paths(manifest, "train"))
    keys = [key for key, *_ in FILMS]
    images = DenseImages(keys, targets, geometry, index, 64, masks=True, seed=0)
    batch_images, masks, boxes = collate_dense([images[(0, i)] for i in range(len(images))])
    assert batch_images.shape == (3, 1, 64, 64) and masks.shape == (3, 64, 64) and len(boxes) == 3
    for i in range(3):
        bright = batch_images[i, 0].numpy() > 145
        mask = masks[i].numpy().astype(bool)
        assert (bright != mask).mean() < 0.06  # edges blur in the two resizes; the bulk agrees
        x0, y0, x1, y1 = boxes[i][0].tolist()
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert abs(cols[0] - x0) <= 1 and abs(cols[-1] + 1 - x1) <= 1
        assert abs(rows[0] - y0) <= 1 and abs(rows[-1] + 1 - y1) <= 1
    # a decoded run-length mask and the filled box agree when both describe the same region
    wide = DenseTarget(targets["wide"].boxes, None)
    assert np.array_equal(input_mask(wide, geometry["wide"], 64), input_mask(targets["wide"], geometry["wide"], 64))
    detection = DenseImages(keys, targets, geometry, index, 64, masks=False, seed=0)
    assert detection[(0, 0)][1].shape == (0, 0)
    with pytest.raises(KeyError, match="not in the shards"):
        DenseImages(["nope"], targets, geometry, index, 64, masks=True, seed=0)
