"""The hierarchical aggregation block P(·) of IMITATE (paper §III-C): multi-level features -> one vector.

Per stage a random subset of channels is kept (intermediate channel dropping); every kept channel map
is adaptive-average-pooled to ``token_size``×``token_size`` and flattened into one token, so a token is
a channel and the sequence length is the number of kept channels over all stages. A learnable
positional embedding and a [CLS] token are added, one multi-head self-attention layer with a residual
connection mixes the tokens, and the [CLS] output is the multi-level feature.

Choices against the official code (cheliu-computation/IMITATE-TMI2024, ``IMITATE_MaskScale``):

* Channel draws default to one draw per batch *without* replacement; the official draws once per batch
  *with* replacement (``torch.randint``), which can keep a channel twice. Both, and per-sample draws, are
  configurable.
* No zero-padding of the sequence to 512 tokens (the official pads and lets the pads take part in the
  attention); the positional embedding covers exactly the kept tokens.
* [CLS] is the first token (the official appends it last; with a learned positional embedding and no
  mask the order does not matter). [CLS] and the positional embedding start at zero as in the official,
  so at initialisation the attention is uniform and [CLS] reads the mean token.
* No LayerNorm by default, as the official; ``layer_norm=True`` adds a post-residual LayerNorm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ChannelSampling = Literal["batch", "sample"]


def kept_channels(channels: int, keep_ratio: float) -> int:
    """How many of ``channels`` a stage keeps: ``int(channels * keep_ratio)`` (as the official), >= 1."""
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep ratio must be in (0, 1], got {keep_ratio}")
    return max(1, int(channels * keep_ratio))


def draw_channels(
    batch: int, channels: int, keep: int, *, per_sample: bool, replacement: bool, device: torch.device
) -> Tensor:
    """Indices of the kept channels: ``keep`` (shared by the batch) or ``batch×keep`` (per sample)."""
    shape = (batch, channels) if per_sample else (channels,)
    if replacement:
        return torch.randint(channels, (*shape[:-1], keep), device=device)
    return torch.rand(shape, device=device).argsort(dim=-1)[..., :keep]


def select_channels(feature: Tensor, index: Tensor) -> Tensor:
    """``feature[:, index]`` for a shared index, or a per-sample gather for a B×K index."""
    if index.dim() == 1:
        return feature.index_select(1, index)
    b, _, h, w = feature.shape
    return feature.gather(1, index[:, :, None, None].expand(b, index.shape[1], h, w))


class HierarchicalAggregation(nn.Module):
    """P(·): a list of B×C_i×H_i×W_i stage outputs -> B×``attn_dim`` ([CLS] after one MHSA layer)."""

    def __init__(
        self,
        channels: Sequence[int],
        keep_ratios: Sequence[float],
        *,
        token_size: int = 16,
        attn_dim: int = 256,
        heads: int = 4,
        sampling: ChannelSampling = "batch",
        replacement: bool = False,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != len(keep_ratios):
            raise ValueError(f"{len(channels)} feature levels but {len(keep_ratios)} keep ratios")
        if sampling not in ("batch", "sample"):
            raise ValueError(f"channel sampling must be 'batch' or 'sample', got {sampling!r}")
        self.channels = tuple(channels)
        self.keep = tuple(kept_channels(c, r) for c, r in zip(channels, keep_ratios, strict=True))
        self.per_sample = sampling == "sample"
        self.replacement = replacement
        self.token_size = token_size
        self.num_tokens = sum(self.keep)
        token_dim = token_size * token_size
        self.token_proj = nn.Linear(token_dim, attn_dim) if token_dim != attn_dim else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, attn_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens + 1, attn_dim))
        self.attn = nn.MultiheadAttention(attn_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(attn_dim) if layer_norm else nn.Identity()

    def tokens(self, features: Sequence[Tensor]) -> Tensor:
        """B×N×(token_size²): one token per kept channel, stages in order."""
        if len(features) != len(self.channels):
            raise ValueError(f"expected {len(self.channels)} feature levels, got {len(features)}")
        out = []
        for feature, keep in zip(features, self.keep, strict=True):
            index = draw_channels(
                feature.shape[0],
                feature.shape[1],
                keep,
                per_sample=self.per_sample,
                replacement=self.replacement,
                device=feature.device,
            )
            pooled = F.adaptive_avg_pool2d(select_channels(feature, index), self.token_size)
            out.append(pooled.flatten(2))
        return torch.cat(out, dim=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """The [CLS] output for a fresh random channel draw."""
        x = self.token_proj(self.tokens(features))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        # Only the [CLS] row of the self-attention output is used, so it is the only query: the same
        # value as full self-attention, at O(N) instead of O(N²).
        cls = x[:, :1]
        return self.norm(cls + self.attn(cls, x, x, need_weights=False)[0])[:, 0]
