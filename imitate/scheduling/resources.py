"""Memory (MB) and wall time (minutes) of the workflow's jobs, from measured rates and sizes.

Every figure below is a measurement of docs/benchmarks.md (the section is named beside it) or, where no
measurement exists yet, a stated guess below the project's target. Estimates are doubled (``MARGIN``:
shared machines vary by 10-20 %, real data is not the benchmark's), get ``BASE_MINUTES`` for start-up
and I/O, and grow with Snakemake's ``attempt``, so that a job killed for its memory or time asks for
twice as much on its first retry. A job whose input is not written yet has no row count: ``rows``
raises FileNotFoundError naming the file, which Snakemake shows as ``<TBD>`` in a dry run and evaluates
once the input exists.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.parquet as pq

MARGIN = 2
BASE_MINUTES = 10
# light jobs (tables, plots, catalog, demo writers): the tiny run's benchmarks show 120-430 MB, 1-6 s
LIGHT_MB, LIGHT_MINUTES = 1000, 10
# a job that imports torch and holds one model (export, evaluation): 1.0-1.3 GB in the tiny run
TORCH_MB = 2000
# a stage with a process pool (sections, shards): the main process and each worker. Measured
# 2026-12-03 with a process-tree RSS sampler: shards on full-size MIMIC-format JPEG/DICOM, 166 MB per
# worker; sections on 60,000 reports, 560 MB for the main process and 2 workers.
POOL_MAIN_MB, POOL_WORKER_MB = 500, 200
# images/s of one shard-writing process on full-size radiographs ("Image shards": 21.8-23.7)
SHARD_RATE = 20
# a DataLoader worker beside a torch job (pretraining, evaluation): a guess, 1 GB each
LOADER_WORKER_MB = 1000
# texts/s of the text encoder: per CPU thread, MiniLM-L6 gave 183/s on 2 threads ("Text embeddings"),
# and a BERT-base encoder (the paper's) is about 5x its compute; on a GPU the target is 3,500/s (not
# yet measured): a third of it
EMBED_RATE = {"cpu": 18, "cuda": 1000}
# image pairs/s of pretraining: on the CPU 44.8 at crop 64 with ResNet18 on 2 threads ("Pretraining
# throughput"), scaling with the crop's area, the threads and the backbone's FLOPs; on one GPU the
# target is 1,500 (not yet measured): a third of it
PRETRAIN_CPU_RATE, PRETRAIN_CPU_CROP, PRETRAIN_GPU_RATE = 22.4, 64, 500
BACKBONE_COST = {"resnet18": 1.0, "resnet34": 2.0, "resnet50": 2.3}
# images/s of an evaluation epoch: on the CPU the demo's dense jobs trained ~150 images/s at 64 px on one
# thread ("Quick start with segmentation and detection"); on a GPU fine-tuning ResNet50 at 224 px ran
# 954 images/s ("Quick start with the downstream evaluation", H100)
EVALUATE_RATE = {"cpu": (150, 64), "cuda": (954, 224)}
ONE_PASS_TASKS = ("linear_classification", "zero_shot", "retrieval")  # features once, no encoder training


def rows(path: str | os.PathLike[str]) -> int:
    """Rows of a Parquet file, from its footer (FileNotFoundError naming ``path`` while it is missing)."""
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "not written yet", path)
    return pq.read_metadata(path).num_rows


def gpus(device: str) -> int:
    """The GPUs a job on ``device`` asks for: one on cuda."""
    return 1 if device == "cuda" else 0


def minutes(seconds: float, attempt: int) -> int:
    """Wall time of ``seconds`` of measured-rate work, with the margin and start-up, per attempt."""
    return math.ceil((BASE_MINUTES + MARGIN * seconds / 60) * attempt)


def megabytes(mb: float, attempt: int) -> int:
    """Memory of an ``mb`` estimate, with the margin, per attempt."""
    return math.ceil(MARGIN * mb * attempt)


def pool_mb(processes: int, attempt: int) -> int:
    """Memory of a stage with a pool of ``processes`` workers (sections, shards, demo writers)."""
    return megabytes(POOL_MAIN_MB + POOL_WORKER_MB * processes, attempt)


def shards_minutes(images: int, processes: int, attempt: int) -> int:
    """Wall time of writing ``images`` full-size radiographs into shards with ``processes`` workers."""
    return minutes(images / (SHARD_RATE * processes), attempt)


def embed_minutes(studies: int, device: str, threads: int, attempt: int) -> int:
    """Wall time of embedding the Findings and Impression of ``studies`` studies."""
    rate = EMBED_RATE["cuda"] if device == "cuda" else EMBED_RATE["cpu"] * threads
    return minutes(2 * studies / rate, attempt)


def torch_mb(workers: int, attempt: int, cache_gib: float = 0) -> int:
    """Memory of a torch job with ``workers`` loader processes and ``cache_gib`` of cached activations."""
    return megabytes(TORCH_MB + LOADER_WORKER_MB * workers + 1024 * cache_gib, attempt)


def pretrain_minutes(images: int, pretrain: Mapping[str, Any], backbone: str, gpu: int, attempt: int) -> int:
    """Wall time of ``pretrain.epochs`` over ``images`` image pairs (``gpu`` GPUs, else the job's threads)."""
    if pretrain["device"] == "cuda":
        rate = PRETRAIN_GPU_RATE * max(gpu, 1)
    else:
        area = (PRETRAIN_CPU_CROP / pretrain["crop_size"]) ** 2
        rate = PRETRAIN_CPU_RATE * pretrain["threads"] * area / BACKBONE_COST.get(backbone, 2.3)
    return minutes(pretrain["epochs"] * images / rate, attempt)


def evaluate_minutes(
    task: str, images: int, settings: Mapping[str, Any], size: int, seeds: Sequence[int], fractions: Sequence[float],
    device: str, attempt: int,
) -> int:
    """Wall time of one evaluation job over a dataset of ``images`` at ``size`` px.

    One pass over the images for the tasks that read features once; otherwise a head trained for every
    seed and training subset (``fractions`` in percent of the train split) for at most ``settings["epochs"]``.
    """
    rate, reference = EVALUATE_RATE["cuda" if device == "cuda" else "cpu"]
    rate *= (reference / size) ** 2
    trained = 0 if task in ONE_PASS_TASKS else settings["epochs"] * len(seeds) * sum(fractions) / 100
    return minutes(images * (1 + trained) / rate, attempt)
