"""imitate.images.resize and its use by the shards and the dense inputs: geometry modes, pixels, alignment.

Expected shapes are worked out by hand; pixels are compared with Pillow called directly here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imitate.commands import shards as shards_command
from imitate.evaluate.data.dense import DENSE_RESAMPLE, read_geometry
from imitate.images.resize import placement, resize_image
from imitate.shards.reader import iter_samples, shard_paths
from imitate.shards.writer import write_shards

LANCZOS = Image.Resampling.LANCZOS


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def pil_resize(array: np.ndarray, width: int, height: int, resample=LANCZOS, reducing_gap=3.0) -> np.ndarray:
    return np.array(Image.fromarray(array).resize((width, height), resample, reducing_gap=reducing_gap))


@pytest.mark.parametrize(
    ("mode", "shape", "box"),
    [
        # a portrait 2,544 x 3,056 film: 3056 * 256 / 2544 = 307.5 -> 308; 2544 * 256 / 3056 = 213.1 -> 213,
        # (256 - 213) // 2 = 21 columns of padding on the left, 22 on the right
        ("square", (256, 256), (0, 0, 256, 256)),
        ("shorter_side", (308, 256), (0, 0, 256, 308)),
        ("pad", (256, 256), (21, 0, 234, 256)),
    ],
)
def test_placement_of_a_portrait_film(mode: str, shape: tuple[int, int], box: tuple[int, ...]) -> None:
    assert placement(3056, 2544, 256, mode) == (shape, box)


def test_placement_of_a_landscape_image_pads_above_and_below() -> None:
    assert placement(45, 60, 32, "pad") == ((32, 32), (0, 4, 32, 28))  # 45 * 32 / 60 = 24 rows, 4 above
    assert placement(45, 60, 32, "shorter_side") == ((32, 43), (0, 0, 43, 32))  # 60 * 32 / 45 = 42.7


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="resize mode"):
        resize_image(noise(8, 8), 4, "crop")


@pytest.mark.parametrize("shape", [(60, 45), (300, 250)])  # the second reduces 7.8x: Pillow's reducing gap acts
def test_shorter_side_is_the_old_resize_byte_for_byte(shape: tuple[int, int]) -> None:
    image = noise(*shape)
    height = round(shape[0] * 32 / shape[1])
    np.testing.assert_array_equal(resize_image(image, 32, "shorter_side"), pil_resize(image, 32, height))


def test_square_stretches_both_axes() -> None:
    image = noise(300, 250)
    np.testing.assert_array_equal(resize_image(image, 32, "square"), pil_resize(image, 32, 32))


@pytest.mark.parametrize(("shape", "content"), [((60, 45), (slice(0, 32), slice(4, 28))),
                                                ((45, 60), (slice(4, 28), slice(0, 32)))])
def test_pad_centres_the_image_on_black(shape: tuple[int, int], content: tuple[slice, slice]) -> None:
    image = noise(*shape) | 1  # no zero pixel: any zero in the output is padding
    out = resize_image(image, 32, "pad")
    rows, cols = content
    expected = np.zeros((32, 32), np.uint8)
    expected[rows, cols] = pil_resize(image, cols.stop - cols.start, rows.stop - rows.start)
    np.testing.assert_array_equal(out, expected)
    assert out[rows, cols].min() > 0


def test_an_image_already_at_size_is_returned_as_is() -> None:
    image = noise(32, 32)
    assert all(resize_image(image, 32, mode) is image for mode in ("square", "shorter_side", "pad"))


@pytest.mark.parametrize(("shard", "size"), [(80, 224), (256, 224), (256, 512)])
def test_dense_inputs_are_the_old_bilinear_squash(shard: int, size: int) -> None:
    image = noise(shard, shard)
    expected = np.array(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_image(image, size, "square", DENSE_RESAMPLE), expected)


def bright_box(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A dim image with a bright rectangle ``[x0, y0, x1, y1]`` (original pixels)."""
    image = np.full((height, width), 40, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 220
    return image


def shard_one(tmp_path: Path, image: np.ndarray, size: int, mode: str, suffix: str = "png") -> tuple[dict, Path]:
    """Shard one image in ``mode``; returns its sample and the shard manifest."""
    root = tmp_path / f"root-{mode}"
    root.mkdir(parents=True)
    Image.fromarray(image).save(root / f"img.{suffix}", **({"quality": 95} if suffix == "jpg" else {}))
    table = pa.Table.from_pylist([{"key": "k0", "path": f"img.{suffix}", "split": "train"}])
    write_shards(table, root, tmp_path / mode, image_size=size, resize=mode)
    manifest = tmp_path / mode / "manifest.parquet"
    (sample,) = iter_samples(shard_paths(manifest, "train"))
    return sample, manifest


# A 45 x 60 (w x h) film with a bright box [10, 20, 30, 40], sharded at 32 and squashed to a 64 x 64 input.
# square and shorter_side: x * 64 / 45, y * 64 / 60. pad: the shard holds the film in columns 4..28
# (45 * 32 / 60 = 24 wide) at 24 / 45 shard px per original px, so x -> (4 + x * 24 / 45) * 2.
ORIGINAL_BOX = (10, 20, 30, 40)
INPUT_BOXES = {
    "square": (640 / 45, 64 / 3, 1920 / 45, 128 / 3),
    "shorter_side": (640 / 45, 64 / 3, 1920 / 45, 128 / 3),
    "pad": (8 + 480 / 45, 64 / 3, 8 + 1440 / 45, 128 / 3),
}
SHARD_SHAPES = {"square": (32, 32), "shorter_side": (43, 32), "pad": (32, 32)}


@pytest.mark.parametrize("mode", ["square", "shorter_side", "pad"])
def test_boxes_and_masks_stay_on_their_pixels(tmp_path: Path, mode: str) -> None:
    sample, manifest = shard_one(tmp_path, bright_box(60, 45, ORIGINAL_BOX), 32, mode)
    assert sample["image"].shape == SHARD_SHAPES[mode]
    geometry = read_geometry(manifest)["k0"]
    np.testing.assert_allclose(geometry.to_input(np.array([ORIGINAL_BOX]), 64)[0], INPUT_BOXES[mode], atol=1e-4)
    np.testing.assert_allclose(geometry.to_original(geometry.to_input(np.array([ORIGINAL_BOX]), 64), 64)[0],
                               ORIGINAL_BOX, atol=1e-3)
    # the pixels: the bright area of the input the dense tasks see is where the mapped box says
    pixels = resize_image(sample["image"], 64, "square", DENSE_RESAMPLE)
    bright = pixels > 130
    ys, xs = np.nonzero(bright)
    x0, y0, x1, y1 = INPUT_BOXES[mode]
    assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
    assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1
    # the mask, sampled at the input pixels' centres
    mask = np.zeros((60, 45), bool)
    mask[20:40, 10:30] = True
    sampled = geometry.mask_to_input(mask, 64)
    assert (sampled & bright).sum() / (sampled | bright).sum() > 0.9


def test_pad_masks_are_background_in_the_padding(tmp_path: Path) -> None:
    _, manifest = shard_one(tmp_path, bright_box(60, 45, ORIGINAL_BOX), 32, "pad")
    geometry = read_geometry(manifest)["k0"]
    sampled = geometry.mask_to_input(np.ones((60, 45), bool), 64)  # a mask covering the whole film
    expected = np.zeros((64, 64), bool)
    expected[:, 8:56] = True  # shard columns 4..28, doubled
    np.testing.assert_array_equal(sampled, expected)


def test_pad_crop_box_reaches_past_the_borders(tmp_path: Path) -> None:
    sample, manifest = shard_one(tmp_path, bright_box(60, 45, ORIGINAL_BOX), 32, "pad")
    # 45 / 24 = 1.875 original px per shard px: 4 * 1.875 = 7.5 left of the film, 28 * 1.875 = 52.5 right
    assert sample["meta"]["crop_box"] == [-7.5, 0.0, 52.5, 60.0]
    (record,) = pq.read_table(manifest).to_pylist()
    assert (record["crop_x0"], record["crop_y0"], record["crop_x1"], record["crop_y1"]) == (-7.5, 0.0, 52.5, 60.0)


@pytest.mark.parametrize("mode", ["square", "pad"])
def test_reduced_jpeg_decode_keeps_the_detail_and_the_geometry(tmp_path: Path, mode: str) -> None:
    # detail about 15 px across: kept by the 1/4-scale decode (300 x 250), blurred by a 1/8 one (mean 1.5-2)
    film = pil_resize(noise(80, 66, seed=5), 1000, 1200, Image.Resampling.BICUBIC, None)
    full = shard_one(tmp_path / "png", film, 80, mode)[0]  # PNG: always decoded whole
    reduced, _ = shard_one(tmp_path / "jpg", film, 80, mode, "jpg")
    difference = np.abs(reduced["image"].astype(int) - full["image"])
    assert reduced["image"].shape == full["image"].shape == (80, 80)
    assert difference.mean() < 0.6 and difference.max() <= 4
    # pad: 1000 * 80 / 1200 = 66.7 -> 66 columns from column 7, whether decoded whole or at 250 px wide
    expected = [0, 0, 1000, 1200] if mode == "square" else [-7 * 1000 / 66, 0.0, 73 * 1000 / 66, 1200.0]
    np.testing.assert_allclose(reduced["meta"]["crop_box"], expected)
    np.testing.assert_allclose(full["meta"]["crop_box"], expected)


def test_resize_is_a_flag_recorded_in_the_settings_and_provenance(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    Image.fromarray(noise(60, 45)).save(root / "a.png")
    (tmp_path / "images.csv").write_text("key,path\nk0,a.png\n")
    parser = argparse.ArgumentParser()
    shards_command.add_arguments(parser)
    assert parser.parse_args(["m", "--root", "r", "--out", "o"]).resize == "square"  # the paper's
    for mode, shape in (("pad", (32, 32)), ("shorter_side", (43, 32)), ("square", (32, 32))):
        out = tmp_path / mode
        args = parser.parse_args([str(tmp_path / "images.csv"), "--root", str(root), "--out", str(out),
                                  "--image-size", "32", "--resize", mode])
        assert shards_command.main(args) == 0
        metadata = pq.read_schema(out / "manifest.parquet").metadata
        assert json.loads(metadata[b"imitate.shards"])["resize"] == mode
        assert json.loads(metadata[b"imitate.provenance"])["settings"]["resize"] == mode
        (sample,) = iter_samples(shard_paths(out / "manifest.parquet", "all"))
        assert sample["image"].shape == shape
    with pytest.raises(SystemExit):
        parser.parse_args(["m", "--root", "r", "--out", "o", "--resize", "crop"])
