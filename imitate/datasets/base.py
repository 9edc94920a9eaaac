"""The interface every downstream dataset adapter implements, and the tables adapters return.

An adapter turns a dataset's real raw files (label CSVs, list files, image trees) into one common
*records* table and a *rejects* table, and can write a demo copy of those raw files. Everything after
that (image checks, splits, the leakage check, training subsets, shards) is shared:
:func:`imitate.datasets.dataset.prepare_dataset`.

A dataset is a config entry (``datasets.<name>``: adapter, root, options) plus one adapter module
``imitate/datasets/<adapter>.py`` (or any importable module) defining a class ``Adapter``.
"""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pyarrow as pa

Kind = Literal["binary", "multilabel", "multiclass"]
KINDS: tuple[str, ...] = ("binary", "multilabel", "multiclass")
SPLITS: tuple[str, ...] = ("train", "validate", "test")

# One row per image. ``labels`` holds one 0/1 target per label name (multiclass: one-hot), after the
# dataset's uncertainty policy; ``split`` is the official split or null (drawn later by patient);
# ``text`` is a report (retrieval sets); ``boxes`` are [x0, y0, x1, y1] in original image pixels;
# ``mask_rle`` is a run-length mask at the original size (:mod:`imitate.datasets.masks`; null: none).
RECORD_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("patient_id", pa.string()),
        ("path", pa.string()),
        ("split", pa.string()),
        ("labels", pa.list_(pa.float32())),
        ("text", pa.string()),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("mask_rle", pa.string()),
    ]
)
# One row per input record left out: where it came from (file and 1-based line or row), and why.
REJECT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("line", pa.int64()),
        ("key", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)
LABELS_METADATA_KEY = "imitate.dataset"


@dataclass(frozen=True)
class DemoSpec:
    """How large a demo copy to write, its drawing seed and the shorter side of its images."""

    n_images: int
    seed: int
    image_size: int


@dataclass(frozen=True)
class Parsed:
    """What an adapter read: the records (:data:`RECORD_SCHEMA`), the rejects, and the input row count.

    ``n_input`` counts every record of the raw files the adapter looked at, so that
    ``n_input == records + rejects`` can be checked.
    """

    records: pa.Table
    rejects: pa.Table
    n_input: int


def records_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A :data:`RECORD_SCHEMA` table from dict rows (missing optional fields are null)."""
    return pa.Table.from_pylist(list(rows), schema=RECORD_SCHEMA)


def rejects_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A :data:`REJECT_SCHEMA` table from dict rows (missing fields are null)."""
    return pa.Table.from_pylist(list(rows), schema=REJECT_SCHEMA)


class DatasetAdapter(ABC):
    """Reads one dataset's raw files into records; writes a demo copy of them.

    Subclasses set ``kind`` and ``defaults`` (every option the adapter understands, with its default;
    the config's ``options`` may override them, and unknown options are errors) and implement the
    abstract methods. ``split_draw`` says how rows without an official split are divided: a share
    (< 1) or an image count (>= 1) for ``validate`` and ``test``, drawn by patient; the rest is train.
    """

    kind: ClassVar[Kind]
    defaults: ClassVar[Mapping[str, Any]] = {}
    split_draw: ClassVar[Mapping[str, float]] = {}

    def __init__(self, name: str, root: str | Path, options: Mapping[str, Any] | None = None) -> None:
        unknown = sorted(set(options or {}) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)} (known: {known})")
        self.name = name
        self.root = Path(root)
        self.options: dict[str, Any] = {**self.defaults, **(options or {})}

    @abstractmethod
    def label_names(self) -> tuple[str, ...]:
        """Names of the entries of ``labels``, in order (multiclass: the classes)."""

    @abstractmethod
    def raw_files(self) -> dict[str, str]:
        """The label/list files the adapter reads, by role, relative to ``root`` (the demo writes them)."""

    @abstractmethod
    def read(self) -> Parsed:
        """Parse the raw files under ``root``. Image files are checked later, not here."""

    @abstractmethod
    def write_demo(self, spec: DemoSpec) -> None:
        """Write a synthetic copy of the raw files and images under ``root``, in the real format."""

    def raw_headers(self) -> dict[str, tuple[str, ...]]:
        """For each raw-file role with a header line, the column names it must hold (preflight checks).

        Roles left out (headerless list files, or an adapter that does not say) are checked for existence
        only.
        """
        return {}

    def image_dirs(self) -> tuple[str, ...]:
        """The directories under ``root`` the images are read from (preflight checks they exist)."""
        return ()

    def describe(self) -> dict[str, Any]:
        """What the prepared table's metadata records about this dataset."""
        return {
            "name": self.name,
            "adapter": type(self).__module__,
            "kind": self.kind,
            "labels": list(self.label_names()),
            "options": self.options,
        }


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a demo's label CSV as the real files are: a header line, ``\n`` line ends, UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def raw_path(adapter: DatasetAdapter, role: str) -> Path:
    """The absolute path of one of ``adapter``'s raw files."""
    return adapter.root / adapter.raw_files()[role]
