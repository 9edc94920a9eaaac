"""Pretraining never reads an image of MIMIC-CXR's official test split.

The paper's MIMIC 5x200 zero-shot and retrieval numbers rest on the test studies never having been seen
in pretraining. A demo MIMIC tree in the real layout goes through the real stages (demo-data, sections,
manifest, shards); then the real ``imitate pretrain`` command runs one epoch with the sample decoder
spied on, and the split of every image it read is looked up in the official split CSV, read here with
``gzip`` + ``csv`` rather than the package's reader. Every study has a text embedding, test studies
included, so a test image that reached the loader would be trained on, not skipped.
"""

from __future__ import annotations

import csv
import gzip
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import imitate.train.data as train_data
from imitate.cli import main
from imitate.train.pretrain import ShardSplit

SPLIT_CSV = "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv.gz"
DIM = 16
MODEL = {"backbone": "resnet18", "init": "none", "token_size": 4, "attn_dim": 32, "attn_heads": 2, "proj_dim": 16}
SETTINGS = {"crop_size": 32, "batch_size": 4, "epochs": 1, "lr": 1e-3, "weight_decay": 0.05, "workers": 0}


def imitate(*args: object) -> None:
    """Run one ``imitate`` stage in this process; it must succeed."""
    assert main([str(a) for a in args]) == 0


def official_split(path: Path) -> dict[str, tuple[int, str]]:
    """dicom_id -> (study_id, split), straight from the gzipped CSV."""
    with gzip.open(path, "rt", newline="") as fh:
        return {row["dicom_id"]: (int(row["study_id"]), row["split"]) for row in csv.DictReader(fh)}


def tar_samples(path: Path) -> dict[str, int]:
    """key -> study_id of every sample of one shard, from its JSON members (read with tarfile)."""
    with tarfile.open(path) as tar:
        metas = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    return {meta["key"]: meta["study_id"] for meta in metas}


def write_embeddings(path: Path, study_ids: list[int]) -> None:
    """Random embeddings for ``study_ids``, with the encoder facts pretraining copies into its card."""
    rng = np.random.default_rng(0)
    vectors = pa.list_(pa.float16(), DIM)
    table = pa.table(
        {
            "study_id": pa.array(study_ids, pa.int64()),
            "findings_emb": pa.array([rng.normal(size=DIM).tolist() for _ in study_ids], vectors),
            "impression_emb": pa.array([rng.normal(size=DIM).tolist() for _ in study_ids], vectors),
            "has_findings": pa.array([True] * len(study_ids)),
        }
    )
    facts = {"encoder": "random", "weights_sha256": "0" * 64, "dim": DIM, "pooling": "cls", "max_length": 32}
    pq.write_table(table.replace_schema_metadata({"imitate.embeddings": json.dumps(facts)}), path)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demo MIMIC-CXR (JPG and DICOM images) through the sections, manifest and shards stages."""
    work = tmp_path_factory.mktemp("mimic")
    files = work / "physionet.org" / "files"
    imitate("demo-data", files, "--n-studies", 40, "--image-size", 64, "--dicom-fraction", 0.25,
            "--split-fractions", "0.6,0.2,0.2")  # fmt: skip
    reports = files / "mimic-cxr-reports" / "files"
    sections = work / "sections.parquet"
    imitate("sections", reports, "--out", sections, "--rejects", work / "section_rejects.parquet")
    imitate("manifest", "--sections", sections, "--metadata", files / METADATA_CSV, "--split", files / SPLIT_CSV,
            "--root", files, "--image-tree", "mimic-cxr-jpg/2.0.0/files:.jpg",
            "--image-tree", "mimic-cxr/2.0.0/files:.dcm", "--out-dir", work / "manifest")  # fmt: skip
    shards = work / "shards"
    imitate("shards", work / "manifest" / "images.parquet", "--root", files, "--out", shards, "--image-size", 40,
            "--samples-per-shard", 8)  # fmt: skip
    split = official_split(files / SPLIT_CSV)
    embeddings = work / "embeddings.parquet"
    write_embeddings(embeddings, sorted({study for study, _ in split.values()}))  # test studies included
    return {"work": work, "split_csv": files / SPLIT_CSV, "shards": shards / "manifest.parquet",
            "embeddings": embeddings}  # fmt: skip


def test_the_demo_shards_hold_test_studies_for_pretraining_to_leave_out(tree):
    """Not vacuous: test-split images of the CSV were sharded, so only the split keeps them out."""
    split = official_split(tree["split_csv"])
    sharded = {key for tar in tree["shards"].parent.glob("*.tar") for key in tar_samples(tar)}
    by_split = Counter(split[key][1] for key in sharded)
    assert by_split["test"] >= 4 and by_split["train"] >= 8 and by_split["validate"] >= 4, by_split


def test_the_pretrain_command_reads_only_train_and_validate_images(tree, tmp_path, monkeypatch, one_torch_thread):
    split = official_split(tree["split_csv"])
    test_studies = {study for study, name in split.values() if name == "test"}
    read: list[tuple[str, str, int]] = []  # (shard, key, study_id) of every sample the loader decoded

    def spy(sample):
        decoded = decode(sample)
        read.append((Path(sample["__url__"]).name, decoded["key"], decoded["meta"]["study_id"]))
        return decoded

    decode = train_data.decode_sample
    monkeypatch.setattr(train_data, "decode_sample", spy)
    out = tmp_path / "pretrain"
    imitate("pretrain", "--shards", tree["shards"], "--embeddings", tree["embeddings"],
            "--model-settings", json.dumps(MODEL), "--settings", json.dumps(SETTINGS), "--seed", 0,
            "--out-dir", out)  # fmt: skip

    assert read, "the loader decoded nothing"
    for shard, key, study in read:
        study_in_csv, name = split[key]
        assert name in ("train", "validate"), f"pretraining read {key} (study {study}) of the {name} split"
        assert study == study_in_csv and study not in test_studies
        assert shard.startswith(f"{name}-"), f"{key} ({name} in the split CSV) came from {shard}"
    assert {split[key][1] for _, key, _ in read} == {"train", "validate"}  # both loaders ran
    # every shard pretraining opened holds no image of any test study of the CSV, whether decoded or not
    opened = {shard for shard, _, _ in read}
    for shard in opened:
        held = tar_samples(tree["shards"].parent / shard)
        assert not {k for k in held if split[k][1] == "test"} and not set(held.values()) & test_studies, shard
    card = json.loads((out / "model_card.json").read_text())
    sharded = {key for tar in tree["shards"].parent.glob("*.tar") for key in tar_samples(tar)}
    assert card["train_images"] == sum(split[k][1] == "train" for k in sharded)
    assert card["val_images"] == sum(split[k][1] == "validate" for k in sharded)


@pytest.mark.parametrize("name", ["train", "validate"])
def test_a_full_loader_pass_yields_each_image_of_the_split_once_and_nothing_else(tree, name, one_torch_thread):
    """Batch 1, no shuffle buffer: one epoch is one pass over the split's shards, so every image the
    loader can ever yield shows up; their studies must be exactly the CSV's images of that split."""
    split = official_split(tree["split_csv"])
    shards = ShardSplit.from_manifest(tree["shards"], name)  # the command's own choice of shards
    loader = train_data.build_pretrain_loader(
        [str(p) for p in shards.paths], tree["embeddings"], crop_size=32, batch_size=1,
        num_samples=shards.num_samples, workers=0, seed=0, epoch=0, shuffle_buffer=1,
    )  # fmt: skip
    yielded = Counter(int(s) for batch in loader for s in batch["study_id"])
    sharded = {k: v for tar in tree["shards"].parent.glob("*.tar") for k, v in tar_samples(tar).items()}
    expected = Counter(study for key, study in sharded.items() if split[key][1] == name)
    assert yielded == expected
