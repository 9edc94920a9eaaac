"""The downstream tasks, one module each, named as in config.yaml, the rules and ``imitate evaluate``.

Every task module defines ``Settings`` (a frozen dataclass read from the task's resolved config block
by ``Settings.from_block``) and ``run(request) -> rows`` (one result row per metric, fraction and seed,
:mod:`imitate.evaluate.rows`). A task module is imported only when its task runs, so the workflow and
the command line can list the tasks without importing torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASKS: tuple[str, ...] = (
    "linear_classification", "finetune_classification", "segmentation", "detection", "zero_shot", "retrieval"
)
DENSE_TASKS: tuple[str, ...] = ("segmentation", "detection")  # also write a preview PNG of their predictions


def task_module(task: str) -> ModuleType:
    """The module of ``task`` (ValueError for a name that is not a task)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")
    return importlib.import_module(f"{__name__}.{task}")
