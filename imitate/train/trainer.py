"""One optimisation step at a time: model, loss, AdamW and schedule, with skip counting and state."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from imitate.embed.store import check_facts
from imitate.images.transforms import augment_batch
from imitate.losses import ImitateLoss
from imitate.losses.imitate_loss import TERMS
from imitate.models import ImitateModel
from imitate.train.checkpoint import rng_state, set_rng_state
from imitate.train.distributed import Ranks, any_rank
from imitate.train.progress import Progress, check_same_config
from imitate.train.schedule import warmup_cosine
from imitate.train.settings import PretrainConfig

log = logging.getLogger(__name__)

Batch = Mapping[str, Tensor]
MODEL_INPUTS = ("view1", "view2", "findings_emb", "impression_emb", "has_findings", "report_emb")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and conv kernels only; biases and norm scales (1-D) are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Trainer:
    """Model, loss, optimizer and schedule of one run, with its step and skip counters.

    Under ``torchrun`` (``ranks.distributed``) the model runs wrapped in DDP and the loss gathers
    every rank's features, so the negatives and the correlation prior span the global batch; whether a
    step is skipped is agreed by all ranks, so they never diverge.
    """

    def __init__(
        self, cfg: PretrainConfig, device: torch.device, total_steps: int, ranks: Ranks | None = None
    ) -> None:
        self.cfg, self.device = cfg, device
        self.ranks = ranks or Ranks()
        self.cuda = device.type == "cuda"
        self.model = ImitateModel(cfg.model).to(device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.compile:
            # the ResNet holds nearly all the FLOPs; the whole model does not compile under torch 2.14,
            # which rejects the projectors' BatchNorm statistics being updated twice in one graph
            backbone = self.model.backbone
            backbone.forward_features = torch.compile(backbone.forward_features)
        self.net: nn.Module = self.model
        if self.ranks.distributed:
            # ablations that switch terms off leave projectors unused: DDP must then not wait for them
            partial = set(cfg.loss.terms) != set(TERMS) or cfg.loss.alignment != "hierarchical"
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.ranks.local_rank] if self.cuda else None, find_unused_parameters=partial
            )
        self.loss = ImitateLoss(
            cfg.loss, rank=self.ranks.rank, world_size=self.ranks.world_size, gather=self.ranks.distributed
        )
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        self.scheduler = warmup_cosine(self.optimizer, total_steps, cfg.warmup_fraction)
        self.step = 0
        self.skipped = 0
        self.consecutive_skips = 0
        # draws the batch augmentations of uint8 views (the loader's crop_only mode); one stream per rank
        self.augment_rng = torch.Generator(device=device).manual_seed(cfg.seed * 65_537 + self.ranks.rank)

    def _losses(self, batch: Batch, augment_rng: torch.Generator) -> dict[str, Tensor]:
        inputs = {k: batch[k].to(self.device, non_blocking=True) for k in MODEL_INPUTS if k in batch}
        for view in ("view1", "view2"):
            if inputs[view].dtype == torch.uint8:  # only cropped so far: augment here, on the device
                inputs[view] = augment_batch(
                    inputs[view], rotation_degrees=self.cfg.rotation_degrees, generator=augment_rng
                )
        if self.cuda:
            for view in ("view1", "view2"):
                inputs[view] = inputs[view].contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()
        with autocast:
            return self.loss(**self.net(**inputs))

    def train_step(self, batch: Batch) -> dict[str, Any]:
        """One optimisation step, or a counted skip that leaves the model as it was; returns its record."""
        lr = self.optimizer.param_groups[0]["lr"]
        # BatchNorm updates its running statistics in the forward pass: keep them to undo a skipped step
        buffers = [b.detach().clone() for b in self.model.buffers()]
        losses = self._losses(batch, self.augment_rng)
        total = losses["total_loss"]
        self.optimizer.zero_grad(set_to_none=True)
        finite = not any_rank(not bool(torch.isfinite(total)), self.device)  # every rank skips, or none
        grad_norm = None
        if finite:
            total.backward()
            if self.cfg.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                grad_norm = float(norm)
            self.optimizer.step()
            self.consecutive_skips = 0
        else:
            with torch.no_grad():
                for buffer, saved in zip(self.model.buffers(), buffers, strict=True):
                    buffer.copy_(saved)
            self.skipped += 1
            self.consecutive_skips += 1
            log.warning(
                "step %d: non-finite loss %s, update skipped (%d so far)", self.step, total.item(), self.skipped
            )
        self.scheduler.step()
        self.step += 1
        values = {k: finite_or_none(v.item()) for k, v in losses.items()}
        record = {"type": "step", "step": self.step, "lr": lr, "skipped": not finite, **values}
        if grad_norm is not None:
            record["grad_norm"] = finite_or_none(grad_norm)  # before clipping
        if self.cuda:
            record["gpu_max_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return record

    @torch.no_grad()
    def validate(self, batches: Iterable[Batch]) -> dict[str, float]:
        """Sample-weighted mean of every loss term, in eval mode, with channel draws seeded by the run."""
        self.model.eval()
        sums: dict[str, float] = {}
        n = 0
        devices = []
        if self.cuda:
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        augment_rng = torch.Generator(device=self.device).manual_seed(self.cfg.seed)
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed)
            for batch in batches:
                size = batch["view1"].shape[0]
                for k, v in self._losses(batch, augment_rng).items():
                    sums[k] = sums.get(k, 0.0) + v.item() * size
                n += size
        self.model.train()
        if n == 0:
            raise ValueError("validation loader yielded no batches")
        return {k: v / n for k, v in sums.items()}

    def state(self, progress: Progress, text: Mapping[str, Any]) -> dict[str, Any]:
        """Everything needed to continue at ``progress``, as plain containers and tensors."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "skipped_steps": self.skipped,
            "consecutive_skips": self.consecutive_skips,
            "rng": rng_state(),
            "augment_rng": self.augment_rng.get_state(),
            "config": asdict(self.cfg),
            "text_embeddings": dict(text),
            **progress.as_state(),
        }

    def restore(self, state: Mapping[str, Any], path: Path, text: Mapping[str, Any]) -> Progress:
        """Continue from a :meth:`state` saved by a run with the same config and text embeddings."""
        check_same_config(state["config"], asdict(self.cfg), path)
        check_facts(text, state["text_embeddings"], "the embeddings given", str(path))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.skipped = state["step"], state["skipped_steps"]
        self.consecutive_skips = state["consecutive_skips"]
        set_rng_state(state["rng"])
        self.augment_rng.set_state(state["augment_rng"])
        return Progress.from_state(state)
