"""One study's texts as the loader reads them: frozen embedding vectors, or token ids for Table XI."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StudyText:
    """A study's texts as arrays: embedding vectors (float), or token ids (int32) when text layers train.

    ``findings`` is None when its report has no Findings; ``report`` (the whole report, for the Find&Imp
    alignment) is there only when the file has a report column.
    """

    impression: np.ndarray
    findings: np.ndarray | None
    report: np.ndarray | None = None

    @property
    def has_findings(self) -> bool:
        return self.findings is not None

    @property
    def is_tokens(self) -> bool:
        """Whether the arrays are token ids (for the text layers) rather than embedding vectors."""
        return bool(np.issubdtype(self.impression.dtype, np.integer))
