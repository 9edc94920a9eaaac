"""One task's settings for one dataset: the ``evaluate.<task>`` block with its per-dataset overrides.

A block may hold ``per_dataset: {<dataset>: {<setting>: value}}`` for what differs between datasets,
e.g. the paper's segmentation batch size (16 for RSNA, 8 for SIIM) or SIIM's balanced training set.
The resolved settings are what an evaluation job records and reruns on, so changing one dataset's
override or the task's dataset list does not rerun the other datasets' jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_NOT_SETTINGS = ("datasets", "per_dataset")


def task_settings(block: Mapping[str, Any], dataset: str, where: str = "evaluate") -> dict[str, Any]:
    """``block`` without its dataset list, with ``per_dataset[dataset]`` merged over it.

    An override must name a setting the block has (ValueError otherwise, naming ``where``).
    """
    settings = {k: v for k, v in block.items() if k not in _NOT_SETTINGS}
    overrides = dict(block.get("per_dataset", {}).get(dataset, {}))
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise ValueError(f"{where}.per_dataset.{dataset}: unknown setting(s) {', '.join(unknown)} "
                         f"(the block has {', '.join(sorted(settings))})")
    return {**settings, **overrides}
