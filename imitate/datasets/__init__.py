"""Downstream datasets: one adapter module per dataset, one shared preparation (splits, subsets, shards)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imitate.datasets.base import DatasetAdapter


def adapter_class(adapter: str) -> type[DatasetAdapter]:
    """The ``Adapter`` class of ``imitate.datasets.<adapter>``, or of module ``adapter`` if it is dotted."""
    module_name = adapter if "." in adapter else f"imitate.datasets.{adapter}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise ValueError(f"no dataset adapter module {module_name!r} (see README, 'Adding a dataset')") from error
    cls = getattr(module, "Adapter", None)
    if not (isinstance(cls, type) and issubclass(cls, DatasetAdapter)):
        raise ValueError(f"module {module_name!r} has no class Adapter(DatasetAdapter)")
    return cls


def load_adapter(name: str, entry: Mapping[str, Any]) -> DatasetAdapter:
    """The adapter of config entry ``datasets.<name>`` (keys ``adapter``, ``root``, ``options``)."""
    cls = adapter_class(entry["adapter"])
    return cls(name, Path(entry["root"]), entry.get("options") or {})
