"""Stage batches: stored encoder outputs must be what encoding each batch gives, in the same batches."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from imitate.datasets.masks import encode_rle
from imitate.evaluate.data.dense import DenseImages, DenseTarget, read_geometry
from imitate.evaluate.data.shard_images import index_shard_images
from imitate.evaluate.data.stage_batches import StageCache
from imitate.evaluate.tasks.segmentation import augment_pairs
from imitate.images.transforms import normalise
from imitate.models.backbone import ResNetBackbone
from imitate.models.frozen import FrozenStages
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards

SIZE = 64
BATCH = 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """9 shard images (a shuffled epoch then ends on a lone image) with a bright square and its mask."""
    root = tmp_path_factory.mktemp("stage_batches")
    rng = np.random.default_rng(0)
    rows, targets = [], {}
    for i in range(9):
        key = f"img_{i:02d}"
        image = rng.normal(80, 20, size=(SIZE, SIZE))
        mask = np.zeros((SIZE, SIZE), bool)
        y, x = rng.integers(4, SIZE - 20, size=2)
        mask[y:y + 16, x:x + 16] = True
        image[mask] = 220
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / f"{key}.png")
        rows.append({"key": key, "path": f"{key}.png", "split": "train"})
        targets[key] = DenseTarget(np.array([[x, y, x + 16, y + 16]], np.float32), encode_rle(mask))
    write_shards(pa.Table.from_pylist(rows), root, root / "shards", image_size=SIZE, samples_per_shard=4)
    manifest = root / "shards" / "manifest.parquet"
    index = index_shard_images(shard_paths(manifest, "train"))
    return DenseImages(sorted(index), targets, read_geometry(manifest), index, SIZE, masks=True, seed=7)


def _encoder() -> FrozenStages:
    torch.manual_seed(0)
    return FrozenStages(ResNetBackbone("resnet18"))


def _cache(encoder: FrozenStages, budget: int = 2**30) -> StageCache:
    return StageCache(encoder, (0, 1, 2, 3, 4), batch_size=BATCH, budget_bytes=budget, device="cpu")


def _by_hand(encoder: FrozenStages, images: DenseImages, rows: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The reference: read the batch's images, normalise and encode them together."""
    items = [images[(0, i)] for i in rows]
    x = torch.stack([item[0] for item in items]).float() / 255
    return encoder(normalise(x)), torch.stack([item[1] for item in items])[:, None].float()


def test_stored_batches_equal_encoding_each_batch(images):
    encoder = _encoder()
    batches = _cache(encoder).batches(images)
    assert batches.stored
    seen = []
    for stages, masks, boxes in batches.epoch(3, shuffle=True):
        rows = [images.keys.index(k) for k in _keys_of(images, boxes)]
        expected, expected_masks = _by_hand(encoder, images, rows)
        assert len(stages) == 5  # the stem and the four stages
        for got, want in zip(stages, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert torch.equal(masks, expected_masks)
        seen += rows
    # a seeded permutation of the 9 images in batches of 4, without the lone last one
    assert len(seen) == 8 and len(set(seen)) == 8
    again = [k for _, _, boxes in batches.epoch(3, shuffle=True) for k in _keys_of(images, boxes)]
    other = [k for _, _, boxes in batches.epoch(4, shuffle=True) for k in _keys_of(images, boxes)]
    assert again == [images.keys[i] for i in seen] != other
    in_order = [k for _, _, boxes in batches.epoch(0, shuffle=False) for k in _keys_of(images, boxes)]
    assert in_order == images.keys


def _keys_of(images: DenseImages, boxes: list[torch.Tensor]) -> list[str]:
    """The keys of a batch, recognised by their (distinct) boxes."""
    by_box = {tuple(images.boxes(i)[0].tolist()): key for i, key in enumerate(images.keys)}
    return [by_box[tuple(b[0].tolist())] for b in boxes]


def test_augmented_batches_reuse_the_undrawn_images_outputs(images):
    encoder = _encoder()
    cache = _cache(encoder)
    batches = cache.batches(images, augment=augment_pairs)
    assert batches.stored
    generator, reference = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    total_drawn = 0
    for stages, masks, boxes in batches.epoch(2, shuffle=True, generator=generator):
        rows = [images.keys.index(k) for k in _keys_of(images, boxes)]
        x = torch.stack([images[(0, i)][0] for i in rows]).float() / 255
        plain_masks = torch.stack([images[(0, i)][1] for i in rows])[:, None].float()
        moved, moved_masks, drawn = augment_pairs(x, plain_masks, reference)
        expected = encoder(normalise(moved))
        for got, want in zip(stages, expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert torch.equal(masks, moved_masks)
        total_drawn += int(drawn.sum())
    assert 0 < total_drawn < 8  # some images were augmented and some reused


def test_sets_over_the_budget_are_encoded_every_epoch(images):
    encoder = _encoder()
    cache = _cache(encoder, budget=1000)
    batches = cache.batches(images)
    assert not batches.stored and cache.used_bytes == 0
    (stages, masks, _), *_ = batches.epoch(0, shuffle=False)
    expected, expected_masks = _by_hand(encoder, images, list(range(BATCH)))
    for got, want in zip(stages, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch.equal(masks, expected_masks)


def test_the_cache_counts_its_bytes_and_checks_its_inputs(images):
    cache = _cache(_encoder())
    cache.batches(images)
    # resnet18 at 64 px: 64 x 32 x 32 (stem) + 64 x 16 x 16 + 128 x 8 x 8 + 256 x 4 x 4 + 512 x 2 x 2 floats
    # and a 64 x 64 mask
    per_image = (65536 + 16384 + 8192 + 4096 + 2048) * 4 + SIZE * SIZE
    assert cache.used_bytes == 9 * per_image
    cache.batches(images)  # nothing new to store
    assert cache.used_bytes == 9 * per_image
    bigger = DenseImages(images.keys, dict(zip(images.keys, images.targets, strict=True)),
                         dict(zip(images.keys, images.geometry, strict=True)),
                         dict(zip(images.keys, images.members, strict=True)), 96, masks=True, seed=0)
    with pytest.raises(ValueError, match="64-px inputs; these images are 96"):
        cache.batches(bigger)
    with pytest.raises(ValueError, match="stages"):
        StageCache(_encoder(), (5,), batch_size=4, budget_bytes=0, device="cpu")
