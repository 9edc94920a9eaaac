"""Pretraining data: shards x frozen text embeddings -> batches of two augmented views per image.

With unfrozen text layers (Table XI) the per-study texts are token ids (:mod:`imitate.train.tokens`)
and the batches hold padded ids and attention masks instead of the vectors.

Scheduling. Every DataLoader worker of every rank is one *stream* (``world_size * max(workers, 1)``
streams). The shard list is reshuffled for each pass by a Generator seeded with ``(seed, epoch, pass)``
and the passes are concatenated into an endless sequence, of which stream ``s`` reads every S-th shard
from position ``s``. This is WebDataset's ``split_by_node`` + ``split_by_worker`` over a resampled shard
list, ended by an explicit batch count per stream (``with_epoch``), but with rank and world size passed
in rather than read from the environment, no repeats within a pass, and no need for more shards than
streams. The streams of a rank together yield exactly :func:`steps_per_epoch` batches, the same on
every rank. Tar members are grouped into samples by WebDataset (:func:`imitate.shards.reader.tar_samples`).

Randomness. Each stream owns a Generator seeded with ``(seed, epoch, rank, worker)`` that drives its
sample shuffle buffer and draws one seed per sample; torchvision's random transforms use torch's global
generator, so each sample's views are drawn inside ``torch.random.fork_rng`` under that seed. The same
arguments give the same batches whatever the caller's RNG state, and the caller's state is untouched.

Pixels. Shard images are uint8; after augmentation they are scaled to [0, 1] (the paper's
normalisation), replicated to 3 channels, then standardised with the ImageNet mean/std as the official
code does (its ResNet starts from ImageNet weights, which expect that input).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import v2

from imitate.embed.store import embedding_matrix, study_ids
from imitate.images.transforms import build_train_transform, crop_transform
from imitate.shards.reader import decode_sample, tar_samples
from imitate.train.interrupt import ignore_stop_signals
from imitate.train.study_text import StudyText
from imitate.train.tokens import REPORT, SECTIONS, token_batch

log = logging.getLogger(__name__)

BATCH_KEYS = ("view1", "view2", "findings_emb", "impression_emb", "has_findings", "study_id")
EMBEDDING_COLUMNS = ("study_id", "findings_emb", "impression_emb", "has_findings")
REPORT_COLUMN = "report_emb"


class _Item(NamedTuple):
    view1: torch.Tensor
    view2: torch.Tensor
    text: StudyText
    study_id: int


def load_embeddings(path: str | Path) -> dict[int, StudyText]:
    """Read ``study_id, findings_emb, impression_emb, has_findings`` (fixed-size float lists) by study.

    Studies without an Impression embedding cannot be trained on and are left out (logged); the rows
    share two contiguous matrices, so the per-study arrays are views, not copies.
    """
    schema = pq.read_schema(path)
    missing = [name for name in EMBEDDING_COLUMNS if name not in schema.names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    with_report = REPORT_COLUMN in schema.names
    table = pq.read_table(path, columns=[*EMBEDDING_COLUMNS, *([REPORT_COLUMN] if with_report else [])])
    ids = study_ids(table, path)
    impression, has_impression = embedding_matrix(table, "impression_emb", path)
    findings, findings_valid = embedding_matrix(table, "findings_emb", path)
    if findings.shape[1] != impression.shape[1]:
        raise ValueError(f"{path}: findings_emb and impression_emb differ in size")
    has_findings = table["has_findings"].to_numpy(zero_copy_only=False).astype(bool)
    if (has_findings != findings_valid).any():
        study = int(ids[np.flatnonzero(has_findings != findings_valid)[0]])
        raise ValueError(f"{path}: has_findings disagrees with findings_emb being null (study {study})")
    report, has_report = embedding_matrix(table, REPORT_COLUMN, path) if with_report else (None, has_impression)
    if not has_impression.all():
        log.warning("%s: %d studies without an impression embedding left out", path, (~has_impression).sum())
    if not (has_report | ~has_impression).all():
        raise ValueError(f"{path}: report_emb is null for a study that has an impression")
    return {
        int(study): StudyText(
            impression[i], findings[i] if findings_valid[i] else None, None if report is None else report[i]
        )
        for i, study in enumerate(ids)
        if has_impression[i]
    }


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Batches each rank takes per epoch: full global batches only (the remainder is not a step)."""
    steps = num_samples // (batch_size * world_size)
    if steps < 1:
        raise ValueError(
            f"{num_samples} samples do not fill one global batch of {batch_size} x {world_size} ranks"
        )
    return steps


def build_pretrain_loader(
    shards: Sequence[str | Path],
    embeddings: Mapping[int, StudyText] | str | Path,
    *,
    crop_size: int,
    batch_size: int,
    num_samples: int,
    workers: int,
    seed: int,
    epoch: int,
    augment: str = "paper",
    rotation_degrees: float = 15.0,
    shuffle_buffer: int = 1000,
    rank: int = 0,
    world_size: int = 1,
    crop_only: bool = False,
) -> DataLoader:
    """One epoch of pretraining batches for ``rank``: dicts with exactly the keys of ``BATCH_KEYS``.

    ``view1``/``view2`` float32 B x 3 x crop x crop, ``findings_emb``/``impression_emb`` float32 B x D
    (findings zero where missing), ``has_findings`` bool B, ``study_id`` int64 B; plus ``report_emb``
    float32 B x D when the embeddings have whole-report vectors. With ``crop_only`` the views are just
    the random crops, uint8 B x 1 x crop x crop, for :func:`imitate.images.transforms.augment_batch`
    to finish on the GPU. With :class:`StudyText` token ids per study (unfrozen text
    layers) the ``*_emb`` keys are ``<section>_input_ids`` and ``<section>_attention_mask`` (int64 B x
    the batch's longest text) instead. ``num_samples`` is the
    number of training images (the epoch length); ``len(loader)`` is :func:`steps_per_epoch`.
    """
    if not shards:
        raise ValueError("build_pretrain_loader: no shards")
    absent = [str(p) for p in shards if not Path(p).is_file()]
    if absent:
        raise FileNotFoundError(f"missing shard(s): {absent}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    table = embeddings if isinstance(embeddings, Mapping) else load_embeddings(embeddings)
    if not table:
        raise ValueError("build_pretrain_loader: no text embeddings")
    stream = PretrainStream(
        shards=[str(p) for p in shards],
        embeddings=table,
        transform=(
            crop_transform(crop_size) if crop_only else build_train_transform(crop_size, augment, rotation_degrees)
        ),
        batch_size=batch_size,
        steps=steps_per_epoch(num_samples, batch_size, world_size),
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        epoch=epoch,
        rank=rank,
        world_size=world_size,
    )
    # The DataLoader draws its workers' base seed from this generator, not from torch's global one.
    generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, epoch, rank]).integers(2**63)))
    # page-locked batches let the trainer's non_blocking copies to the GPU overlap the compute
    return DataLoader(
        stream, batch_size=None, num_workers=workers, generator=generator, pin_memory=torch.cuda.is_available(),
        worker_init_fn=ignore_stop_signals,
    )


class PretrainStream(IterableDataset):
    """The batches of one rank for one epoch, split over the DataLoader workers (see module doc)."""

    def __init__(
        self,
        *,
        shards: list[str],
        embeddings: Mapping[int, StudyText],
        transform: v2.Compose,
        batch_size: int,
        steps: int,
        shuffle_buffer: int,
        seed: int,
        epoch: int,
        rank: int,
        world_size: int,
    ) -> None:
        super().__init__()
        self.shards = shards
        self.embeddings = embeddings
        self.transform = transform
        self.batch_size = batch_size
        self.steps = steps
        self.shuffle_buffer = shuffle_buffer
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        schedule = _shard_schedule(
            self.shards, self.seed, self.epoch, self.rank * num_workers + worker, self.world_size * num_workers
        )
        samples = _shuffled(tar_samples(schedule), self.shuffle_buffer, rng)
        batches = _batches(self._items(samples, rng), self.batch_size)
        share = self.steps // num_workers + (1 if worker < self.steps % num_workers else 0)
        return itertools.islice(batches, share)

    def _items(self, samples: Iterator[dict[str, Any]], rng: np.random.Generator) -> Iterator[_Item]:
        skipped = 0
        for sample in samples:
            decoded = decode_sample(sample)
            study = decoded["meta"].get("study_id")
            text = self.embeddings.get(study)
            if text is None:
                skipped += 1
                log.warning("skipped %s: study %s has no text embedding (%d skipped in this stream)",
                            decoded["key"], study, skipped)
                continue
            # CPU generator only: torch.manual_seed would also reseed (and not restore) CUDA generators
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(int(rng.integers(2**63)))
                view1, view2 = self.transform(decoded["image"]), self.transform(decoded["image"])
            yield _Item(view1, view2, text, int(study))


def _shard_schedule(shards: Sequence[str], seed: int, epoch: int, stream: int, n_streams: int) -> Iterator[str]:
    """Endless shards for one stream: every ``n_streams``-th of concatenated shuffled passes."""
    position = 0
    for pass_index in itertools.count():
        for index in np.random.default_rng([seed, epoch, pass_index]).permutation(len(shards)):
            if position % n_streams == stream:
                yield shards[index]
            position += 1


def _shuffled(items: Iterator[Any], size: int, rng: np.random.Generator) -> Iterator[Any]:
    """Shuffle a stream through a buffer of ``size`` items (no shuffling when ``size`` <= 1)."""
    if size <= 1:
        yield from items
        return
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = int(rng.integers(size))
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def _stacked(vectors: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(vectors).astype(np.float32))


def _embedding_batch(texts: Sequence[StudyText]) -> dict[str, torch.Tensor]:
    zeros = np.zeros(texts[0].impression.shape[0], dtype=np.float32)
    return {
        "findings_emb": _stacked([text.findings if text.has_findings else zeros for text in texts]),
        "impression_emb": _stacked([text.impression for text in texts]),
    }


def _batches(items: Iterator[_Item], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of views and texts: embeddings (``*_emb``), or token ids and their masks."""
    while len(chunk := list(itertools.islice(items, batch_size))) == batch_size:
        texts = [item.text for item in chunk]
        tokens = texts[0].is_tokens
        batch = {
            "view1": torch.stack([item.view1 for item in chunk]),
            "view2": torch.stack([item.view2 for item in chunk]),
            **(token_batch(texts, SECTIONS) if tokens else _embedding_batch(texts)),
            "has_findings": torch.tensor([text.has_findings for text in texts], dtype=torch.bool),
            "study_id": torch.tensor([item.study_id for item in chunk], dtype=torch.int64),
        }
        if texts[0].report is not None:
            report = [text.report for text in texts]
            batch.update(token_batch(texts, [REPORT]) if tokens else {"report_emb": _stacked(report)})
        yield batch
