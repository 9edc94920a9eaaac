"""A backbone used as a fixed feature extractor: every weight frozen, BatchNorm in eval or in train mode.

The dense tasks (segmentation, detection) train only a decoder or head on the encoder's outputs (paper
§IV-B). ``requires_grad_(False)`` alone leaves BatchNorm to follow ``model.train()``: MGCA, whose dense
protocol the paper follows, freezes exactly so, and its encoder's BatchNorm normalises each training
batch with that batch's statistics and updates its running statistics on the downstream data (its linear
probe puts the backbone in eval mode instead). ``batchnorm`` chooses: ``"eval"`` keeps the loaded running
statistics for good (:meth:`FrozenStages.train` then stays in eval mode); ``"train"`` is MGCA's dense
behaviour. Either way no weight learns.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from imitate.models.backbone import ResNetBackbone

BATCHNORM_MODES = ("eval", "train")
STEM_REDUCTION = 2


def check_batchnorm(mode: str, name: str = "batchnorm") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``mode`` is one of :data:`BATCHNORM_MODES`."""
    if mode not in BATCHNORM_MODES:
        raise ValueError(f"{name} must be one of {BATCHNORM_MODES}, got {mode!r}")


class FrozenStages(nn.Module):
    """The stem's and the four stages' outputs of a frozen :class:`ResNetBackbone` (no gradients)."""

    def __init__(self, backbone: ResNetBackbone, batchnorm: str = "eval") -> None:
        super().__init__()
        check_batchnorm(batchnorm)
        self.batchnorm = batchnorm
        self.backbone = backbone.requires_grad_(False).eval()
        self.channels = (backbone.conv1.out_channels, *(info.channels for info in backbone.feature_info))
        self.reductions = (STEM_REDUCTION, *(info.reduction for info in backbone.feature_info))

    def train(self, mode: bool = True) -> FrozenStages:
        """BatchNorm follows ``mode`` in ``"train"`` mode; in ``"eval"`` mode it stays in eval mode."""
        return super().train(mode and self.batchnorm == "train")

    def with_batchnorm(self, batchnorm: str) -> FrozenStages:
        """A copy (own running statistics, in eval mode until :meth:`train`) whose BatchNorm is ``batchnorm``."""
        check_batchnorm(batchnorm)
        twin = copy.deepcopy(self).eval()
        twin.batchnorm = batchnorm
        return twin

    def forward(self, x: Tensor) -> list[Tensor]:
        """The stem's, then ``layer1`` … ``layer4``'s outputs (channels :attr:`channels`, strides
        :attr:`reductions`); in train mode BatchNorm updates its running statistics."""
        with torch.no_grad():
            return self.backbone.forward_features(x, stem=True)
