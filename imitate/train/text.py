"""Table XI: the text encoder E_t in the training step, with its last n transformer layers trainable.

With ``pretrain.text_unfreeze = n > 0`` the text vectors are no longer read from the embeddings file:
the encoder the embed stage used (named by the ``embed:`` block, loaded by the same
:func:`imitate.embed.encoder.load_encoder` and checked against the file's facts) encodes the file's
token ids in every step, pooled by the embed stage's :func:`imitate.embed.pooling.pool`, and only its
last ``n`` layers (the largest stack of identical blocks: BERT's ``encoder.layer``) are trained. The
encoder stays in eval mode (no dropout), so with its weights untouched it gives the stored vectors.
Its embeddings and first layers are frozen and take integer ids, so autograd records nothing before
the first trainable layer: they cost what they would under ``torch.no_grad()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from imitate.embed.pooling import pool
from imitate.embed.store import EmbeddingMismatchError, describe, differing_keys
from imitate.models import ImitateModel
from imitate.train.data import load_embeddings
from imitate.train.progress import BEST_TEXT_KEY
from imitate.train.settings import PretrainConfig
from imitate.train.study_text import StudyText
from imitate.train.tokens import load_token_ids

if TYPE_CHECKING:
    from imitate.embed.encoder import TextEncoder

# where checkpoint.pt keeps the final trained layers (the exported .safetensors hold the image side only)
FINAL_KEY = "text_encoder"


def transformer_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The name and modules of a model's transformer layers: its largest list of same-class blocks."""
    stacks = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) and len({type(block) for block in module}) == 1
    ]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no stack of transformer layers to unfreeze")
    return max(stacks, key=lambda stack: sum(p.numel() for p in stack[1].parameters()))


class TextLayers(nn.Module):
    """A text encoder whose last ``unfreeze`` transformer layers are trainable: token ids -> pooled vectors."""

    def __init__(self, encoder: TextEncoder, unfreeze: int, pooling: str) -> None:
        super().__init__()
        self.encoder = encoder.model
        self.name, self.dim, self.pooling = encoder.name, encoder.dim, pooling
        stack, layers = transformer_layers(self.encoder)
        if not 0 <= unfreeze <= len(layers):
            raise ValueError(
                f"pretrain.text_unfreeze = {unfreeze}, but text encoder {encoder.name!r} has "
                f"{len(layers)} transformer layers ({stack})"
            )
        self.encoder.requires_grad_(False)
        self.trained = tuple(f"{stack}.{i}" for i in range(len(layers) - unfreeze, len(layers)))
        for layer in layers[len(layers) - unfreeze :]:
            layer.requires_grad_(True)
        self.train(False)

    def train(self, mode: bool = True) -> TextLayers:
        """Eval mode whatever ``mode``: no dropout, as in the embed stage."""
        return super().train(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """float32 B x dim: the embed stage's pooling of the last layer."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def trainable_state(self) -> dict[str, Tensor]:
        """The state of the trained layers, by the encoder's own keys (``encoder.layer.5.…`` for BERT)."""
        prefixes = tuple(f"{name}." for name in self.trained)
        return {k: v for k, v in self.encoder.state_dict().items() if k.startswith(prefixes)}

    def load_trainable_state(self, state: Mapping[str, Tensor], source: str | Path) -> None:
        """Load what :meth:`trainable_state` gave, refusing the layers of another setting."""
        if set(state) != set(self.trainable_state()):
            raise ValueError(f"{source}: its text encoder layers are not the {len(self.trained)} this run trains")
        self.encoder.load_state_dict(dict(state), strict=False)


class ImageText(nn.Module):
    """:class:`ImitateModel` fed by :class:`TextLayers`: the batch's token ids in, the loss's inputs out.

    One module, so that DDP reduces the text layers' gradients with the model's.
    """

    def __init__(self, model: ImitateModel, text: TextLayers) -> None:
        super().__init__()
        self.model, self.text = model, text

    def _findings(self, ids: Tensor, mask: Tensor, has_findings: Tensor) -> Tensor:
        """The pooled Findings of the studies that have them, zeros elsewhere (not encoded)."""
        out = ids.new_zeros(ids.shape[0], self.text.dim, dtype=torch.float32)
        if bool(has_findings.any()):
            out = out.index_put((has_findings,), self.text(ids[has_findings], mask[has_findings]))
        return out

    def forward(
        self,
        view1: Tensor,
        view2: Tensor,
        has_findings: Tensor,
        findings_input_ids: Tensor,
        findings_attention_mask: Tensor,
        impression_input_ids: Tensor,
        impression_attention_mask: Tensor,
        report_input_ids: Tensor | None = None,
        report_attention_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The texts pooled from the batch's token ids, then the model's outputs, with gradients into them."""
        has = has_findings.bool()
        findings = self._findings(findings_input_ids, findings_attention_mask, has)
        impression = self.text(impression_input_ids, impression_attention_mask)
        report = None if report_input_ids is None else self.text(report_input_ids, report_attention_mask)
        return self.model(view1, view2, findings, impression, has, report, text_grad=True)


def load_text_layers(
    block: Mapping[str, Any], unfreeze: int, facts: Mapping[str, Any], source: str, device: str
) -> TextLayers:
    """The encoder of the ``embed:`` ``block`` on ``device``, its last ``unfreeze`` layers trainable.

    Its facts must match ``facts``, those of the embeddings file ``source`` the token ids come from.
    """
    # imported here: transformers takes seconds to import, and a frozen run never needs it
    from imitate.embed.embeddings import embedding_facts, text_settings
    from imitate.embed.encoder import load_encoder

    settings = text_settings(block)
    encoder = load_encoder(settings.encoder, device=device, trust_remote_code=settings.trust_remote_code)
    ours = embedding_facts(encoder, settings.embed)
    differ = differing_keys(ours, facts)
    if differ:
        raise EmbeddingMismatchError(
            f"{source} was made by {describe(facts)}, but --text-settings names {describe(ours)}; they "
            f"differ in {', '.join(differ)}. The text layers trained must be those of the encoder that made "
            "the token ids: give the embed: block the embeddings were made with"
        )
    return TextLayers(encoder, unfreeze, settings.embed.pooling)


def training_text(
    cfg: PretrainConfig,
    embeddings: str | Path | Mapping[int, StudyText],
    text_settings_block: Mapping[str, Any] | None,
    facts: Mapping[str, Any],
) -> tuple[Mapping[int, StudyText], int, TextLayers | None]:
    """The per-study texts a run trains on, their vectors' width, and its text layers (None when frozen).

    Frozen (``text_unfreeze`` 0): the embeddings, and the text settings are not read. Unfrozen: the
    token ids of ``embeddings`` and the encoder of ``text_settings_block`` (the ``embed:`` block).
    """
    if cfg.text_unfreeze == 0:
        table = embeddings if isinstance(embeddings, Mapping) else load_embeddings(embeddings)
        return table, next(iter(table.values())).impression.shape[0], None
    if text_settings_block is None:
        raise ValueError(
            f"pretrain.text_unfreeze = {cfg.text_unfreeze} trains text encoder layers: give the config's "
            "embed: block as --text-settings JSON"
        )
    table = embeddings if isinstance(embeddings, Mapping) else load_token_ids(embeddings)
    if not next(iter(table.values())).is_tokens:
        raise ValueError(f"text_unfreeze = {cfg.text_unfreeze} trains on token ids, not on embedding vectors")
    source = "the embeddings" if isinstance(embeddings, Mapping) else str(embeddings)
    layers = load_text_layers(text_settings_block, cfg.text_unfreeze, facts, source, cfg.device)
    return table, layers.dim, layers


def text_card(text: TextLayers, cfg: PretrainConfig) -> dict[str, Any]:
    """The model card's account of the trained text layers and where they are kept."""
    return {
        "encoder": text.name,
        "pooling": text.pooling,
        "unfreeze": cfg.text_unfreeze,
        "lr": cfg.text_layers_lr,
        "layers": list(text.trained),
        "file": "checkpoint.pt",
        "keys": {"final": FINAL_KEY, "best_epoch": BEST_TEXT_KEY},
        "note": (
            "the trained text layers are kept in checkpoint.pt only, by the encoder's own state_dict keys; "
            "encoder.safetensors and model.safetensors hold the image side as with a frozen encoder (the "
            "text projector in model.safetensors was trained on these layers' vectors, not the frozen ones)"
        ),
    }
