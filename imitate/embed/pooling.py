"""The one pooling rule of the text vectors: the embed stage and pretraining's unfrozen text layers both
use it. Torch only, so that importing it does not load transformers."""

from __future__ import annotations

import torch


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The float32 text vector of a last layer's ``hidden`` (B x T x D): [CLS] or attention-masked mean."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {pooling!r} (cls or mean)")
