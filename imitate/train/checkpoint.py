"""Writing pretraining artifacts atomically: the resumable checkpoint, the encoder, JSON files.

Every file is written to a hidden temporary name beside its target and renamed into place, so a crash
never leaves a half-written artifact under the final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """``torch.save`` of plain containers and tensors only, so it loads with ``weights_only=True``."""
    return _atomic(Path(path), lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_encoder(path: str | Path, state_dict: Mapping[str, Tensor], metadata: Mapping[str, str]) -> Path:
    """The vision encoder as safetensors (torchvision keys), with string ``metadata`` in the header."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    return _atomic(Path(path), lambda tmp: save_file(tensors, tmp, metadata=dict(metadata)))


def write_json(path: str | Path, value: Any) -> Path:
    """Pretty, key-sorted JSON (the same value always gives the same bytes)."""
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    return _atomic(Path(path), lambda tmp: tmp.write_text(text))


def rng_state() -> dict[str, Any]:
    """Torch's CPU generator state (and every CUDA generator's when CUDA is up), for resuming."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
