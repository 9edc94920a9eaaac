"""The vision encoders a downstream task compares: :class:`~imitate.models.backbone.ResNetBackbone`
(a torchvision ResNet without ``fc``), pretraining's own encoder class.

A method (``evaluate.methods.<name>`` in config.yaml) names where its weights come from:
``random`` (seeded initialisation), ``imagenet`` (torchvision's weights from the local torch cache),
``pretrain`` (this pipeline's ``results/pretrain/encoder.safetensors``) or a path to any encoder file:
safetensors, or a torch checkpoint holding a state_dict (under ``state_dict`` for Lightning files).
``prefix`` selects and strips the keys of the ResNet inside a bigger model, e.g. MGCA's
``img_encoder_q.model.``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from imitate.models.backbone import ResNetBackbone, imagenet_weights_path
from imitate.models.files import load_encoder_weights
from imitate.models.frozen import FrozenStages
from imitate.models.weights import read_state_dict

log = logging.getLogger(__name__)

SPECIAL_WEIGHTS = ("random", "imagenet", "pretrain")


@dataclass(frozen=True)
class Method:
    """One compared encoder: its table name, where its weights come from, and a key prefix to strip."""

    name: str
    weights: str
    prefix: str = ""

    @property
    def is_random(self) -> bool:
        """Whether the encoder is a seeded random initialisation (so its results vary with the seed)."""
        return self.weights == "random"


def method_from_config(name: str, entry: Mapping[str, str]) -> Method:
    """A :class:`Method` from its config entry ``{weights, prefix?}``."""
    return Method(name, str(entry["weights"]), str(entry.get("prefix", "")))


def weights_file(method: Method, backbone: str, pretrained: str | Path | None = None) -> Path | None:
    """The file ``method`` loads (None for random); ``pretrained`` is this pipeline's encoder file."""
    if method.weights == "random":
        return None
    if method.weights == "imagenet":
        return imagenet_weights_path(backbone)
    if method.weights == "pretrain":
        if pretrained is None:
            raise ValueError(f"method {method.name!r} evaluates the pretrained encoder: give its file")
        return Path(pretrained)
    return Path(method.weights)


def build_encoder(
    method: Method, backbone: str, *, seed: int, pretrained: str | Path | None = None
) -> ResNetBackbone:
    """``method``'s ResNet (trainable, train mode; its output the pooled last stage, ``num_features``
    wide); random weights are drawn from ``seed``."""
    torch.manual_seed(seed)
    model = ResNetBackbone(backbone)
    path = weights_file(method, backbone, pretrained)
    if path is None:
        log.info("%s: randomly initialised %s (seed %d)", method.name, backbone, seed)
    else:
        load_encoder_weights(model, read_state_dict(path, method.prefix), str(path))
        log.info("%s: %s weights from %s", method.name, backbone, path)
    return model


def frozen_encoder(
    method: Method, backbone: str, *, seed: int, pretrained: str | Path | None = None
) -> ResNetBackbone:
    """:func:`build_encoder` in eval mode with every parameter frozen."""
    return build_encoder(method, backbone, seed=seed, pretrained=pretrained).eval().requires_grad_(False)


def frozen_stages(method: Method, backbone: str, *, seed: int, pretrained: str | Path | None = None) -> FrozenStages:
    """``method``'s ResNet as a frozen four-stage feature extractor (the dense tasks' encoder)."""
    return FrozenStages(build_encoder(method, backbone, seed=seed, pretrained=pretrained))
