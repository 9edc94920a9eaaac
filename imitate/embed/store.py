"""What an embeddings file was made with, and checking that a consumer was trained on the same.

The embed stage stores the encoder facts as JSON under the Parquet key-value metadata key
``imitate.embeddings``. Pretraining copies them into its checkpoint and model card; anything that later
pairs a checkpoint with an embeddings file calls :func:`check_compatible`, so a file made by another
encoder fails at load with both descriptions instead of as a shape mismatch deep in training. This
module needs only pyarrow and numpy: reading the facts or the vectors never loads transformers or torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = "imitate.embeddings"
# Facts that change the vectors: a checkpoint's text projector only fits embeddings that agree on all.
IDENTITY_KEYS = ("encoder", "weights_sha256", "dim", "pooling", "max_length")
# ``imitate embed --token-ids``: the tokenizer's input ids of each embedded text, in ``<section>_input_ids``
TOKEN_IDS_SUFFIX = "_input_ids"


class EmbeddingMismatchError(ValueError):
    """An embeddings file made by another encoder or setting than the one a checkpoint expects."""


def embedding_matrix(table: pa.Table, column: str, source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An N x D matrix of a fixed-size list column (no copy when it can) and its validity mask.

    Null rows hold junk; ``source`` names the file in errors.
    """
    array = table[column].combine_chunks()
    if not pa.types.is_fixed_size_list(array.type) or not pa.types.is_floating(array.type.value_type):
        raise ValueError(f"{source}: {column} must be a fixed-size list of floats, not {array.type}")
    dim = array.type.list_size
    values = array.values.slice(array.offset * dim, len(array) * dim).to_numpy(zero_copy_only=False)
    return values.reshape(len(array), dim), array.is_valid().to_numpy(zero_copy_only=False)


def study_ids(table: pa.Table, source: str | Path) -> np.ndarray:
    """The ``study_id`` column of an embeddings table: int64, none null, none repeated."""
    if table["study_id"].null_count:
        raise ValueError(f"{source}: null study_id")
    ids = table["study_id"].to_numpy()
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"{source}: repeated study_id")
    return ids


def token_id_lists(table: pa.Table, column: str, source: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The int32 values, the row offsets into them and the validity mask of a list<int32> column.

    Row ``i`` holds ``values[offsets[i]:offsets[i + 1]]`` (empty when null); ``source`` names the file.
    """
    array = table[column].combine_chunks()
    if not pa.types.is_list(array.type) or array.type.value_type != pa.int32():
        raise ValueError(f"{source}: {column} must be a list of int32 token ids, not {array.type}")
    values = array.values.to_numpy(zero_copy_only=False)
    offsets = array.offsets.to_numpy(zero_copy_only=False)
    return values, offsets, array.is_valid().to_numpy(zero_copy_only=False)


def read_embedding_facts(path: str | Path) -> dict[str, Any]:
    """The encoder facts stored in an embeddings file."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY.encode())
    if raw is None:
        raise ValueError(f"{path}: not an imitate embeddings file (no {METADATA_KEY} metadata)")
    return json.loads(raw)


def describe(facts: Mapping[str, Any]) -> str:
    """A one-line description of the encoder behind some embeddings."""
    sha = str(facts.get("weights_sha256") or "?")[:12]
    return (
        f"encoder {facts.get('encoder')!r} (weights sha256 {sha}…, dim {facts.get('dim')}, "
        f"{facts.get('pooling')} pooling, max_length {facts.get('max_length')})"
    )


def differing_keys(facts: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """The identity keys that ``expected`` names and ``facts`` disagree on."""
    return [key for key in IDENTITY_KEYS if key in expected and facts.get(key) != expected[key]]


def check_facts(facts: Mapping[str, Any], expected: Mapping[str, Any], source: str, consumer: str) -> None:
    """Raise :class:`EmbeddingMismatchError` unless ``facts`` (of ``source``) match ``expected``."""
    differ = differing_keys(facts, expected)
    if differ:
        raise EmbeddingMismatchError(
            f"{source} was made by {describe(facts)}, but {consumer} was trained on embeddings from "
            f"{describe(expected)}; they differ in {', '.join(differ)}. Re-run `imitate embed` with that "
            f"encoder and settings, or use the embeddings {consumer} was trained with."
        )


def check_compatible(path: str | Path, expected: Mapping[str, Any], consumer: str) -> dict[str, Any]:
    """Return ``path``'s facts if they match ``expected`` on every identity key, else raise clearly.

    ``consumer`` names what holds ``expected`` (e.g. a checkpoint path) in the error message.
    """
    facts = read_embedding_facts(path)
    check_facts(facts, expected, str(path), consumer)
    return facts
