"""The paper's augmentations on whole uint8 batches (run on the GPU in training, tested here on the CPU)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from imitate.images.transforms import IMAGENET_MEAN, IMAGENET_STD, apply_augmentations, augment_batch, crop_transform
from imitate.io.parquet import write_table
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards
from imitate.train.data import build_pretrain_loader
from tests.helpers.embeddings import embedding_table


def batch(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(30, 220, (n, 1, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def unnormalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    return x * std + mean


def run(images: torch.Tensor, seed: int = 0, **kwargs) -> torch.Tensor:
    options = {"rotation_degrees": 0.0, "flip_p": 0.0, "autocontrast_p": 0.0, **kwargs}
    return augment_batch(images, generator=torch.Generator().manual_seed(seed), **options)


def test_without_augmentation_it_is_the_loader_normalisation():
    images = batch()
    out = run(images)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32
    torch.testing.assert_close(unnormalise(out), images.float().div(255).expand(-1, 3, -1, -1))


def test_flip_and_quarter_turn_move_pixels_exactly():
    images = batch()
    torch.testing.assert_close(unnormalise(run(images, flip_p=1.0))[:, :1], images.flip(-1).float() / 255)
    # a rotation by exactly 90 degrees samples whole pixels: the same as rot90 (counter-clockwise)
    no, quarter = torch.zeros(4, dtype=torch.bool), torch.full((4,), math.pi / 2)
    turned = unnormalise(apply_augmentations(images, no, quarter, no))[:, :1]
    torch.testing.assert_close(turned, torch.rot90(images, 1, dims=(-2, -1)).float() / 255)
    small = unnormalise(apply_augmentations(images, no, torch.full((4,), math.radians(10)), no))[:, :1]
    assert (small[:, :, 0, 0] == 0).all() and (small[:, :, 8, 8] > 0).all()  # black corners, centre kept


def test_autocontrast_matches_torchvision_per_image():
    images = batch()
    out = unnormalise(run(images, autocontrast_p=1.0))[:, :1]
    expected = TF.autocontrast(images.float() / 255)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    assert torch.allclose(out.amin(dim=(1, 2, 3)), torch.zeros(4))
    assert torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(4))


def test_draws_are_per_sample_and_seeded():
    images = batch(n=64).expand(-1, -1, -1, -1).clone()
    images[:] = images[0]  # 64 copies of one image
    out = augment_batch(images, rotation_degrees=15.0, generator=torch.Generator().manual_seed(3))
    distinct = {tuple(np.round(o.flatten()[:64].numpy(), 4)) for o in out}
    assert len(distinct) > 32  # each copy got its own flip, angle and autocontrast
    again = augment_batch(images, rotation_degrees=15.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8 B x 1 x H x W"):
        augment_batch(torch.zeros(2, 3, 8, 8), rotation_degrees=0, generator=torch.Generator())


def test_the_loader_crops_only_when_asked(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    rows = []
    for i in range(8):
        Image.fromarray(np.full((40, 50), 10 * i, np.uint8)).save(root / f"{i}.png")
        rows.append({"key": f"k{i}", "path": f"{i}.png", "split": "train", "study_id": i})
    write_shards(pa.Table.from_pylist(rows), root, tmp_path / "s", image_size=40)
    embeddings = write_table(embedding_table(list(range(8))), tmp_path / "e.parquet")
    loader = build_pretrain_loader(shard_paths(tmp_path / "s/manifest.parquet", "train"), embeddings, crop_size=32,
                                   batch_size=4, num_samples=8, workers=0, seed=0, epoch=0, crop_only=True)
    for item in loader:
        assert item["view1"].dtype == torch.uint8 and item["view1"].shape == (4, 1, 32, 32)
    assert crop_transform(8)(np.zeros((10, 12), np.uint8)).shape == (1, 8, 8)
