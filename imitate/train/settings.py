"""The pretraining run's settings: :class:`PretrainConfig` and how config.yaml's blocks map onto it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from imitate.config import PRETRAIN_SCHEDULING_KEYS
from imitate.losses import LossConfig, terms_from_groups
from imitate.models import ModelConfig

# keys of the YAML ``pretrain:`` block that configure the loss -> LossConfig fields
LOSS_KEYS = {
    "lambda": "lam",
    "tau_vl": "tau_vl",
    "tau_vv": "tau_vv",
    "kernel": "kernel",
    "target": "target",
    "cicl": "cicl",
    "alignment": "alignment",
    "vv_prior": "vv_prior",
    "gather": "gather",
}


@dataclass(frozen=True)
class PretrainConfig:
    """Everything a pretraining run depends on (defaults: the paper's ResNet50 setting)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    crop_size: int = 224
    batch_size: int = 128
    epochs: int = 50
    lr: float = 4e-5
    weight_decay: float = 0.05
    decay_1d: bool = True  # decay biases and norm scales too (the official AdamW over all parameters)
    warmup_fraction: float = 0.1
    patience: int | None = 10  # epochs without a better validation loss before stopping; None: never stop
    augment: str = "paper"
    rotation_degrees: float = 180.0  # the paper's [0°, 180°]
    workers: int = 1
    device: str = "cpu"
    max_skipped_steps: int = 20  # consecutive non-finite losses before the run stops
    compile: bool = False  # torch.compile the ResNet's forward (where nearly all the FLOPs are)
    gpu_augment: bool = True  # on CUDA, augment batches on the GPU (paper augmentations); else in the loader
    grad_clip: float | None = None  # max global gradient norm; None: no clipping (paper and official code)
    text_unfreeze: int = 0  # Table XI: the last n text encoder layers trained too; 0: frozen embeddings
    text_lr: float | None = None  # learning rate of those layers; None: ``lr``
    seed: int = 0

    def __post_init__(self) -> None:
        if self.text_unfreeze < 0:
            raise ValueError(f"text_unfreeze must be >= 0, got {self.text_unfreeze}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")

    @property
    def crop_only(self) -> bool:
        """Whether the loader only crops and the trainer augments on the GPU (CUDA, ``paper`` augmentations)."""
        return self.device.startswith("cuda") and self.gpu_augment and self.augment == "paper"

    @property
    def text_layers_lr(self) -> float | None:
        """The learning rate of the unfrozen text layers; None when none is unfrozen."""
        if self.text_unfreeze == 0:
            return None
        return self.lr if self.text_lr is None else self.text_lr


def _check_keys(block: str, settings: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise ValueError(f"{block} settings: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def config_from_settings(model: Mapping[str, Any], pretrain: Mapping[str, Any], seed: int) -> PretrainConfig:
    """A :class:`PretrainConfig` from the ``model:`` and ``pretrain:`` blocks of config.yaml.

    The loss is set by ``lambda``, ``tau_vl``, ``tau_vv``, ``kernel``, ``target``, ``cicl``,
    ``alignment``, ``vv_prior``, ``gather`` and ``loss_groups`` (Table VIII groups, e.g. ``[vvh, vlh]``) in
    the pretrain block; :data:`imitate.config.PRETRAIN_SCHEDULING_KEYS` are accepted and ignored.
    """
    loop_fields = {f.name for f in fields(PretrainConfig)} - {"model", "loss", "seed"}
    _check_keys("model", model, {f.name for f in fields(ModelConfig)} - {"text_dim"})
    _check_keys("pretrain", pretrain, loop_fields | set(LOSS_KEYS) | {"loss_groups"} | set(PRETRAIN_SCHEDULING_KEYS))
    model_cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
    loss_kwargs: dict[str, Any] = {LOSS_KEYS[k]: v for k, v in pretrain.items() if k in LOSS_KEYS}
    if "loss_groups" in pretrain:
        loss_kwargs["terms"] = terms_from_groups(tuple(pretrain["loss_groups"]))
    loop = {k: v for k, v in pretrain.items() if k in loop_fields}
    return PretrainConfig(model=model_cfg, loss=LossConfig(**loss_kwargs), seed=seed, **loop)
