"""One task's settings for one dataset: the ``evaluate.<task>`` block with its per-dataset overrides.

A block may hold ``per_dataset: {<dataset>: {<setting>: value}}`` for what differs between datasets,
e.g. the paper's segmentation batch size (16 for RSNA, 8 for SIIM) or SIIM's balanced training set.
The resolved settings are what an evaluation job records and reruns on, so changing one dataset's
override or the task's dataset list does not rerun the other datasets' jobs. Each task reads them into
its typed ``Settings`` with :func:`from_block`, the one place a setting's name is checked; defaults live
in the config schema (for the workflow) and in the dataclass fields (for a direct call), nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")

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


def from_block(cls: type[T], block: Mapping[str, Any], where: str, **fixed: Any) -> T:
    """The dataclass ``cls`` from a resolved settings ``block`` plus ``fixed`` values (e.g. device, seed).

    Every key of the block must name a field (ValueError naming ``where`` otherwise); a field the block
    does not set keeps its default; lists become tuples (JSON has no tuples).
    """
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(block) - names)
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in block.items()}
    return cls(**{**values, **fixed})
