"""The resumable checkpoint, written atomically (:mod:`imitate.io.files`), and the RNG state it holds.

The exported weights (``encoder.safetensors``, ``model.safetensors``) are written by :mod:`imitate.models.files`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from imitate.io.files import atomic_write


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """``torch.save`` of plain containers and tensors only, so it loads with ``weights_only=True``."""
    return atomic_write(Path(path), lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    """Torch's CPU generator state (and every CUDA generator's when CUDA is up), for resuming."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA generators only when CUDA is up)."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
