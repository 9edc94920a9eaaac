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
from imitate.train.text import FINAL_KEY, ImageText, TextLayers
from imitate.train.tokens import TOKEN_INPUTS

log = logging.getLogger(__name__)

Batch = Mapping[str, Tensor]
MODEL_INPUTS = ("view1", "view2", "findings_emb", "impression_emb", "has_findings", "report_emb")


def param_groups(model: nn.Module, weight_decay: float, decay_1d: bool) -> list[dict[str, Any]]:
    """Matrices and conv kernels, then biases and norm scales (1-D), decayed only with ``decay_1d``.

    Two groups either way, so that an optimizer state loads whatever the switch; AdamW decays each
    parameter by its own group's rate, so two groups at one rate update as one group would.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": weight_decay if decay_1d else 0.0},
    ]


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Trainer:
    """Model, loss, optimizer and schedule of one run, with its step and skip counters.

    Under ``torchrun`` (``ranks.distributed``) the model runs wrapped in DDP; with ``gather: global``
    the loss gathers every rank's features, so the negatives and the correlation prior span the global
    batch, with ``local`` (the official) each rank's loss spans its own batch; whether a
    step is skipped is agreed by all ranks, so they never diverge. With ``text`` (``cfg.text_unfreeze``
    > 0) the batches hold token ids, and the model and the text layers are one module (``module``,
    wrapped in DDP together); the text layers train in their own parameter groups at ``text_lr``.
    """

    def __init__(
        self,
        cfg: PretrainConfig,
        device: torch.device,
        total_steps: int,
        ranks: Ranks | None = None,
        text: TextLayers | None = None,
    ) -> None:
        if (text is not None) != (cfg.text_unfreeze > 0):
            raise ValueError(f"text_unfreeze = {cfg.text_unfreeze} needs text layers exactly when it is > 0")
        self.cfg, self.device, self.text = cfg, device, text
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
        self.module: nn.Module = self.model if text is None else ImageText(self.model, text)
        self.net: nn.Module = self.module
        if self.ranks.distributed:
            # ablations that switch terms off leave projectors unused: DDP must then not wait for them
            partial = set(cfg.loss.terms) != set(TERMS) or cfg.loss.alignment != "hierarchical"
            self.net = DistributedDataParallel(
                self.module, device_ids=[self.ranks.local_rank] if self.cuda else None, find_unused_parameters=partial
            )
        self.loss = ImitateLoss(
            cfg.loss, rank=self.ranks.rank, world_size=self.ranks.world_size, distributed=self.ranks.distributed
        )
        groups = param_groups(self.model, cfg.weight_decay, cfg.decay_1d)
        if text is not None:
            text_groups = param_groups(text, cfg.weight_decay, cfg.decay_1d)
            groups += [{**group, "lr": cfg.text_layers_lr} for group in text_groups]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        self.scheduler = warmup_cosine(self.optimizer, total_steps, cfg.warmup_fraction)
        self.step = 0
        self.skipped = 0
        self.consecutive_skips = 0
        # draws the batch augmentations of uint8 views (the loader's crop_only mode); one stream per rank
        self.augment_rng = torch.Generator(device=device).manual_seed(cfg.seed * 65_537 + self.ranks.rank)
        counts = self.trainable_parameters()
        log.info(
            "trainable parameters: %.2f M image + %.2f M text (text projector and %d text encoder layers)",
            counts["image"] / 1e6, counts["text"] / 1e6, cfg.text_unfreeze,
        )

    def trainable_parameters(self) -> dict[str, int]:
        """Trained parameters by side: image (E_v, P(·), the vision projectors) and text (the text
        projector and the unfrozen text layers): Table XI's "trainable parameters" column."""
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters() if p.requires_grad)

        text = count(self.model.text_proj) + (0 if self.text is None else count(self.text))
        return {"image": count(self.model) - count(self.model.text_proj), "text": text}

    def _losses(self, batch: Batch, augment_rng: torch.Generator) -> dict[str, Tensor]:
        keys = MODEL_INPUTS if self.text is None else TOKEN_INPUTS
        inputs = {k: batch[k].to(self.device, non_blocking=True) for k in keys if k in batch}
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
        lrs = [group["lr"] for group in self.optimizer.param_groups]
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
                norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg.grad_clip)
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
        record = {"type": "step", "step": self.step, "lr": lrs[0], "skipped": not finite, **values}
        if self.text is not None:
            record["text_lr"] = lrs[-1]
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
            **({} if self.text is None else {FINAL_KEY: self.text.trainable_state()}),
            **progress.as_state(),
        }

    def restore(self, state: Mapping[str, Any], path: Path, text: Mapping[str, Any]) -> Progress:
        """Continue from a :meth:`state` saved by a run with the same config and text embeddings."""
        check_same_config(state["config"], asdict(self.cfg), path)
        check_facts(text, state["text_embeddings"], "the embeddings given", str(path))
        self.model.load_state_dict(state["model"])
        if self.text is not None:
            self.text.load_trainable_state(state[FINAL_KEY], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.skipped = state["step"], state["skipped_steps"]
        self.consecutive_skips = state["consecutive_skips"]
        set_rng_state(state["rng"])
        self.augment_rng.set_state(state["augment_rng"])
        return Progress.from_state(state)
