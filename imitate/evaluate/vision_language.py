"""The pretrained model's joint image-text space, for zero-shot classification and retrieval.

Paper §IV-B: these tasks use the vision encoder E_v with its projector and the frozen text encoder E_t
with the text projector; P(·) and the multi-level projector are not used. An image embeds as the
L2-normalised high-level projection of its pooled last stage (z_{v,h}, the one aligned to the
Impression), under the evaluation transform; a text as the L2-normalised text projection of its E_t
embedding, made the way the embed stage made the training embeddings (same encoder, pooling,
max_length, whitespace normalisation and storage dtype). Before any text is embedded, the encoder's
facts are checked against the ones the model was trained with, so a model cannot silently be evaluated
with another text encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imitate.embed.embeddings import (
    EmbedSettings,
    TextSettings,
    embed_as_stored,
    embedding_facts,
    text_settings,
)
from imitate.embed.encoder import TextEncoder, load_encoder
from imitate.embed.store import check_facts
from imitate.evaluate.data.features import Features, extract_features
from imitate.evaluate.data.prepared import EvalDataset
from imitate.evaluate.request import EvalRequest
from imitate.evaluate.rows import FRACTION_ALL, result_rows
from imitate.io.progress import ProgressLog
from imitate.models import ImitateModel, ModelConfig
from imitate.models.files import load_model, model_config_from_dict
from imitate.shards.reader import count_samples, shard_paths

log = logging.getLogger(__name__)

# keys of the config's ``embed:`` block that decide the text vectors (``device`` and ``map`` do not)
TEXT_KEYS = ("encoder", "pooling", "max_length", "batch_size", "dtype", "trust_remote_code")


@dataclass(frozen=True)
class JointModel:
    """An ``ImitateModel`` in eval mode, where it came from, and the text-embedding facts it was trained on."""

    model: ImitateModel
    source: str  # the model file, or "random init (seed N)": names the model in messages
    text_facts: Mapping[str, Any] | None  # None: trained on no embeddings (the random baseline)
    epoch: int | None = None  # the pretraining epoch the weights are from


@dataclass(frozen=True)
class TextTower:
    """The loaded frozen text encoder E_t and the settings it embeds with."""

    encoder: TextEncoder
    settings: EmbedSettings


@dataclass(frozen=True)
class EmbeddedSplit:
    """The images of one split of a prepared dataset in the joint space, with their labels and texts."""

    dataset: str
    kind: str
    label_names: tuple[str, ...]
    keys: list[str]
    embeddings: np.ndarray  # (N, proj_dim) float32, L2-normalised
    labels: np.ndarray  # (N, L) 0/1
    texts: list[str | None]

    def class_indices(self) -> np.ndarray:
        """The class of every image of a multiclass dataset (its labels must be one-hot)."""
        one_hot = np.isin(self.labels, (0.0, 1.0)).all(axis=1) & (self.labels.sum(axis=1) == 1)
        if self.kind != "multiclass" or not one_hot.all():
            bad = [k for k, ok in zip(self.keys, one_hot, strict=True) if not ok][:5]
            raise ValueError(
                f"dataset {self.dataset!r} ({self.kind}): classes need one-hot multiclass labels"
                + (f"; images {bad} have none or several" if bad else "")
            )
        return self.labels.argmax(axis=1)


def load_vl_model(path: str | Path) -> JointModel:
    """The model in ``model.safetensors`` (pretraining's best epoch) with its facts, in eval mode."""
    model, facts = load_model(path)
    return JointModel(model, str(path), facts["text_embeddings"], facts.get("epoch"))


def random_vl_model(model_cfg: ModelConfig, seed: int) -> JointModel:
    """The random_init baseline: every weight drawn from ``seed`` (the backbone's ``init`` is not read).

    ``model_cfg.text_dim`` must be the text encoder's width. The global torch RNG is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImitateModel(replace(model_cfg, init="none"))
    return JointModel(model.eval().requires_grad_(False), f"random init (seed {seed})", None)


def load_text_tower(settings: TextSettings, device: str = "cpu") -> TextTower:
    """Load the frozen text encoder (never downloads; see :func:`imitate.embed.encoder.load_encoder`)."""
    encoder = load_encoder(settings.encoder, device=device, trust_remote_code=settings.trust_remote_code)
    return TextTower(encoder, settings.embed)


def check_text_tower(joint: JointModel, text: TextTower) -> None:
    """Fail unless ``text`` embeds as the embeddings ``joint`` was trained on (skipped without facts)."""
    facts = embedding_facts(text.encoder, text.settings)
    if joint.text_facts is not None:
        check_facts(facts, joint.text_facts, f"this evaluation's text encoder {text.encoder.name!r}", joint.source)
    if facts["dim"] != joint.model.cfg.text_dim:
        raise ValueError(
            f"{joint.source} takes {joint.model.cfg.text_dim}-d text embeddings but text encoder "
            f"{text.encoder.name!r} gives {facts['dim']}-d"
        )


def embed_texts(joint: JointModel, texts: Sequence[str | None], text: TextTower, *, device: str = "cpu") -> np.ndarray:
    """``normalize(text_proj(E_t(t)))`` for each of ``texts``, in order: (N, proj_dim) float32.

    The E_t vectors are made as the embed stage made the training embeddings
    (:func:`imitate.embed.embeddings.embed_as_stored`).
    """
    check_text_tower(joint, text)
    stored = embed_as_stored(text.encoder, texts, text.settings, torch.device(device))
    model = joint.model.to(device)  # outside inference mode, so the moved weights stay ordinary tensors
    with torch.inference_mode():
        return model.embed_text(torch.from_numpy(stored).to(device)).cpu().numpy()


def embed_images(
    joint: JointModel,
    shards: Sequence[Path],
    *,
    crop_size: int,
    batch_size: int = 64,
    device: str = "cpu",
    progress: ProgressLog | None = None,
) -> Features:
    """``normalize(high_proj(pool(last stage)))`` of every image of ``shards``, in shard order (``progress``
    advanced per batch)."""
    model = joint.model.to(device)
    return extract_features(model.embed_image, shards, crop_size=crop_size, batch_size=batch_size, device=device,
                            progress=progress)


def embed_split(
    joint: JointModel,
    dataset: EvalDataset,
    shards_manifest: str | Path,
    *,
    crop_size: int,
    split: str = "test",
    batch_size: int = 64,
    device: str = "cpu",
) -> EmbeddedSplit:
    """The images of ``split`` in ``shards_manifest`` embedded, with their label rows and texts from ``dataset``."""
    progress = ProgressLog(log, f"{split} image embeddings", count_samples(shards_manifest, split), "images")
    features = embed_images(joint, shard_paths(shards_manifest, split), crop_size=crop_size, batch_size=batch_size,
                            device=device, progress=progress)
    expected = dataset.keys_of(split)
    stray = sorted(set(features.keys) - set(expected))
    if stray:
        raise ValueError(
            f"{shards_manifest}: its {split} shards hold images {stray[:5]} that are not {split} records "
            f"of dataset {dataset.name!r}"
        )
    if len(features.keys) < len(expected):
        log.warning(
            "dataset %r: %d of %d %s records have no image in the shards (see the shard rejects)",
            dataset.name, len(expected) - len(features.keys), len(expected), split,
        )
    index = dataset.index()
    rows = [index[k] for k in features.keys]
    return EmbeddedSplit(
        dataset=dataset.name,
        kind=dataset.kind,
        label_names=dataset.label_names,
        keys=features.keys,
        embeddings=features.values,
        labels=dataset.labels[rows],
        texts=[dataset.texts[i] for i in rows],
    )


def run_vision_language(
    request: EvalRequest, metrics_of: Callable[[JointModel, TextTower, EvalDataset], dict[str, float]]
) -> list[dict[str, object]]:
    """Rows of a joint-space task (zero-shot, retrieval): the pretrained model once, a random model per seed.

    ``metrics_of(joint, text, dataset)`` scores one model.
    """
    method = request.method
    if method.weights not in ("pretrain", "random"):
        raise ValueError(f"{request.task} needs a whole IMITATE model: method {method.name!r} has "
                         f"weights {method.weights!r} (use pretrain or random)")
    dataset = request.dataset()
    info = request.run_info(dataset)
    text = load_text_tower(text_settings(request.text_settings), device=request.device)
    rows: list[dict[str, object]] = []
    seeds = request.seeds if method.is_random else request.seeds[:1]
    models = ProgressLog(log, request.task, len(seeds), "models")
    for seed in seeds:
        if method.is_random:
            cfg = model_config_from_dict({**request.model_settings, "text_dim": text.encoder.dim}, "config model:")
            joint = random_vl_model(cfg, seed)
        else:
            if request.weights_file is None:
                raise ValueError(f"{request.task}: method {method.name!r} needs its model.safetensors")
            joint = load_vl_model(request.weights_file)
        joint.model.to(request.device)
        rows += result_rows(info, fraction=FRACTION_ALL, seed=seed, metrics=metrics_of(joint, text, dataset),
                            n_train=None, n_test=len(dataset.keys_of("test")))
        models.advance()
    return rows
