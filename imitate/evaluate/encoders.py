"""Frozen vision encoders for downstream evaluation: torchvision ResNets with ``fc`` removed."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger(__name__)

BACKBONES = ("resnet18", "resnet34", "resnet50")


def build_resnet(backbone: str) -> nn.Module:
    """A torchvision ResNet without weights, with its classifier replaced by the identity."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    model = getattr(torchvision.models, backbone)(weights=None)
    model.fc = nn.Identity()
    return model


def load_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Load a torchvision-keyed state_dict (safetensors) into ``model``: every key must match."""
    state = load_file(str(path))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path}: encoder weights do not fit the backbone "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


def frozen_encoder(method: str, backbone: str, *, weights: str | Path | None, seed: int) -> nn.Module:
    """The encoder a method evaluates: ``random_init`` (seeded) or pretrained ``weights``; eval mode, frozen."""
    torch.manual_seed(seed)
    model = build_resnet(backbone)
    if method == "random_init":
        log.info("%s: randomly initialised %s (seed %d)", method, backbone, seed)
    else:
        if weights is None:
            raise ValueError(f"method {method!r} needs encoder weights")
        load_encoder_weights(model, weights)
        log.info("%s: %s weights from %s", method, backbone, weights)
    return model.eval().requires_grad_(False)
