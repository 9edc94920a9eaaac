"""The timed parts of the GPU check: pretraining and text embedding throughput.

Each function returns plain JSON-ready dicts. Rates are counted after unmeasured warm-up steps, between
two device synchronisations; peak memory is ``torch.cuda.max_memory_allocated`` since the last reset.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from imitate.embed.embeddings import EmbedSettings, embed_sections
from imitate.embed.encoder import load_encoder
from imitate.train.data import build_pretrain_loader, load_embeddings
from imitate.train.pretrain import ShardSplit
from imitate.train.settings import PretrainConfig
from imitate.train.trainer import Batch, Trainer

PROFILE_ROWS = 15
PROFILE_STEPS = 5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed_steps(trainer: Trainer, batches: Iterable[Batch], warmup: int, steps: int) -> dict[str, float]:
    """Images/s of ``steps`` training steps after ``warmup`` (two views per pair), and the share of the
    time spent waiting for the next batch (the step ends in a host sync, so that wait idles the GPU)."""
    batches = iter(batches)
    start = time.perf_counter()
    for batch in itertools.islice(batches, warmup):
        trainer.train_step(batch)
    _sync(trainer.device)
    warmup_seconds = time.perf_counter() - start
    start, waited, pairs = time.perf_counter(), 0.0, 0
    for _ in range(steps):
        asked = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - asked
        trainer.train_step(batch)
        pairs += batch["view1"].shape[0]
    _sync(trainer.device)
    seconds = time.perf_counter() - start
    return {"images_per_s": 2 * pairs / seconds, "pairs_per_s": pairs / seconds, "data_wait_share": waited / seconds,
            "warmup_seconds": warmup_seconds}  # a torch.compile happens in the warm-up


def memory_batches(cfg: PretrainConfig, dim: int, device: torch.device) -> Iterator[Batch]:
    """The loader's batch, made once on the device and repeated: what the model alone can do.

    With ``cfg.crop_only`` the views are uint8 crops (the trainer augments them, as in the real loop);
    otherwise normalised float views, as the loader's CPU augmentations deliver them.
    """
    g = torch.Generator(device=device).manual_seed(0)
    n, size = cfg.batch_size, cfg.crop_size

    def view() -> torch.Tensor:
        if cfg.crop_only:
            return torch.randint(0, 256, (n, 1, size, size), generator=g, device=device, dtype=torch.uint8)
        return torch.randn(n, 3, size, size, generator=g, device=device)

    batch = {
        "view1": view(),
        "view2": view(),
        "findings_emb": torch.randn(n, dim, generator=g, device=device),
        "impression_emb": torch.randn(n, dim, generator=g, device=device),
        "has_findings": torch.ones(n, dtype=torch.bool, device=device),
    }
    return itertools.repeat(batch)


def pretrain_throughput(
    cfg: PretrainConfig,
    shards_manifest: Path,
    embeddings_path: Path,
    *,
    warmup: int,
    steps: int,
    profile_below: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """(b) the trainer on in-memory batches, then (a) the real loop from shards with loader workers.

    The same :class:`Trainer` serves both (one ``torch.compile`` per run). ``profile_below``
    (``images_per_s``, ``efficiency``): when (a) misses either, a few more steps of (a) run under
    ``torch.profiler`` and the busiest operators go into the result.
    """
    device = torch.device(cfg.device)
    embeddings = load_embeddings(embeddings_path)
    dim = next(iter(embeddings.values())).impression.shape[0]
    cfg = replace(cfg, model=replace(cfg.model, text_dim=dim))
    split = ShardSplit.from_manifest(shards_manifest, "train")
    torch.manual_seed(cfg.seed)
    _reset_peak(device)
    trainer = Trainer(cfg, device, total_steps=10 * (warmup + steps))
    model = timed_steps(trainer, memory_batches(cfg, dim, device), warmup, steps)
    # the schedule of shards is endless: num_samples only sets how many batches this loader yields
    batches_needed = warmup + steps + 1 + PROFILE_STEPS
    loader = build_pretrain_loader(
        [str(p) for p in split.paths], embeddings, crop_size=cfg.crop_size, batch_size=cfg.batch_size,
        num_samples=batches_needed * cfg.batch_size, workers=cfg.workers, seed=cfg.seed, epoch=0,
        augment=cfg.augment, rotation_degrees=cfg.rotation_degrees, crop_only=cfg.crop_only,
    )
    batches = iter(loader)
    pipeline = timed_steps(trainer, batches, warmup, steps)
    result: dict[str, Any] = {
        "compile": cfg.compile,
        "model_in_memory": model,
        "pipeline_from_shards": pipeline,
        "efficiency": pipeline["images_per_s"] / model["images_per_s"],
        "peak_gpu_memory_gib": _peak_gib(device),
        "train_images_in_shards": split.num_samples,
        "last_loss": trainer.train_step(next(batches))["total_loss"],  # None when it was not finite
    }
    limits = profile_below or {}
    if pipeline["images_per_s"] < limits.get("images_per_s", 0) or result["efficiency"] < limits.get("efficiency", 0):
        result["profile"] = profile_steps(trainer, batches, steps=PROFILE_STEPS)
    return result


def profile_steps(trainer: Trainer, batches: Iterator[Batch], steps: int) -> dict[str, Any]:
    """``torch.profiler`` over ``steps`` steps of the real loop: the operators that took the most time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if trainer.cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            with torch.profiler.record_function("next_batch"):
                batch = next(batches)
            trainer.train_step(batch)
        _sync(trainer.device)
    events = prof.key_averages()

    def device_us(event: Any) -> float:
        return float(getattr(event, "self_device_time_total", getattr(event, "self_cuda_time_total", 0.0)))

    def row(event: Any) -> dict[str, Any]:
        return {"op": event.key, "calls": event.count, "self_cpu_ms": event.self_cpu_time_total / 1e3,
                "self_device_ms": device_us(event) / 1e3}

    by_device = sorted(events, key=device_us, reverse=True)[:PROFILE_ROWS] if trainer.cuda else []
    by_cpu = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:PROFILE_ROWS]
    wait = next((e for e in events if e.key == "next_batch"), None)
    return {
        "steps": steps,
        "next_batch_cpu_ms": wait.cpu_time_total / 1e3 if wait is not None else None,
        "top_device_ops": [row(e) for e in by_device],
        "top_cpu_ops": [row(e) for e in by_cpu],
    }


def text_throughput(encoder_dir: Path, sections: pa.Table, *, device: str, batch_size: int) -> dict[str, Any]:
    """The embed stage (normalise, deduplicate, length-sorted batches) over ``sections``, after a warm-up."""
    torch_device = torch.device(device)
    encoder = load_encoder(str(encoder_dir), device=device)
    settings = EmbedSettings(batch_size=batch_size)
    embed_sections(sections.slice(0, min(64, sections.num_rows)), encoder, settings, device)  # warm-up
    _sync(torch_device)
    _reset_peak(torch_device)
    start = time.perf_counter()
    table, counts = embed_sections(sections, encoder, settings, device)
    _sync(torch_device)
    seconds = time.perf_counter() - start
    return {
        "reports": sections.num_rows,
        "texts": counts.n_texts,
        "distinct_texts": counts.n_unique,
        "longest_tokens": counts.longest_tokens,
        "truncated": counts.n_truncated,
        "texts_per_s": counts.n_texts / seconds,
        "distinct_texts_per_s": counts.n_unique / seconds,
        "seconds": seconds,
        "dim": encoder.dim,
        "rows_out": table.num_rows,
        "peak_gpu_memory_gib": _peak_gib(torch_device),
    }
