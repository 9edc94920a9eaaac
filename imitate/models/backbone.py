"""Torchvision ResNet exposing its four stages, features_only-style (timm's ``feature_info`` convention).

The module keeps torchvision's attribute names (``conv1``, ``bn1``, ``layer1`` … ``layer4``) and drops
``fc``, so its ``state_dict`` is a plain torchvision ResNet state_dict without the classifier: downstream
code loads it with ``resnet50(weights=None).load_state_dict(sd, strict=False)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import (
    ResNet,
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    WeightsEnum,
    resnet18,
    resnet34,
    resnet50,
)

from imitate.models.weights import read_state_dict

log = logging.getLogger(__name__)

# name -> (constructor, ImageNet weights). IMAGENET1K_V1 is what ``pretrained=True`` gave the official code.
BACKBONES: dict[str, tuple[Callable[..., ResNet], WeightsEnum]] = {
    "resnet18": (resnet18, ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (resnet34, ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (resnet50, ResNet50_Weights.IMAGENET1K_V1),
}
STAGES = ("layer1", "layer2", "layer3", "layer4")
STAGE_REDUCTIONS = (4, 8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature level: the stage's module name, its channel count and its stride w.r.t. the input."""

    name: str
    channels: int
    reduction: int


def imagenet_weights_path(name: str) -> Path:
    """Where torchvision's cache keeps the ImageNet weights of backbone ``name``."""
    url = BACKBONES[name][1].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def init_file(name: str, init: str) -> Path | None:
    """The file ``init`` reads for backbone ``name`` (None for ``none``), e.g. to hash in provenance."""
    if init == "none":
        return None
    return imagenet_weights_path(name) if init == "imagenet" else Path(init)


def resolve_init(name: str, init: str) -> dict[str, Tensor] | None:
    """The state_dict that ``init`` names (``none`` -> None). Never downloads.

    ``imagenet`` reads torchvision's weights from the local torch cache; anything else is a path to a
    torchvision ResNet state_dict (``.pth``/``.pt`` or ``.safetensors``, with or without ``fc``; read by
    :func:`imitate.models.weights.read_state_dict`, so also under a Lightning ``state_dict`` key).
    """
    path = init_file(name, init)
    if path is None:
        return None
    if init == "imagenet" and not path.is_file():
        raise FileNotFoundError(
            f"{path}: ImageNet weights for {name} are not in the local torch cache and are never "
            f"downloaded at run time; fetch {BACKBONES[name][1].url} and place the file at that path "
            "(or set TORCH_HOME), or use init: none"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone init file not found")
    return read_state_dict(path)


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without ``fc``: four stage outputs plus the globally pooled last stage."""

    def __init__(self, name: str = "resnet50", init: str = "none") -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(BACKBONES)}")
        net = BACKBONES[name][0](weights=None)
        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_info = [
            FeatureInfo(stage, _out_channels(getattr(self, stage)), reduction)
            for stage, reduction in zip(STAGES, STAGE_REDUCTIONS, strict=True)
        ]
        self.num_features = self.feature_info[-1].channels
        self._load_init(init)

    def _load_init(self, init: str) -> None:
        state = resolve_init(self.name, init)
        if state is None:
            log.info("backbone %s: random init", self.name)
            return
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{init}: not a torchvision {self.name} state_dict "
                f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
            )
        log.info("backbone %s: initialised from %s", self.name, init)

    def forward_features(self, x: Tensor, *, stem: bool = False) -> list[Tensor]:
        """The outputs of ``layer1`` … ``layer4`` (channels and strides as in ``feature_info``), after the
        stem's (``conv1``-``bn1``-ReLU, stride 2, before the max-pooling; U-Net's shallowest skip) if ``stem``."""
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x] if stem else []
        x = self.maxpool(x)
        for stage in STAGES:
            x = getattr(self, stage)(x)
            features.append(x)
        return features

    @staticmethod
    def pool(feature: Tensor) -> Tensor:
        """Global average pooling of a B×C×H×W map to B×C (torchvision's ``avgpool`` + flatten)."""
        return feature.mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """The pooled last-stage feature, B×``num_features``."""
        return self.pool(self.forward_features(x)[-1])

    def export_torchvision_state_dict(self) -> dict[str, Tensor]:
        """A detached copy of the weights under plain torchvision ResNet keys (no ``fc``)."""
        return {k: v.detach().clone().contiguous().cpu() for k, v in self.state_dict().items()}


def _out_channels(stage: nn.Sequential) -> int:
    last = stage[-1]
    bn = last.bn3 if hasattr(last, "bn3") else last.bn2
    return bn.num_features
