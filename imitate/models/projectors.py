"""Non-linear projectors into the shared embedding space, shaped as in the official code.

Linear -> BatchNorm -> ReLU -> Linear -> BatchNorm(affine=False): the last, parameter-free BatchNorm
standardises every output dimension over the batch before the L2 normalisation of the contrastive loss.
"""

from __future__ import annotations

from torch import nn

TEXT_HIDDEN = 1024


def mlp_projector(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear(in, hidden)-BN-ReLU-Linear(hidden, out)-BN(affine=False)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
        nn.BatchNorm1d(out_dim, affine=False),
    )


def vision_high_projector(channels: int, proj_dim: int) -> nn.Sequential:
    """Pooled last stage (C4) -> C4 -> ``proj_dim``: the high-level visual feature z_{v,h}."""
    return mlp_projector(channels, channels, proj_dim)


def vision_multi_projector(attn_dim: int, proj_dim: int) -> nn.Sequential:
    """[CLS] of P(·) (``attn_dim``) -> ``attn_dim`` -> ``proj_dim``: the multi-level feature z_{v,m}."""
    return mlp_projector(attn_dim, attn_dim, proj_dim)


def text_projector(text_dim: int, proj_dim: int) -> nn.Sequential:
    """Frozen text embedding (D) -> 1024 -> ``proj_dim``; one projector serves Findings and Impression."""
    return mlp_projector(text_dim, TEXT_HIDDEN, proj_dim)
