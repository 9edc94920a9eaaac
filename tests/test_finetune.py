import dataclasses

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.data.shard_images import LabelledImages, epoch_loader, index_shard_images, read_image
from imitate.evaluate.encoders import Method, build_encoder, frozen_encoder
from imitate.evaluate.tasks.finetune_classification import Settings, finetune
from imitate.images.transforms import build_eval_transform, kad_augment, kad_crop_transform
from imitate.shards.reader import iter_samples, shard_paths
from imitate.shards.writer import write_shards

LABELS = ("square", "stripes")
SIZES = {"train": 24, "validate": 8, "test": 8}
SETTINGS = Settings(epochs=3, lr=1e-3, batch_size=8, crop_size=28, workers=0, seed=5)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _film(square: bool, stripes: bool, rng: np.random.Generator) -> np.ndarray:
    """A 32-px image whose labels are visible: a bright square, dark horizontal stripes, or both."""
    image = rng.normal(110, 12, size=(32, 32)).clip(0, 255)
    if square:
        y, x = rng.integers(4, 18, size=2)
        image[y:y + 10, x:x + 10] = 235
    if stripes:
        image[::4] = 10
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Shards of 40 labelled 32-px images (24 train / 8 validate / 8 test) and their EvalDataset."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for split, n in SIZES.items():
        for i in range(n):
            key = f"{split}_{i:02d}"
            label = [float(i % 2), float((i // 2) % 2)]
            Image.fromarray(_film(bool(label[0]), bool(label[1]), rng)).save(root / f"{key}.png")
            rows.append({"key": key, "path": f"{key}.png", "split": split})
            labels.append(label)
    write_shards(pa.Table.from_pylist(rows), root, root / "shards", image_size=32, samples_per_shard=8)
    dataset = EvalDataset(
        name="toy", kind="multilabel", label_names=LABELS, keys=[r["key"] for r in rows],
        splits=[r["split"] for r in rows], labels=np.array(labels, np.float32), texts=[None] * len(rows), facts={},
    )
    return dataset, root / "shards" / "manifest.parquet"


def _encoder(seed: int = 0) -> torch.nn.Module:
    return build_encoder(Method("random", "random"), "resnet18", seed=seed)


def test_finetune_learns_reports_and_is_deterministic(toy):
    dataset, manifest = toy
    train_keys = dataset.keys_of("train")
    first = finetune(_encoder(), 512, dataset, manifest, train_keys, SETTINGS)
    second = finetune(_encoder(), 512, dataset, manifest, train_keys, SETTINGS)
    assert (first.metrics, first.fit.history) == (second.metrics, second.fit.history)
    assert np.array_equal(first.test_probabilities, second.test_probabilities)
    losses = [record.train_loss for record in first.fit.history]
    assert losses[-1] < losses[0]
    assert set(first.metrics) == {"auc_macro", "auc:square", "auc:stripes"}
    assert (first.n_train, first.n_test) == (24, 8)
    val_aucs = [record.val_score for record in first.fit.history]
    assert first.fit.best_epoch == 1 + int(np.argmax(val_aucs))
    assert first.fit.best_score == max(val_aucs)


def test_finetune_tests_the_best_validation_epoch_not_the_last(toy):
    dataset, manifest = toy
    # validation labels flipped: the more the model learns, the worse it scores there
    validate = np.array([s == "validate" for s in dataset.splits])
    flipped = dataclasses.replace(dataset, labels=np.where(validate[:, None], 1 - dataset.labels, dataset.labels))
    settings = dataclasses.replace(SETTINGS, epochs=4, augment="none")
    result = finetune(_encoder(), 512, flipped, manifest, dataset.keys_of("train"), settings)
    assert result.fit.best_epoch < settings.epochs
    assert result.fit.best_score == max(r.val_score for r in result.fit.history)
    stopped = finetune(_encoder(), 512, flipped, manifest, dataset.keys_of("train"),
                       dataclasses.replace(settings, epochs=result.fit.best_epoch))
    assert stopped.fit.history == result.fit.history[:result.fit.best_epoch]
    assert np.array_equal(result.test_probabilities, stopped.test_probabilities)


def test_finetune_trains_on_the_subset_only(toy):
    dataset, manifest = toy
    subset = dataset.keys_of("train")[::3]
    # the other training images get NaN labels: touching any of them would make a loss NaN
    poisoned = dataset.labels.copy()
    poisoned[[dataset.splits[i] == "train" and k not in subset for i, k in enumerate(dataset.keys)]] = np.nan
    result = finetune(_encoder(), 512, dataclasses.replace(dataset, labels=poisoned), manifest, subset,
                      dataclasses.replace(SETTINGS, epochs=1))
    assert result.n_train == len(subset) == 8
    assert np.isfinite(result.fit.history[0].train_loss)


def test_finetune_rejects_unknown_keys_frozen_encoders_and_multiclass(toy):
    dataset, manifest = toy
    with pytest.raises(ValueError, match=r"not in the train shards.*ghost"):
        finetune(_encoder(), 512, dataset, manifest, ["train_00", "ghost"], SETTINGS)
    with pytest.raises(ValueError, match=r"not in the train shards.*test_00"):
        finetune(_encoder(), 512, dataset, manifest, ["train_00", "test_00"], SETTINGS)
    with pytest.raises(ValueError, match="frozen"):
        finetune(frozen_encoder(Method("random", "random"), "resnet18", seed=0), 512, dataset, manifest,
                 ["train_00", "train_01"], SETTINGS)
    with pytest.raises(ValueError, match="multiclass"):
        finetune(_encoder(), 512, dataclasses.replace(dataset, kind="multiclass"), manifest, ["train_00"], SETTINGS)
    with pytest.raises(ValueError, match="augment"):
        Settings(augment="randaugment")


def test_labelled_images_are_seeded_by_epoch_and_item_not_by_worker_count(toy):
    dataset, manifest = toy
    index = index_shard_images(shard_paths(manifest, "train"))
    keys = sorted(index)
    assert len(keys) == 24
    for sample in iter_samples(shard_paths(manifest, "train")):
        assert np.array_equal(read_image(index[sample["key"]], sample["key"]), sample["image"])
    images = LabelledImages(keys, dataset.targets(keys), index, kad_crop_transform(28, "kad"), seed=1)

    def epoch(number: int, workers: int) -> list[torch.Tensor]:
        return [x for x, _ in epoch_loader(images, epoch=number, batch_size=5, workers=workers, shuffle=True)]

    one = epoch(1, 0)
    assert [x.dtype for x in one] == [torch.uint8] * 5
    assert [tuple(x.shape) for x in one] == [(5, 1, 28, 28)] * 4 + [(4, 1, 28, 28)]
    assert all(torch.equal(a, b) for a, b in zip(one, epoch(1, 2), strict=True))
    assert not torch.equal(one[0], epoch(2, 0)[0])
    in_order = list(epoch_loader(images, epoch=0, batch_size=10, workers=0, shuffle=False))
    assert torch.equal(torch.cat([y for _, y in in_order]), torch.from_numpy(dataset.targets(keys)))
    with pytest.raises(KeyError, match="ghost"):
        LabelledImages(["ghost"], np.zeros((1, 2)), index, kad_crop_transform(28, "none"), seed=0)


def test_batches_are_normalised_as_in_pretraining_and_augmented_by_the_generator(toy):
    _, manifest = toy
    samples = list(iter_samples(shard_paths(manifest, "test")))[:4]
    crops = torch.stack([kad_crop_transform(28, "none")(torch.from_numpy(s["image"])) for s in samples])
    expected = torch.stack([build_eval_transform(28)(torch.from_numpy(s["image"])) for s in samples])
    assert torch.allclose(kad_augment(crops, None), expected, atol=1e-6)
    augmented = kad_augment(crops, torch.Generator().manual_seed(0))
    assert torch.equal(augmented, kad_augment(crops, torch.Generator().manual_seed(0)))
    assert augmented.shape == expected.shape and not torch.allclose(augmented, expected)
