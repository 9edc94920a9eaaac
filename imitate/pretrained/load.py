"""Load an exported folder: the joint image-text model open_clip-style, or the bare ResNet.

    model, preprocess, embed_text = imitate.load("exports/imitate-r50")
    image = preprocess("chest.dcm").unsqueeze(0)
    probs = (model.encode_image(image) @ model.encode_text(["Pleural effusion", "No pleural effusion"]).T).softmax(-1)

Both weight files are checked against the sha256 that ``config.json`` records before they are read. The
text side needs the frozen text encoder the model was trained with (named in the card); it is found
locally only (a bundled package, a directory, or the Hugging Face cache; never downloaded), loaded on
first use, and refused unless its weights are the ones recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from imitate.embed import encoder as text_encoders
from imitate.embed.embeddings import EmbedSettings, embed_as_stored, embedding_facts
from imitate.embed.encoder import EncoderError, TextEncoder
from imitate.embed.store import check_facts
from imitate.models import ImitateModel
from imitate.models.backbone import ResNetBackbone
from imitate.models.files import load_encoder_weights, load_model
from imitate.pretrained.layout import ENCODER_WEIGHTS, MODEL_WEIGHTS, read_config, verified_file
from imitate.pretrained.preprocess import Preprocess


class TextEmbedder:
    """Texts -> the frozen text encoder's vectors, as the embed stage stored them for training.

    The encoder is loaded on the first call and checked against the facts recorded at training time.
    """

    def __init__(self, facts: Mapping[str, Any], *, encoder: str | None = None, device: str = "cpu") -> None:
        self.facts = dict(facts)
        self.name = encoder or str(facts["encoder"])
        self.overridden = encoder is not None
        self.device = device
        self.settings = EmbedSettings(**{k: facts[k] for k in ("pooling", "max_length", "batch_size", "dtype")})
        self._encoder: TextEncoder | None = None

    def encoder(self) -> TextEncoder:
        """The loaded, checked text encoder."""
        if self._encoder is None:
            trust = bool(self.facts.get("trust_remote_code", False))
            try:
                encoder = text_encoders.load_encoder(self.name, device=self.device, trust_remote_code=trust)
            except EncoderError as exc:
                raise EncoderError(
                    f"{exc}. The model's text side needs the text encoder it was trained with, "
                    f"{self.facts['encoder']!r}; give its local copy as imitate.load(..., text_encoder=DIR)"
                ) from exc
            # a local copy may have another name: its weights, width and settings must be the recorded ones
            expected = {k: v for k, v in self.facts.items() if not (self.overridden and k == "encoder")}
            check_facts(embedding_facts(encoder, self.settings), expected, f"text encoder {self.name!r}", "this model")
            self._encoder = encoder
        return self._encoder

    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(N, D) float32 vectors of ``texts`` on the CPU."""
        if isinstance(texts, str):
            texts = [texts]
        return torch.from_numpy(embed_as_stored(self.encoder(), list(texts), self.settings, torch.device(self.device)))


class PretrainedModel(nn.Module):
    """The pretrained joint space: ``encode_image`` and ``encode_text`` give L2-normalised vectors.

    ``visual`` is the ResNet E_v (pooled features); ``imitate`` the whole pretrained model.
    """

    def __init__(self, model: ImitateModel, embed_text: TextEmbedder) -> None:
        super().__init__()
        self.imitate = model
        self.embed_text = embed_text

    @property
    def visual(self) -> ResNetBackbone:
        """The vision encoder E_v: images -> pooled last-stage features."""
        return self.imitate.backbone

    def encode_image(self, images: Tensor) -> Tensor:
        """Preprocessed images (B x 3 x H x W) -> (B, proj_dim) unit vectors."""
        return self.imitate.embed_image(images.to(self._device()))

    def encode_text(self, texts: Sequence[str] | Tensor) -> Tensor:
        """Texts, or their frozen text-encoder vectors, -> (N, proj_dim) unit vectors."""
        vectors = texts if isinstance(texts, Tensor) else self.embed_text(texts)
        return self.imitate.embed_text(vectors.to(self._device()))

    def forward(self, images: Tensor, texts: Sequence[str] | Tensor) -> Tensor:
        """Cosine similarities, images x texts."""
        return self.encode_image(images) @ self.encode_text(texts).T

    def _device(self) -> torch.device:
        return next(self.imitate.parameters()).device


class Loaded(NamedTuple):
    """What :func:`load` returns: unpacks as ``model, preprocess, embed_text``."""

    model: PretrainedModel
    preprocess: Preprocess
    embed_text: TextEmbedder


def load(path: str | Path, *, text_encoder: str | None = None, device: str = "cpu") -> Loaded:
    """The exported model at ``path`` in eval mode (weights frozen), its preprocessing and text embedding.

    ``text_encoder``: a local directory (or name) of the text encoder when the one the card names is
    not found under that name; its weights must be the recorded ones.
    """
    facts = read_config(path)
    if facts["training"]["text_unfreeze"]:
        raise ValueError(
            f"{path}: pretrained with {facts['training']['text_unfreeze']} unfrozen text-encoder layers, which "
            "the export does not hold: its joint space cannot be used (imitate.load_encoder reads the ResNet)"
        )
    model, _ = load_model(verified_file(path, MODEL_WEIGHTS, facts))
    clip = PretrainedModel(model, TextEmbedder(facts["text_encoder"], encoder=text_encoder, device=device))
    return Loaded(clip.to(device).eval(), Preprocess.from_facts(facts["preprocess"]), clip.embed_text)


def load_encoder(path: str | Path, *, device: str = "cpu") -> ResNetBackbone:
    """The exported vision encoder E_v alone, in eval mode (weights frozen): images -> pooled features.

    Its ``forward_features`` gives the four stage outputs (``feature_info``), for dense heads.
    """
    facts = read_config(path)
    weights = verified_file(path, ENCODER_WEIGHTS, facts)
    with torch.random.fork_rng(devices=[]):
        encoder = ResNetBackbone(facts["model"]["backbone"], "none")
    load_encoder_weights(encoder, load_file(str(weights)), str(weights))
    return encoder.to(device).eval().requires_grad_(False)
