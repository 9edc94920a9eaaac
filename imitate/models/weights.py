"""Tensors on disk, whatever model they belong to: safetensors written atomically, state_dicts read back.

The low level under :mod:`imitate.models.files` (which knows the IMITATE model and encoder formats) and
:mod:`imitate.models.backbone` (which reads its init weights here); it imports no other model module, so
both can use it without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from imitate.io.files import atomic_write


def save_weights(path: str | Path, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """Weights (the encoder or the whole model) as safetensors, with string ``metadata`` in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=dict(metadata)))


def read_state_dict(path: str | Path, prefix: str = "") -> dict[str, Tensor]:
    """The tensors of a weights file whose keys start with ``prefix``, with the prefix removed.

    The file is safetensors (by its ``.safetensors`` suffix) or a torch checkpoint holding a state_dict,
    at the top level or under ``state_dict`` (Lightning); it is loaded on the CPU with
    ``weights_only=True``. Values that are not tensors are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder weights not found")
    if path.suffix == ".safetensors":
        state: object = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    tensors = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path}: no tensors" + (f" under the key prefix {prefix!r}" if prefix else ""))
    return tensors
