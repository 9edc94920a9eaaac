"""imitate.train.data: embeddings table, transforms, and the sharded, seeded pretraining loader."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from imitate.images.transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform
from imitate.io.parquet import write_table
from imitate.shards.reader import shard_paths
from imitate.shards.writer import write_shards
from imitate.train.data import BATCH_KEYS, build_pretrain_loader, load_embeddings, steps_per_epoch
from tests.helpers.embeddings import DIM, embedding_table

N_IMAGES = 24
CROP = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """4 train shards of 6 images (72x96 -> 40x53), 2 images per study, and their embeddings."""
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (72, 96), dtype=np.uint8)).save(root / f"{i}.png")
        rows.append({"key": f"img{i:02d}", "path": f"{i}.png", "split": "train", "study_id": 100 + i // 2})
    out = tmp_path_factory.mktemp("shards")
    write_shards(pa.Table.from_pylist(rows), root, out, image_size=40, samples_per_shard=6)
    embeddings = write_table(embedding_table(sorted({r["study_id"] for r in rows})), out / "embeddings.parquet")
    return shard_paths(out / "manifest.parquet", "train"), embeddings


def collect(shards: list[Path], embeddings, **overrides) -> list[dict[str, torch.Tensor]]:
    kwargs = {
        "crop_size": CROP,
        "batch_size": 4,
        "num_samples": N_IMAGES,
        "workers": 0,
        "seed": 0,
        "epoch": 0,
        "shuffle_buffer": 8,
        **overrides,
    }
    loader = build_pretrain_loader(shards, embeddings, **kwargs)
    batches = list(loader)
    assert len(batches) == len(loader)
    return batches


def test_batches_have_exactly_the_contract(data) -> None:
    shards, embeddings = data
    batches = collect(shards, embeddings)
    assert len(batches) == steps_per_epoch(N_IMAGES, 4) == 6
    for batch in batches:
        assert tuple(batch) == BATCH_KEYS
        assert all(type(v) is torch.Tensor for v in batch.values())
        for view in ("view1", "view2"):
            assert batch[view].shape == (4, 3, CROP, CROP) and batch[view].dtype == torch.float32
        assert batch["findings_emb"].shape == batch["impression_emb"].shape == (4, DIM)
        assert batch["findings_emb"].dtype == batch["impression_emb"].dtype == torch.float32
        assert batch["has_findings"].dtype == torch.bool and batch["study_id"].dtype == torch.int64
        study = batch["study_id"].float()[:, None].expand(4, DIM)
        torch.testing.assert_close(batch["impression_emb"], study)
        assert torch.equal(batch["has_findings"], batch["study_id"] % 2 == 0)
        expected_findings = torch.where(batch["has_findings"][:, None], -study, torch.zeros_like(study))
        torch.testing.assert_close(batch["findings_emb"], expected_findings)
        # grayscale replicated to 3 channels, then standardised per channel
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        pixels = batch["view1"] * std + mean
        torch.testing.assert_close(pixels[:, 0], pixels[:, 2])
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert not torch.equal(batch["view1"], batch["view2"])  # two independent augmentations


def test_same_seed_and_epoch_repeat_and_other_epochs_differ(data) -> None:
    shards, embeddings = data
    first = collect(shards, embeddings, epoch=0)
    again = collect(shards, embeddings, epoch=0)
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in BATCH_KEYS)

    def order(batches: list[dict[str, torch.Tensor]]) -> list[int]:
        return torch.cat([b["study_id"] for b in batches]).tolist()

    assert order(collect(shards, embeddings, epoch=1)) != order(first)
    assert order(collect(shards, embeddings, seed=1)) != order(first)


def test_every_rank_takes_the_same_number_of_steps(data) -> None:
    shards, embeddings = data
    # 26 samples, 2 ranks x batch 4: 3 full global batches, the remainder is not a step
    runs = [collect(shards, embeddings, num_samples=26, rank=r, world_size=2) for r in (0, 1)]
    assert [len(run) for run in runs] == [3, 3]
    ids = [torch.cat([b["study_id"] for b in run]).tolist() for run in runs]
    assert ids[0] != ids[1]
    with pytest.raises(ValueError, match="outside world_size"):
        collect(shards, embeddings, rank=2, world_size=2)


def test_worker_processes_share_the_steps_deterministically(data) -> None:
    shards, embeddings = data
    # 7 steps over 2 workers (4 + 3): the DataLoader still yields exactly 7
    first = collect(shards, embeddings, num_samples=21, batch_size=3, workers=2)
    again = collect(shards, embeddings, num_samples=21, batch_size=3, workers=2)
    assert len(first) == 7
    assert all(torch.equal(a["view1"], b["view1"]) for a, b in zip(first, again, strict=True))


def test_callers_random_state_is_untouched(data) -> None:
    shards, embeddings = data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    collect(shards, embeddings)
    assert torch.equal(torch.rand(3), expected)


def test_samples_without_embedding_are_skipped_and_logged(data, caplog: pytest.LogCaptureFixture) -> None:
    shards, embeddings = data
    table = load_embeddings(embeddings)
    del table[100]
    with caplog.at_level(logging.WARNING, logger="imitate.train.data"):
        batches = collect(shards, table)
    assert len(batches) == 6
    assert 100 not in torch.cat([b["study_id"] for b in batches]).tolist()
    assert "study 100 has no text embedding" in caplog.text


def test_official_augmentations(data) -> None:
    shards, embeddings = data
    batches = collect(shards, embeddings, augment="official")
    assert batches[0]["view1"].shape == (4, 3, CROP, CROP)
    with pytest.raises(ValueError, match="augment"):
        collect(shards, embeddings, augment="strong")
    # Four grey quadrants as big as the crop (the crop takes it all). A rotation within ±30° and the
    # perspective keep most of each half in its half, so the brighter half tells whether each flip ran,
    # and the brightest level whether autocontrast did: 220 at most without it, 254 or 255 with it.
    image = np.zeros((48, 48), np.uint8)
    image[:24, :24], image[:24, 24:], image[24:, :24], image[24:, 24:] = 40, 100, 140, 220
    transform = build_train_transform(48, "official")
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]  # ImageNet's, written out
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    vertical = horizontal = contrasted = 0
    with torch.random.fork_rng():
        for seed in range(64):
            torch.manual_seed(seed)
            grey = transform(image) * std + mean
            torch.testing.assert_close(grey, grey[:1].expand(3, -1, -1))  # one grey image in 3 channels
            levels = grey[0] * 255
            torch.testing.assert_close(levels, levels.round(), atol=1e-3, rtol=0)  # 8-bit levels / 255
            brightest = int(levels.max().round())
            assert brightest <= 220 or brightest >= 254
            contrasted += brightest >= 254
            vertical += bool(grey[0, :24].mean() > grey[0, 24:].mean())
            horizontal += bool(grey[0, :, :24].mean() > grey[0, :, 24:].mean())
    # each with p = 0.5: a fair coin leaves 16..48 of 64 with probability 2e-5
    assert 16 <= vertical <= 48 and 16 <= horizontal <= 48 and 16 <= contrasted <= 48


def test_too_few_samples_for_one_global_batch() -> None:
    with pytest.raises(ValueError, match="do not fill one global batch"):
        steps_per_epoch(7, 4, world_size=2)


def test_eval_transform_is_a_normalised_center_crop() -> None:
    image = np.random.default_rng(3).integers(0, 256, (40, 50), dtype=np.uint8)
    out = build_eval_transform(CROP)(image)
    assert out.shape == (3, CROP, CROP) and out.dtype == torch.float32
    top, left = (40 - CROP) // 2, (50 - CROP) // 2
    crop = torch.from_numpy(image[top : top + CROP, left : left + CROP]).float() / 255
    expected = (crop[None] - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out, expected)


def test_load_embeddings(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = embedding_table([1, 2, 3])
    loaded = load_embeddings(write_table(table, tmp_path / "ok.parquet"))
    assert sorted(loaded) == [1, 2, 3]
    assert loaded[1].findings is None and not loaded[1].has_findings
    np.testing.assert_array_equal(loaded[2].findings, np.full(DIM, -2, np.float16))

    no_impression = table.set_column(
        2,
        "impression_emb",
        pa.FixedSizeListArray.from_arrays(
            pa.array(np.ones(3 * DIM, np.float16)), DIM, mask=pa.array([False, True, False])
        ),
    )
    with caplog.at_level(logging.WARNING, logger="imitate.train.data"):
        assert sorted(load_embeddings(write_table(no_impression, tmp_path / "ni.parquet"))) == [1, 3]
    assert "1 studies without an impression embedding" in caplog.text

    broken = {
        "has_findings disagrees": table.set_column(3, "has_findings", pa.array([True, True, False])),
        "repeated study_id": table.set_column(0, "study_id", pa.array([1, 1, 3], pa.int64())),
        "fixed-size list": embedding_table([1, 2, 3], findings_list_type=True),
        "missing column": table.drop_columns(["has_findings"]),
    }
    for message, bad in broken.items():
        with pytest.raises(ValueError, match=message):
            load_embeddings(write_table(bad, tmp_path / "bad.parquet"))


def test_whole_report_embeddings_reach_the_batches(data, tmp_path: Path) -> None:
    shards, _ = data
    table = embedding_table(list(range(100, 100 + N_IMAGES // 2)))
    report = np.repeat(np.asarray(table["study_id"].to_numpy() * 10, np.float16)[:, None], DIM, axis=1)
    with_report = table.append_column("report_emb", pa.FixedSizeListArray.from_arrays(pa.array(report.ravel()), DIM))
    path = write_table(with_report, tmp_path / "report.parquet")
    np.testing.assert_array_equal(load_embeddings(path)[101].report, np.full(DIM, 1010, np.float16))
    for batch in collect(shards, path):
        assert tuple(batch) == (*BATCH_KEYS, "report_emb")
        torch.testing.assert_close(batch["report_emb"], batch["study_id"].float()[:, None].expand(4, DIM) * 10)
    null_report = with_report.set_column(
        4,
        "report_emb",
        pa.FixedSizeListArray.from_arrays(
            pa.array(report.ravel()), DIM, mask=pa.array([i == 0 for i in range(len(report))])
        ),
    )
    with pytest.raises(ValueError, match="report_emb is null for a study that has an impression"):
        load_embeddings(write_table(null_report, tmp_path / "null.parquet"))
