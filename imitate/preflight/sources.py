"""What ``imitate preflight`` checks a run's data against: every raw input, as one :class:`Source` each.

A source is the MIMIC-CXR block ``data:`` or one downstream dataset that some ``evaluate.<task>``
uses, with the files and folders it must find, the columns its CSV headers must hold, and how many
images it will shard (for the disk estimate). Paths in the config are relative to the working
directory, as in the workflow. Data the workflow writes itself (``data.source: demo``, entries with
``demo:`` and entries sharing such a root) is marked ``demo`` and not looked at.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from imitate.datasets import load_adapter
from imitate.datasets.mimic_5x200 import LABEL_COLUMNS
from imitate.evaluate.tasks import TASKS
from imitate.manifest.build import METADATA_TYPES, SPLIT_TYPES

MIMIC = "MIMIC-CXR"  # the subject name of the data: block
# Raw files whose data lines bound a dataset's image count, where the others repeat it (by adapter).
IMAGE_LISTS: Mapping[str, tuple[str, ...]] = {"chestxray14": ("labels",)}
# Adapters that draw ``per_class`` images per class: that many are sharded, whatever the files hold.
PER_CLASS_ADAPTERS: tuple[str, ...] = ("chexpert_5x200", "mimic_5x200")
DEMO_IMAGES_PER_STUDY = 3  # the most views a demo MIMIC-CXR study has (imitate.demo.mimic)


@dataclass(frozen=True)
class Source:
    """The raw inputs of MIMIC-CXR (``data``) or of one dataset, paths relative to ``root``."""

    subject: str
    key: str  # its config block: ``data`` or ``datasets.<name>``
    root: Path
    fix: str  # what to do when one of its paths is wrong
    files: Mapping[str, str]  # role (MIMIC: its config key) -> file
    headers: Mapping[str, tuple[str, ...]]  # role -> the columns its header must hold
    dirs: tuple[tuple[str, str], ...]  # (what it holds, folder): each must exist
    one_of: tuple[str, ...] = ()  # folders of which at least one must exist (MIMIC's image trees)
    image_size: int = 0
    count: tuple[str, ...] = ()  # roles whose data lines bound the image count
    images: int | None = None  # a known image count instead (5x200 draws, demo sizes)
    demo: bool = False


def resolve(path: str | Path, workdir: Path) -> Path:
    """A config path as the workflow reads it: relative to the working directory."""
    return workdir / Path(path).expanduser()


def used_datasets(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every dataset some ``evaluate.<task>`` names -> the tasks naming it, in the order of ``datasets:``."""
    tasks: dict[str, list[str]] = {}
    for task in TASKS:
        for name in config["evaluate"][task]["datasets"]:
            tasks.setdefault(name, []).append(task)
    order = list(config["datasets"])
    return dict(sorted(tasks.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def demo_roots(config: Mapping[str, Any], workdir: Path) -> dict[Path, int]:
    """The roots the workflow writes demo data under -> the most images written there."""
    roots = {resolve(entry["root"], workdir): entry["demo"]["n_images"]
             for entry in config["datasets"].values() if "demo" in entry}
    if config["data"]["source"] == "demo":
        studies = config.get("demo", {}).get("n_studies", 0)
        roots[resolve(config["data"]["root"], workdir)] = studies * DEMO_IMAGES_PER_STUDY
    return roots


def table_source(config: Mapping[str, Any], workdir: Path) -> Source:
    """The table of ``data.source: table``: the file, and the mapped columns of a CSV's header (a Parquet
    table's are checked by its stage); its rows (a CSV's lines, a Parquet's row count) bound the images."""
    data = config["data"]
    root = resolve(data["root"], workdir)
    csv_table = not data["table"].lower().endswith(".parquet")
    path = root / data["table"]
    rows = pq.ParquetFile(path).metadata.num_rows if not csv_table and path.is_file() else None
    return Source(
        subject="pretraining table", key="data", root=root,
        fix="fix data.table (relative to data.root, or absolute) or data.root",
        files={"data.table": data["table"]},
        headers={"data.table": tuple(dict.fromkeys(data["columns"].values()))} if csv_table else {},
        dirs=(), image_size=config["shards"]["image_size"], count=("data.table",) if csv_table else (), images=rows,
    )


def mimic_source(config: Mapping[str, Any], workdir: Path, demo: Mapping[Path, int]) -> Source:
    """The MIMIC-CXR files, report tree and image trees of ``data:``, sharded at ``shards.image_size``
    (or the table of a table source)."""
    data = config["data"]
    if data["source"] == "table":
        return table_source(config, workdir)
    root = resolve(data["root"], workdir)
    return Source(
        subject=MIMIC, key="data", root=root,
        fix="put MIMIC-CXR-JPG 2.0.0 and the reports there as PhysioNet lays them out (README, Running on real "
            "MIMIC-CXR), or fix data.root or the key named",
        files={f"data.{key}": data[key] for key in ("metadata", "split", "labels")},
        headers={"data.metadata": tuple(METADATA_TYPES), "data.split": tuple(SPLIT_TYPES),
                 "data.labels": LABEL_COLUMNS},
        dirs=(("data.reports", data["reports"]),), one_of=tuple(tree["dir"] for tree in data["image_trees"]),
        image_size=config["shards"]["image_size"], count=("data.metadata",),
        images=demo.get(root) if data["source"] == "demo" else None, demo=data["source"] == "demo",
    )


def dataset_source(name: str, entry: Mapping[str, Any], tasks: list[str], workdir: Path,
                   demo: Mapping[Path, int]) -> Source:
    """Dataset ``name`` as its adapter declares it; ValueError if the adapter cannot be built."""
    adapter = load_adapter(name, {**entry, "root": resolve(entry["root"], workdir)})
    where = ", ".join(f"evaluate.{task}.datasets" for task in tasks)
    images = demo.get(adapter.root)
    if "demo" in entry:
        images = entry["demo"]["n_images"]
    if entry["adapter"] in PER_CLASS_ADAPTERS:
        images = len(adapter.label_names()) * int(adapter.options["per_class"])
    return Source(
        subject=name, key=f"datasets.{name}", root=adapter.root,
        fix=f"unpack {entry['adapter']}'s files there as distributed (README, Downstream evaluation), or fix "
            f"datasets.{name}.root / .options; without it, remove {name} from {where}",
        files=adapter.raw_files(), headers=adapter.raw_headers(),
        dirs=tuple(("image folder", folder) for folder in adapter.image_dirs()),
        image_size=entry["image_size"], count=IMAGE_LISTS.get(entry["adapter"], tuple(adapter.raw_files())),
        images=images, demo="demo" in entry or adapter.root in demo,
    )


def data_sources(config: Mapping[str, Any], workdir: Path) -> tuple[list[Source], dict[str, str]]:
    """MIMIC-CXR and every used dataset; and the datasets that cannot be built, with the reason."""
    demo = demo_roots(config, workdir)
    sources, errors = [mimic_source(config, workdir, demo)], {}
    for name, tasks in used_datasets(config).items():
        entry = config["datasets"].get(name)
        if entry is None:
            where = ", ".join(f"evaluate.{task}.datasets" for task in tasks)
            errors[name] = f"{where} names {name!r}, which has no entry under datasets: add one or remove it"
            continue
        try:
            sources.append(dataset_source(name, entry, tasks, workdir, demo))
        except ValueError as error:
            errors[name] = f"datasets.{name}: {error}"
    return sources, errors


def read_header(path: Path) -> list[str]:
    """The column names of a CSV's first line (``.gz`` read transparently), stripped as the readers do."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def data_lines(path: Path, header: bool) -> int:
    """Lines of a (gzipped) text file, less its header line: an upper bound on its records."""
    opener = gzip.open if path.suffix == ".gz" else open
    lines, last = 0, b"\n"
    with opener(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its line end
    return max(lines - header, 0)


def image_count(source: Source) -> int:
    """How many images ``source`` will shard at most (its known count, or the data lines of its lists)."""
    if source.images is not None:
        return source.images
    total = 0
    for role in source.count:
        path = source.root / source.files[role]
        if path.is_file():  # a missing file is a raw_files FAIL, not a disk one
            total += data_lines(path, header=role in source.headers)
    return total
