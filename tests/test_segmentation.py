import dataclasses
import logging
import math

import numpy as np
import pyarrow as pa
import pytest
import segmentation_models_pytorch as smp
import torch
from PIL import Image

from imitate.datasets.masks import NO_MASK, encode_rle
from imitate.evaluate.data.dense import DenseImages, DenseTarget, is_positive, read_geometry
from imitate.evaluate.data.shard_images import index_shard_images
from imitate.evaluate.data.stage_batches import StageCache
from imitate.evaluate.heads import HeadSettings
from imitate.evaluate.tasks.segmentation import Settings, augment_pairs, balanced_keys, segment
from imitate.images.transforms import normalise
from imitate.losses.segmentation import dice_loss, focal_loss, segmentation_loss
from imitate.models.backbone import ResNetBackbone
from imitate.models.frozen import FrozenStages
from imitate.models.unet import SegmentationModel, UNetHead
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards

SIZE = 64
SPLITS = {"train": 24, "validate": 8, "test": 8}
HEAD = HeadSettings(epochs=4, patience=4, lr=2e-3, batch_size=4, input_size=SIZE, seed=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encoder(seed: int = 0) -> FrozenStages:
    torch.manual_seed(seed)
    return FrozenStages(ResNetBackbone("resnet18"))


# ---------------------------------------------------------------- model


def _head(encoder: FrozenStages, decoder_channels=(64, 32, 16, 16, 8), seed: int = 1) -> UNetHead:
    torch.manual_seed(seed)
    return UNetHead(encoder.backbone.name, encoder.channels, decoder_channels)


@pytest.mark.parametrize(("size", "decoder_channels"), [(64, (256, 128, 64, 32, 16)), (512, (64, 32, 16, 16, 8))])
def test_the_model_is_smp_unet_with_our_encoder_weights(size, decoder_channels):
    encoder = _encoder()
    head = _head(encoder, decoder_channels)
    reference = smp.Unet("resnet18", encoder_weights=None, decoder_channels=decoder_channels, classes=1)
    # our encoder file's torchvision keys are smp's encoder keys, and the head's are smp's decoder and head keys
    reference.encoder.load_state_dict(dict(encoder.backbone.state_dict()), strict=True)
    reference.decoder.load_state_dict(head.decoder.state_dict(), strict=True)
    reference.segmentation_head.load_state_dict(head.segmentation_head.state_dict(), strict=True)
    assert set(reference.state_dict()) == ({f"encoder.{k}" for k in encoder.backbone.state_dict()}
                                           | set(head.state_dict()))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        ours = SegmentationModel(encoder, head).eval()(x)
        theirs = reference.eval()(x)
    assert ours.shape == theirs.shape == (2, 1, size, size)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_every_encoder_output_reaches_the_logits_the_stem_included():
    encoder = _encoder()
    head = _head(encoder).eval()
    with torch.no_grad():
        features = encoder(torch.randn(1, 3, SIZE, SIZE))
        assert [tuple(f.shape[1:]) for f in features] == [
            (c, SIZE // r, SIZE // r) for c, r in zip((64, 64, 128, 256, 512), (2, 4, 8, 16, 32), strict=True)]
        logits = head(features)
        for i in range(len(features)):
            changed = [f + (j == i) for j, f in enumerate(features)]
            assert not torch.allclose(head(changed), logits), f"encoder output {i} is not used"


def test_cached_encoder_outputs_give_the_logits_of_the_whole_model(toy):
    encoder = _encoder()
    head = _head(encoder).eval()
    test = toy("test")
    cache = StageCache(encoder, range(len(encoder.channels)), batch_size=4, budget_bytes=2**30, device="cpu")
    batches = cache.batches(test)
    assert batches.stored
    start = 0
    with torch.no_grad():
        for stages, _, _ in batches.epoch(0, shuffle=False):
            images = torch.stack([test[(0, i)][0] for i in range(start, start + len(stages[0]))]).float() / 255
            whole = SegmentationModel(encoder, head)(normalise(images))
            torch.testing.assert_close(head(stages), whole, rtol=1e-4, atol=1e-4)
            start += len(stages[0])
    assert start == len(test)


def test_model_checks_its_input_size_and_encoder_channels():
    encoder = _encoder()
    model = SegmentationModel(encoder, _head(encoder)).eval()
    assert model(torch.randn(1, 3, 32, 96)).shape == (1, 1, 32, 96)
    with pytest.raises(ValueError, match=r"multiple of 32.*48 x 64"):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="resnet50 encoder gives channels"):
        UNetHead("resnet50", encoder.channels)
    with pytest.raises(ValueError, match="takes 5 encoder outputs"):
        model.head(encoder(torch.randn(1, 3, 64, 64))[1:])


def test_a_training_step_changes_only_the_decoder():
    model = SegmentationModel(_encoder(), _head(_encoder()))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("head.") for name in trainable)
    assert {f"head.{name}" for name, _ in model.head.named_parameters()} == trainable
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.encoder.training and model.head.training
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = normalise(torch.rand(2, 1, SIZE, SIZE))
    segmentation_loss(model(x), (torch.rand(2, 1, SIZE, SIZE) > 0.5).float()).backward()
    optimizer.step()
    after = model.state_dict()
    encoder_keys = [k for k in before if k.startswith("encoder.")]
    assert any("running_mean" in k for k in encoder_keys)
    assert all(torch.equal(before[k], after[k]) for k in encoder_keys)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("running_mean" in k for k in changed)  # the decoder's BatchNorm did train
    assert changed and all(k.startswith("head.") for k in changed)


def test_frozen_bn_train_updates_the_encoders_running_statistics_but_no_weight():
    loaded = _encoder()
    encoder = loaded.with_batchnorm("train")
    model = SegmentationModel(encoder, _head(encoder))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model.train()
    assert encoder.training and all(m.training for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.05)
    for _ in range(2):
        x = normalise(torch.rand(4, 1, SIZE, SIZE))
        optimizer.zero_grad()
        segmentation_loss(model(x), (torch.rand(4, 1, SIZE, SIZE) > 0.5).float()).backward()
        optimizer.step()
    after = encoder.state_dict()
    weights = {name for name, _ in encoder.named_parameters()}
    assert weights and all(torch.equal(before[k], after[k]) for k in weights)
    means = [k for k in before if k.endswith("running_mean")]
    assert means and all(not torch.equal(before[k], after[k]) for k in means)
    assert all(after[k].item() == before[k].item() + 2 for k in before if k.endswith("num_batches_tracked"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in before.items())  # the copy's, not the loaded's
    x = normalise(torch.rand(4, 1, SIZE, SIZE))
    train_outputs = encoder.train()(x)
    eval_outputs = encoder.eval()(x)
    assert not any(torch.allclose(a, b, atol=1e-3) for a, b in zip(train_outputs, eval_outputs, strict=True))
    with pytest.raises(ValueError, match="batchnorm must be one of"):
        loaded.with_batchnorm("frozen")


# ---------------------------------------------------------------- losses


def test_losses_match_their_formulas():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0]).reshape(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0]).reshape(1, 1, 2, 2)
    expected = []
    for z, t in zip(logits.flatten().tolist(), target.flatten().tolist(), strict=True):
        p = 1 / (1 + math.exp(-z))
        p_true = p if t else 1 - p
        expected.append(-((1 - p_true) ** 2) * math.log(p_true))
    assert focal_loss(logits, target).item() == pytest.approx(np.mean(expected), rel=1e-5)
    p = torch.sigmoid(logits)
    soft_dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    assert dice_loss(logits, target).item() == pytest.approx(1 - soft_dice.item(), rel=1e-5)
    assert segmentation_loss(logits, target).item() == pytest.approx(
        10 * focal_loss(logits, target).item() + dice_loss(logits, target).item(), rel=1e-6)
    assert segmentation_loss(logits, target, alpha=0).item() == pytest.approx(dice_loss(logits, target).item())


def test_dice_loss_is_low_when_right_and_high_when_wrong():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 30
    assert dice_loss(perfect, target).item() == pytest.approx(0, abs=1e-6)
    assert focal_loss(perfect, target).item() == pytest.approx(0, abs=1e-6)
    assert dice_loss(-perfect, target).item() == pytest.approx(1 - 1 / (64 * 2 - 16 + 16 + 1), abs=1e-4)
    empty = torch.zeros(1, 1, 8, 8)
    assert dice_loss(torch.full((1, 1, 8, 8), -30.0), empty).item() == pytest.approx(0, abs=1e-6)


def test_losses_run_in_float32_on_half_logits():
    logits = torch.randn(2, 1, 8, 8).bfloat16()
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    assert segmentation_loss(logits, target).dtype == torch.float32


# ---------------------------------------------------------------- augmentation


def _squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` black 64-px images each with a white 16-px square somewhere in the middle, and its mask."""
    rng = np.random.default_rng(seed)
    masks = torch.zeros(n, 1, SIZE, SIZE)
    for i, (y, x) in enumerate(rng.integers(14, 34, size=(n, 2))):
        masks[i, 0, y:y + 16, x:x + 16] = 1
    return masks.clone(), masks


def test_augment_pairs_moves_each_mask_with_its_image():
    images, masks = _squares(64, seed=0)
    moved_images, moved_masks, drawn = augment_pairs(images, masks, torch.Generator().manual_seed(1))
    assert set(moved_masks.unique().tolist()) == {0.0, 1.0}
    inside = moved_masks.bool()
    # bilinear vs nearest at the same point: the nearest pixel weighs at least 1/4
    assert moved_images[inside].min() >= 0.25 - 1e-6
    assert moved_images[inside].mean() > 0.9
    assert moved_images[~inside].mean() < 0.02
    images_kept = (moved_images == images).flatten(1).all(1)
    masks_kept = (moved_masks == masks).flatten(1).all(1)
    assert torch.equal(drawn, ~images_kept)  # every drawn image moved, the others came back as they were
    assert masks_kept[~drawn].all()  # one decision per pair (a drawn mask may stay: nearest, a turn < 1 px)
    assert 20 <= int(images_kept.sum()) <= 44  # p = 0.5 of 64
    # most drawn squares really moved: scaled or turned
    assert (~masks_kept[drawn]).float().mean() > 0.8
    areas = moved_masks[drawn].flatten(1).sum(1)
    assert areas.min() >= 256 * 0.9**2 * 0.9 and areas.max() <= 256 * 1.1**2 * 1.1


def test_augment_pairs_is_seeded_and_keeps_undrawn_images():
    images, masks = _squares(8, seed=2)
    first = augment_pairs(images, masks, torch.Generator().manual_seed(5))
    second = augment_pairs(images, masks, torch.Generator().manual_seed(5))
    other = augment_pairs(images, masks, torch.Generator().manual_seed(6))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(first[0], other[0])
    # a seed whose draws leave both images of a pair alone returns them unchanged
    none_drawn = 0
    for seed in range(40):
        out_images, out_masks, drawn = augment_pairs(images[:2], masks[:2], torch.Generator().manual_seed(seed))
        if torch.equal(out_images, images[:2]):
            assert torch.equal(out_masks, masks[:2]) and not drawn.any()
            none_drawn += 1
    assert 3 <= none_drawn <= 20  # about a quarter of 40
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        augment_pairs(images, masks[:, 0], torch.Generator())


def _marks(n: int) -> torch.Tensor:
    """``n`` masks with two 8-px squares centred 20 px left and right of the image centre (32, 32)."""
    masks = torch.zeros(n, 1, SIZE, SIZE)
    masks[:, :, 28:36, 8:16] = 1  # pixel centres i + 0.5: the square's centre is (12, 32)
    masks[:, :, 28:36, 48:56] = 1  # and (52, 32)
    return masks


def _centre(mask: torch.Tensor) -> torch.Tensor:
    """The (x, y) centroid of a 2-D mask, in continuous pixel coordinates (pixel i spans [i, i + 1])."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()]) + 0.5


def test_augment_pairs_scales_and_turns_about_the_centre_without_shift_and_pads_with_zeros():
    """MGCA's ShiftScaleRotate(shift 0, scale 0.1, rotate 10, p 0.5, constant border) by hand: the two marks'
    mid-point stays at the centre (no shift), half the vector between them is s R(theta) (20, 0) with
    s in [0.9, 1.1] and |theta| <= 10 degrees, and the white film moved by that affine is 1 where its
    source lies inside the frame and exactly 0 where it lies outside (a zero border, not a reflection)."""
    n = 400
    films = torch.ones(n, 1, SIZE, SIZE)
    moved, moved_masks, drawn = augment_pairs(films, _marks(n), torch.Generator().manual_seed(11))
    assert 0.42 <= drawn.float().mean() <= 0.58  # p = 0.5
    assert torch.equal(moved[~drawn], films[~drawn]) and torch.equal(moved_masks[~drawn], _marks(n)[~drawn])
    centre = torch.tensor([SIZE / 2, SIZE / 2])
    pixels = torch.stack(torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="xy"), -1)
    scales, angles, emptied = [], [], 0
    for film, mask in zip(moved[drawn, 0], moved_masks[drawn, 0], strict=True):
        left, right = _centre(mask[:, :SIZE // 2]), _centre(mask[:, SIZE // 2:]) + torch.tensor([SIZE / 2, 0])
        torch.testing.assert_close((left + right) / 2, centre, atol=0.3, rtol=0)
        half = (right - left) / 2
        scale, angle = float(half.norm() / 20), float(torch.atan2(half[1], half[0]))
        scales.append(scale)
        angles.append(math.degrees(angle))
        # where each output pixel's value comes from: centre + R(-angle) (p - centre) / scale
        cos, sin = math.cos(angle), math.sin(angle)
        x, y = ((pixels - centre) / scale).unbind(-1)
        source = centre + torch.stack([cos * x + sin * y, -sin * x + cos * y], -1)
        inside = ((source > 2) & (source < SIZE - 2)).all(-1)
        outside = ((source < -2) | (source > SIZE + 2)).any(-1)
        emptied += int(outside.any())
        assert torch.all(film[inside] > 1 - 1e-5) and torch.all(film[outside] == 0)
        assert torch.all(mask[outside] == 0)
    assert emptied > len(scales) / 2  # most turned or shrunk films left some border empty
    assert 0.9 - 0.02 <= min(scales) < 0.93 and 1.07 < max(scales) <= 1.1 + 0.02
    assert -10.7 <= min(angles) < -8 and 8 < max(angles) <= 10.7


# ---------------------------------------------------------------- training set


def test_balanced_keys_takes_every_positive_and_as_many_seeded_negatives():
    keys = [f"k{i:02d}" for i in range(40)][::-1]
    positives = {f"k{i:02d}" for i in range(0, 40, 4)}
    chosen = balanced_keys(keys, positives, 1, seed=0)
    assert chosen == sorted(chosen) and len(chosen) == 20
    assert positives <= set(chosen)
    assert balanced_keys(keys, positives.__contains__, 1, seed=0) == chosen
    assert balanced_keys(keys, positives, 1, seed=1) != chosen
    assert len(balanced_keys(keys, positives, 0.5, seed=0)) == 15
    assert balanced_keys(keys, positives, 5, seed=0) == sorted(keys)  # fewer negatives than wanted: all
    assert balanced_keys(keys, positives, None, seed=0) == sorted(keys)
    with pytest.raises(ValueError, match="repeat"):
        balanced_keys(["a", "a"], set(), 1, seed=0)


def test_positives_are_read_from_masks_then_boxes():
    box = np.array([[1, 1, 4, 4]], np.float32)
    none = np.zeros((0, 4), np.float32)
    targets = {"mask": DenseTarget(none, "3 2"), "empty": DenseTarget(box, NO_MASK),
               "box": DenseTarget(box, None), "nothing": DenseTarget(none, None)}
    assert {k for k, t in targets.items() if is_positive(t)} == {"mask", "box"}


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """DenseImages of 64-px films, every other one with a bright square lesion and its run-length mask."""
    root = tmp_path_factory.mktemp("toy_segmentation")
    rng = np.random.default_rng(0)
    rows, targets = [], {}
    for split, n in SPLITS.items():
        for i in range(n):
            key = f"{split}_{i:02d}"
            image = rng.normal(90, 15, size=(SIZE, SIZE))
            mask = np.zeros((SIZE, SIZE), bool)
            if i % 2 == 0:
                y, x = rng.integers(4, SIZE - 24, size=2)
                mask[y:y + 20, x:x + 20] = True
                image[mask] = 230
            Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(root / f"{key}.png")
            rows.append({"key": key, "path": f"{key}.png", "split": split})
            targets[key] = DenseTarget(np.zeros((0, 4), np.float32), encode_rle(mask))
    write_shards(pa.Table.from_pylist(rows), root, root / "shards", image_size=SIZE, samples_per_shard=8)
    manifest = root / "shards" / "manifest.parquet"
    geometry = read_geometry(manifest)

    def images(split: str, masks: bool = True) -> DenseImages:
        index = index_shard_images(shard_paths(manifest, split))
        return DenseImages(sorted(index), targets, geometry, index, SIZE, masks=masks, seed=1)

    return images


def test_segment_learns_the_lesions_and_is_deterministic_on_cpu(toy):
    settings = Settings(head=HEAD)
    splits = toy("train"), toy("validate"), toy("test")
    first = segment(_encoder(), *splits, settings, name="toy", preview=6)
    second = segment(_encoder(), *splits, settings, name="toy", preview=6)
    assert (first.metrics, first.history, first.best_epoch) == (second.metrics, second.history, second.best_epoch)
    assert set(first.metrics) == {"dice", "dice_positive", "dice_negative"}
    assert first.metrics["dice_positive"] > 0.6  # an all-empty prediction scores 0 on the positives
    assert (first.n_train, first.n_test) == (24, 8)
    assert first.best_epoch == 1 + int(np.argmin([e.val_score for e in first.history]))
    # the preview: the 4 positive test images by key, then the first 2 negatives
    assert [p.key for p in first.preview] == ["test_00", "test_02", "test_04", "test_06", "test_01", "test_03"]
    shown = first.preview[0]
    assert shown.image.dtype == np.uint8 and shown.image.shape == (SIZE, SIZE)
    assert shown.truth.dtype == bool and shown.truth.sum() == 400
    assert shown.predicted.dtype == bool and shown.predicted.shape == (SIZE, SIZE)
    assert shown.image[shown.truth].min() > 200
    assert [p.truth.any() for p in second.preview] == [True] * 4 + [False] * 2


def test_segment_with_frozen_bn_train_leaves_the_callers_encoder_and_cache_alone(toy, caplog):
    splits = toy("train"), toy("validate"), toy("test")
    encoder = _encoder()
    loaded = {k: v.clone() for k, v in encoder.state_dict().items()}
    cache = StageCache(encoder, range(len(encoder.channels)), batch_size=4, budget_bytes=2**30, device="cpu")
    settings = Settings(head=dataclasses.replace(HEAD, epochs=2, frozen_bn="train"))
    with caplog.at_level(logging.INFO, logger="imitate.evaluate.heads"):
        trained = segment(encoder, *splits, settings, name="toy", preview=0, cache=cache)
    assert "toy: frozen_bn train" in caplog.text and "not cached" in caplog.text
    assert all(torch.equal(v, loaded[k]) for k, v in encoder.state_dict().items())
    assert cache.used_bytes == 0 and not any(m.training for m in encoder.backbone.modules())
    again = segment(_encoder(), *splits, settings, name="toy", preview=0)
    assert (trained.metrics, trained.history) == (again.metrics, again.history)
    frozen = segment(encoder, *splits, dataclasses.replace(settings, head=dataclasses.replace(
        settings.head, frozen_bn="eval")), name="toy", preview=0, cache=cache)
    assert cache.used_bytes > 0  # eval mode caches
    assert [e.val_score for e in frozen.history] != [e.val_score for e in trained.history]
    with pytest.raises(ValueError, match="frozen_bn must be one of"):
        HeadSettings(frozen_bn="frozen")


def test_segment_rejects_images_without_masks_or_of_another_size(toy):
    settings = Settings(head=dataclasses.replace(HEAD, epochs=1))
    with pytest.raises(ValueError, match="train images were built without masks"):
        segment(_encoder(), toy("train", masks=False), toy("validate"), toy("test"), settings, name="toy")
    with pytest.raises(ValueError, match="input_size is 96"):
        segment(_encoder(), toy("train"), toy("validate"), toy("test"),
                Settings(head=dataclasses.replace(HEAD, input_size=96)), name="toy")
    with pytest.raises(ValueError, match="multiple of 32"):
        segment(_encoder(), toy("train"), toy("validate"), toy("test"),
                Settings(head=dataclasses.replace(HEAD, input_size=80)), name="toy")
    with pytest.raises(ValueError, match="threshold"):
        Settings(threshold=1.0)
