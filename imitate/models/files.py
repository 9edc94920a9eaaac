"""The model files pretraining writes and evaluation reads: ``model.safetensors`` and ``encoder.safetensors``.

``model.safetensors`` holds a whole :class:`~imitate.models.ImitateModel` state_dict; its header's one
metadata key :data:`MODEL_METADATA_KEY` records what rebuilds and checks it (the architecture, the epoch
and the facts of the text embeddings it was trained on). ``encoder.safetensors`` holds the vision
encoder E_v alone under torchvision ResNet keys (no ``fc``), with :data:`ENCODER_METADATA_KEY`. Each
header has one metadata key only: safetensors writes its metadata map in no fixed order, so several keys
would make the bytes of identical runs differ. The tensors themselves are read and written by
:mod:`imitate.models.weights`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from imitate.models.imitate import ImitateModel, ModelConfig
from imitate.models.weights import save_weights

log = logging.getLogger(__name__)


ENCODER_FILE = "encoder.safetensors"
MODEL_FILE = "model.safetensors"
ENCODER_METADATA_KEY = "imitate.encoder"
MODEL_METADATA_KEY = "imitate.model"
BACKBONE_PREFIX = "backbone."  # where ImitateModel keeps E_v in its state_dict
ENCODER_KEYS = "torchvision ResNet state_dict without fc"


def encoder_state(model_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The vision encoder E_v's part of an ``ImitateModel`` state_dict, under torchvision ResNet keys."""
    return {k.removeprefix(BACKBONE_PREFIX): v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIX)}


def export_model(
    path: str | Path, state: Mapping[str, Tensor], model: ModelConfig, epoch: int, text: Mapping[str, Any]
) -> Path:
    """Write a whole ``ImitateModel`` state_dict as safetensors with what rebuilds and checks it.

    The header's one metadata key :data:`MODEL_METADATA_KEY` holds sort_keys JSON of the architecture
    (``config``, the :class:`~imitate.models.ModelConfig` fields), the ``epoch`` and the facts of the
    text embeddings it was trained on (``text_embeddings``).
    """
    facts = {"config": asdict(model), "epoch": epoch, "text_embeddings": dict(text)}
    return save_weights(path, state, {MODEL_METADATA_KEY: json.dumps(facts, sort_keys=True)})


def export_encoder(path: str | Path, state: Mapping[str, Tensor], backbone: str, epoch: int) -> Path:
    """Write E_v's torchvision-keyed ``state`` (:func:`encoder_state`) as safetensors.

    The header's one metadata key :data:`ENCODER_METADATA_KEY` holds sort_keys JSON of the ``backbone``
    name, the ``epoch`` and a description of the ``keys``.
    """
    facts = {"backbone": backbone, "epoch": epoch, "keys": ENCODER_KEYS}
    return save_weights(path, state, {ENCODER_METADATA_KEY: json.dumps(facts, sort_keys=True)})


def model_config_from_dict(values: Mapping[str, Any], source: str | Path) -> ModelConfig:
    """A :class:`ModelConfig` from its recorded fields (lists back to tuples)."""
    unknown = sorted(set(values) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise ValueError(f"{source}: unknown model config field(s) {unknown}")
    return ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def read_model_facts(path: str | Path) -> dict[str, Any]:
    """The ``config``, ``epoch`` and ``text_embeddings`` recorded in a ``model.safetensors`` header."""
    try:
        with safe_open(str(path), "pt") as fh:
            metadata = fh.metadata() or {}
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a safetensors file ({exc})") from exc
    raw = metadata.get(MODEL_METADATA_KEY)
    if raw is None:
        raise ValueError(
            f"{path}: no {MODEL_METADATA_KEY} metadata, so not a whole IMITATE model; pretraining writes "
            f"one as {MODEL_FILE} ({ENCODER_FILE} holds the ResNet only)"
        )
    facts = json.loads(raw)
    missing = [k for k in ("config", "text_embeddings") if k not in facts]
    if missing:
        raise ValueError(f"{path}: its {MODEL_METADATA_KEY} metadata lacks {', '.join(missing)}")
    return facts


def load_model(path: str | Path) -> tuple[ImitateModel, dict[str, Any]]:
    """The model in a ``model.safetensors``, rebuilt from its metadata, in eval mode with frozen weights.

    Returns the model and the file's facts (:func:`read_model_facts`). The backbone's recorded ``init``
    is not read (the weights come from the file) and the global torch RNG is left as it was.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found (pretraining writes {MODEL_FILE})")
    facts = read_model_facts(path)
    config = replace(model_config_from_dict(facts["config"], path), init="none")
    with torch.random.fork_rng(devices=[]):
        model = ImitateModel(config)
    try:
        result = model.load_state_dict(load_file(str(path)), strict=False)
    except RuntimeError as exc:  # a tensor whose shape differs from the recorded architecture
        raise ValueError(f"{path}: weights do not fit the model config it records: {exc}") from exc
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit the model config it records "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    log.info("%s: %s model from pretraining epoch %s", path, config.backbone, facts.get("epoch"))
    return model.eval().requires_grad_(False), facts


def load_encoder_weights(model: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a torchvision-keyed ``state`` into ``model``: every ResNet key must be present and fit."""
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape, e.g. ResNet18 weights for a ResNet50
        raise ValueError(f"{source}: encoder weights do not fit the backbone: {error}") from error
    missing = [k for k in result.missing_keys if not k.startswith("fc.")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{source}: encoder weights do not fit the backbone (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
