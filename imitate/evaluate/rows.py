"""The long-format result rows every evaluation task writes (one row per metric value)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from imitate.evaluate.tasks import TASKS

FRACTION_ALL = "all"  # the fraction of tasks that train nothing (zero-shot, retrieval)
RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("task", pa.string()),
        ("fraction", pa.string()),
        ("method", pa.string()),
        ("experiment", pa.string()),
        ("experiment_sha256", pa.string()),
        ("seed", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("run_id", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("best_epoch", pa.int64()),
    ]
)


def fraction_name(fraction: float | str) -> str:
    """``1.0`` -> ``"1"``, ``10`` -> ``"10"``, ``"all"`` stays: the fraction as written in the tables."""
    return fraction if isinstance(fraction, str) else f"{float(fraction):g}"


@dataclass(frozen=True)
class RunInfo:
    """What every row of one evaluation run shares."""

    dataset: str
    task: str
    method: str
    run_id: str
    checkpoint_sha256: str | None
    experiment: str = "base"
    experiment_sha256: str | None = None  # the sha256 of the experiment's overrides

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; tasks are {', '.join(TASKS)}")


def result_rows(
    info: RunInfo,
    *,
    fraction: float | str,
    seed: int,
    metrics: Mapping[str, float],
    n_train: int | None,
    n_test: int,
    best_epoch: int | None = None,
) -> list[dict[str, object]]:
    """One row per metric of one (fraction, seed) result."""
    return [
        {
            "dataset": info.dataset,
            "task": info.task,
            "fraction": fraction_name(fraction),
            "method": info.method,
            "experiment": info.experiment,
            "experiment_sha256": info.experiment_sha256,
            "seed": seed,
            "metric": metric,
            "value": float(value),
            "run_id": info.run_id,
            "checkpoint_sha256": info.checkpoint_sha256,
            "n_train": n_train,
            "n_test": n_test,
            "best_epoch": best_epoch,
        }
        for metric, value in metrics.items()
    ]


def rows_table(rows: list[dict[str, object]]) -> pa.Table:
    """Rows as a :data:`RESULT_SCHEMA` table."""
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
