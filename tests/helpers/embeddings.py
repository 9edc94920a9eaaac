"""A pretraining embeddings table whose values name their study, for the loader and batch tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DIM = 8


def embedding_table(study_ids: list[int], *, findings_list_type: bool = False) -> pa.Table:
    """Impression = study id in every slot; Findings = -study id, null for odd study ids."""
    impression = np.repeat(np.asarray(study_ids, np.float16)[:, None], DIM, axis=1)
    has_findings = np.asarray([s % 2 == 0 for s in study_ids])
    findings = pa.FixedSizeListArray.from_arrays(pa.array(-impression.reshape(-1)), DIM, mask=pa.array(~has_findings))
    if findings_list_type:
        findings = pa.array([list(map(float, row)) for row in -impression])
    return pa.table(
        {
            "study_id": pa.array(study_ids, pa.int64()),
            "findings_emb": findings,
            "impression_emb": pa.FixedSizeListArray.from_arrays(pa.array(impression.reshape(-1)), DIM),
            "has_findings": pa.array(has_findings),
        }
    )
