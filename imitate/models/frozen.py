"""A backbone used as a fixed feature extractor: every weight frozen, BatchNorm always in eval mode.

The dense tasks (segmentation, detection) train only a decoder or head on the encoder's stage outputs
(paper §IV-B). ``requires_grad_(False)`` alone is not enough: ``model.train()`` on the whole model would
put the encoder's BatchNorm layers back in training mode and let their running statistics drift with
the downstream data, so :meth:`FrozenStages.train` keeps them in eval mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imitate.models.backbone import ResNetBackbone


class FrozenStages(nn.Module):
    """The four stage outputs of a frozen :class:`ResNetBackbone` (no gradients, no statistics updates)."""

    def __init__(self, backbone: ResNetBackbone) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(False).eval()
        self.channels = tuple(info.channels for info in backbone.feature_info)
        self.reductions = tuple(info.reduction for info in backbone.feature_info)

    def train(self, mode: bool = True) -> FrozenStages:
        """Stay in eval mode whatever ``mode`` says (the encoder is fixed)."""
        return super().train(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``layer1`` … ``layer4`` outputs (channels :attr:`channels`, strides :attr:`reductions`)."""
        with torch.no_grad():
            return self.backbone.forward_features(x)
