"""One evaluation request (task x dataset x method, all seeds), run by its task module."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imitate.evaluate.data.prepared import EvalDataset, load_eval_dataset, read_subsets
from imitate.evaluate.encoders import Method
from imitate.evaluate.rows import RunInfo
from imitate.evaluate.tasks import task_module
from imitate.io.progress import ProgressLog
from imitate.provenance.record import file_sha256


@dataclass(frozen=True)
class EvalRequest:
    """Everything one ``imitate evaluate`` run needs: the prepared dataset, the method and the settings.

    ``settings`` is the task's resolved config block (:func:`imitate.evaluate.settings.task_settings`),
    which the task reads into its typed ``Settings``.
    """

    task: str
    records: Path
    subsets: Path
    shards: Path
    method: Method
    weights_file: Path | None
    backbone: str
    crop_size: int
    batch_size: int
    device: str
    seeds: tuple[int, ...]
    settings: Mapping[str, Any]
    model_settings: Mapping[str, Any]
    text_settings: Mapping[str, Any]
    run_id: str
    preview: Path | None = None  # the dense tasks' PNG of test predictions
    fractions: tuple[float, ...] = ()  # the training fractions evaluated (empty: every subset of the dataset)
    experiment: str = "base"
    experiment_sha256: str | None = None

    def recorded(self) -> dict[str, Any]:
        """The settings a provenance record keeps (paths are recorded as inputs instead)."""
        skip = {"records", "subsets", "shards", "weights_file", "run_id", "preview"}
        return {k: v for k, v in asdict(self).items() if k not in skip}

    def dataset(self) -> EvalDataset:
        """The prepared dataset of ``records``."""
        return load_eval_dataset(self.records)

    def run_info(self, dataset: EvalDataset) -> RunInfo:
        """What every result row of this request shares (the evaluated file's sha256 included)."""
        checkpoint = file_sha256(self.weights_file) if self.weights_file else None
        return RunInfo(dataset=dataset.name, task=self.task, method=self.method.name, run_id=self.run_id,
                       checkpoint_sha256=checkpoint, experiment=self.experiment,
                       experiment_sha256=self.experiment_sha256)

    def training_subsets(self, seed: int | None = None) -> dict[float, list[str]]:
        """Training keys per evaluated fraction: every subset of the dataset, or those ``fractions`` names;
        ``seed`` picks the evaluation seed's draw where the subsets were drawn per seed."""
        subsets = read_subsets(self.subsets, seed)
        missing = [f for f in self.fractions if f not in subsets]
        if missing:
            raise ValueError(f"{self.subsets}: no training subset for fraction(s) {missing}; it holds "
                             f"{sorted(subsets)} (evaluate.fractions of the dataset rule)")
        return {f: keys for f, keys in subsets.items() if not self.fractions or f in self.fractions}


def fits_progress(request: EvalRequest, logger: logging.Logger) -> ProgressLog:
    """Progress over the request's fits: one trained head or model per seed and training fraction."""
    fits = len(request.seeds) * len(request.training_subsets(request.seeds[0]))
    return ProgressLog(logger, request.task, fits, "fits")


def fit_name(request: EvalRequest, seed: int, fraction: float) -> str:
    """``seed 7 (2/3), fraction 10 %``: which fit of the request's ``fits_progress`` this is."""
    return f"seed {seed} ({request.seeds.index(seed) + 1}/{len(request.seeds)}), fraction {fraction:g} %"


def evaluate(request: EvalRequest) -> list[dict[str, object]]:
    """Result rows of ``request`` (one per metric, fraction and seed), from its task's ``run``."""
    return task_module(request.task).run(request)
