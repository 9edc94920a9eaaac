"""Token ids for pretraining with unfrozen text layers (Table XI): read per study, batched with masks.

``imitate embed --token-ids`` stores each text's tokenizer input ids (truncated to ``max_length`` as its
vector was) beside the vector. With ``pretrain.text_unfreeze`` > 0 the loader hands out these ids
instead of the vectors, padded to the longest text of the batch with an attention mask (padding
positions hold 0 and are masked), and the trainer's text layers encode them in the step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from imitate.embed.store import TOKEN_IDS_SUFFIX, study_ids, token_id_lists
from imitate.train.study_text import StudyText

log = logging.getLogger(__name__)

SECTIONS = ("findings", "impression")
REPORT = "report"


def ids_key(section: str) -> str:
    """The column of a section's ids in the embeddings file, and its batch key."""
    return f"{section}{TOKEN_IDS_SUFFIX}"


def mask_key(section: str) -> str:
    """The batch key of a section's attention mask."""
    return f"{section}_attention_mask"


# what the trainer hands the model from a token batch (the report's only when the batch has them)
TOKEN_INPUTS = (
    "view1",
    "view2",
    "has_findings",
    *(key for section in (*SECTIONS, REPORT) for key in (ids_key(section), mask_key(section))),
)


def _rows(values: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> list[np.ndarray | None]:
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(valid))]


def load_token_ids(path: str | Path) -> dict[int, StudyText]:
    """The token ids of every study with an Impression, by study (studies without one are left out)."""
    names = pq.read_schema(path).names
    needed = [ids_key(section) for section in SECTIONS]
    if not set(needed) <= set(names):
        raise ValueError(
            f"{path} holds no token ids ({', '.join(needed)}): pretrain.text_unfreeze > 0 re-encodes the "
            "texts in the training step; make the embeddings with `imitate embed --token-ids`"
        )
    sections = [*SECTIONS, *([REPORT] if ids_key(REPORT) in names else [])]
    table = pq.read_table(path, columns=["study_id", "has_findings", *(ids_key(s) for s in sections)])
    ids = study_ids(table, path)
    rows = {section: token_id_lists(table, ids_key(section), path) for section in sections}
    has_findings = table["has_findings"].to_numpy(zero_copy_only=False).astype(bool)
    if (has_findings != rows["findings"][2]).any():
        raise ValueError(f"{path}: has_findings disagrees with findings_input_ids being null")
    has_impression = rows["impression"][2]
    if REPORT in rows and not (rows[REPORT][2] | ~has_impression).all():
        raise ValueError(f"{path}: report_input_ids is null for a study that has an impression")
    if not has_impression.all():
        log.warning("%s: %d studies without impression token ids left out", path, (~has_impression).sum())
    texts = {section: _rows(*lists) for section, lists in rows.items()}
    report = texts.get(REPORT, [None] * len(ids))
    return {
        int(study): StudyText(texts["impression"][i], texts["findings"][i], report[i])
        for i, study in enumerate(ids)
        if has_impression[i]
    }


def _padded(rows: Sequence[np.ndarray | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """int64 ids and attention mask, B x the longest row (a missing row is all padding)."""
    length = max((len(row) for row in rows if row is not None), default=1)
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        if row is not None:
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def token_batch(texts: Sequence[StudyText], sections: Sequence[str]) -> dict[str, torch.Tensor]:
    """``<section>_input_ids`` and ``<section>_attention_mask`` of each of ``sections``."""
    batch = {}
    for section in sections:
        batch[ids_key(section)], batch[mask_key(section)] = _padded([getattr(t, section) for t in texts])
    return batch
