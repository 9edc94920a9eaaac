"""Images of WebDataset shards read by key, as labelled torch datasets and seeded epoch loaders.

Why random access rather than streaming: a training subset (1 % or 10 % of ChestX-ray14) is scattered
over every train shard. Streaming would read and skip all the other images each epoch and could only
shuffle within a buffer; reading by key fetches just the subset's bytes and shuffles the whole subset.
Nothing decoded is kept between items, so memory does not grow with the dataset (ChestX-ray14's train
split at 256 px is ~5.6 GB of uint8). The shards are plain uncompressed tars
(:func:`imitate.shards.writer.write_shards`), so each image is a byte range found once from the tar
headers by :func:`index_shard_images`.

Randomness: the order of an epoch is a permutation drawn from ``(seed, epoch)``, and the augmentation of
item ``i`` is drawn from ``(seed, epoch, i)`` inside ``torch.random.fork_rng``, so batches do not
depend on the number of DataLoader workers nor on the caller's RNG state.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from imitate.shards.reader import IMAGE_EXTENSIONS, decode_image

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImageMember:
    """Where one sample's image bytes lie: its shard and the byte range inside the tar."""

    shard: Path
    offset: int
    size: int


def index_shard_images(shards: Sequence[str | Path]) -> dict[str, ImageMember]:
    """The image of every sample of ``shards`` by key (ValueError on a key found twice)."""
    index: dict[str, ImageMember] = {}
    for shard in map(Path, shards):
        try:
            with tarfile.open(shard, "r:") as tar:
                members = [m for m in tar if m.isfile()]
        except (OSError, tarfile.TarError) as exc:
            raise ValueError(f"{shard}: unreadable shard: {exc}") from exc
        for member in members:
            # shard keys never contain a dot (imitate.shards.plan), so the first dot starts the extension
            key, _, extension = member.name.partition(".")
            if extension not in IMAGE_EXTENSIONS:
                continue
            if key in index:
                raise ValueError(f"{shard}: sample {key!r} has a second image (first in {index[key].shard})")
            index[key] = ImageMember(shard, member.offset_data, member.size)
    return index


def read_image(member: ImageMember, key: str) -> np.ndarray:
    """The decoded uint8 H x W image of ``key``."""
    with open(member.shard, "rb") as stream:
        stream.seek(member.offset)
        data = stream.read(member.size)
    return decode_image(data, f"{member.shard}: sample {key!r}")


class LabelledImages(Dataset):
    """Shard images with labels: item ``(epoch, i)`` is ``keys[i]``'s transformed image and ``labels[i]``.

    The transform's random draws come from ``(seed, epoch, i)``; labels are float32.
    """

    def __init__(
        self,
        keys: Sequence[str],
        labels: np.ndarray,
        index: Mapping[str, ImageMember],
        transform: Transform,
        *,
        seed: int,
    ) -> None:
        missing = [k for k in keys if k not in index]
        if missing:
            raise KeyError(f"images {missing[:5]} are not in the shards ({len(missing)} missing)")
        if len(labels) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(labels)} label rows")
        self.keys = list(keys)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.float32))
        self.members = [index[k] for k in self.keys]
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = item
        image = torch.from_numpy(read_image(self.members[i], self.keys[i]))
        item_seed = int(np.random.SeedSequence([self.seed, epoch, i]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):  # torchvision's random transforms draw from the global RNG
            torch.manual_seed(item_seed)
            return self.transform(image), self.labels[i]


def epoch_loader(
    images: Dataset,
    *,
    epoch: int,
    batch_size: int,
    workers: int,
    shuffle: bool,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """Batches of ``images`` for one epoch: all items in order, or a seeded permutation when ``shuffle``.

    ``images`` takes ``(epoch, i)`` items and has a ``seed`` (e.g. :class:`LabelledImages`). A shuffled
    epoch leaves out a last batch of one image, on which BatchNorm cannot train.
    """
    batches = [[(epoch, i) for i in rows] for rows in epoch_batches(len(images), images.seed, epoch, batch_size,
                                                                  shuffle=shuffle)]
    return DataLoader(images, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      collate_fn=collate_fn)


def epoch_batches(n: int, seed: int, epoch: int, batch_size: int, *, shuffle: bool) -> list[list[int]]:
    """The item indices of each batch of one epoch: in order, or a permutation drawn from ``(seed, epoch)``
    without a last batch of one image when ``shuffle`` (BatchNorm cannot train on one image)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist() if shuffle else list(range(n))
    batches = [order[start:start + batch_size] for start in range(0, n, batch_size)]
    if shuffle and batches and len(batches[-1]) == 1:
        batches.pop()
    return batches
