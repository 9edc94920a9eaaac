"""The contract every registered dataset adapter keeps, checked on the demo copy its own writer makes.

The adapters are the modules of ``imitate/datasets/`` that :func:`imitate.datasets.adapter_class`
accepts (any module there with a class ``Adapter(DatasetAdapter)``), plus the README's toy adapter;
each needs a :class:`Case` below, so a new adapter cannot join the registry untested. For each one:

* demo: the demo writer writes every raw file, with the header columns and image folders it declares;
* read: records and rejects in the shared schemas, labels of the declared kind and width;
* prepare: the ``dataset`` stage's preparation writes records, rejects, subsets and counts that agree;
* leak-free splits: no patient in two splits, checked here from the written records;
* accounting: every raw record, read from the raw files here with ``csv``/``gzip``, ends in the records
  or in the rejects with a reason, and the counts add up (one image is removed to force a reject);
* determinism: the demo is a function of its seed, and preparing twice gives byte-identical files;
* shards: the prepared records can be sharded, and the tars hold every record's key, once.

Each adapter's own parsing, its real label files and its exact counts stay in ``test_dataset_<name>.py``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import pkgutil
import re
import shutil
import tarfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.parquet as pq
import pytest

import imitate.datasets
from imitate.datasets import adapter_class, load_adapter
from imitate.datasets.base import KINDS, RECORD_SCHEMA, REJECT_SCHEMA, SPLITS, DatasetAdapter, DemoSpec, raw_path
from imitate.datasets.dataset import prepare_dataset, read_dataset_facts, write_prepared
from imitate.shards.writer import write_shards

TOY = "tests.helpers.toy_adapter"
SEED = 0
FRACTIONS = (1.0, 10.0, 100.0)
PREPARED = ("records", "rejects", "subsets", "counts")


# --- the raw files, read with csv and gzip only (not with the adapters' parsers) ---------------------


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8")


def _header(path: Path) -> list[str]:
    return [name.strip() for name in next(csv.reader(io.StringIO(_text(path))))]


def _column(adapter: DatasetAdapter, role: str, column: str) -> list[str]:
    """One column of the raw CSV of ``role``, a value per data row (blank lines hold no row)."""
    rows = csv.reader(io.StringIO(_text(raw_path(adapter, role))))
    index = [name.strip() for name in next(rows)].index(column)
    return [row[index].strip() for row in rows if row]


def _chexpert_key(path: str) -> str:
    return "_".join(path.removesuffix(".jpg").split("/")[-3:])  # patient00001_study1_view1_frontal


def _covidx_keys(adapter: DatasetAdapter) -> list[str]:
    keys = []
    for role in ("train", "test"):  # "<patient id, may hold spaces> <file name> <label> <source>"
        for line in _text(raw_path(adapter, role)).splitlines():
            stem = line.rsplit(" ", 3)[1].rsplit(".", 1)[0]
            keys.append(f"{role}_{re.sub(r'[^A-Za-z0-9_-]+', '_', stem)}")
    return keys


# Every raw record's key, in the raw files' order. RSNA and SIIM files hold several rows per record
# (a box or a mask part each): their record is the patient / the image.
RAW_KEYS: dict[str, Callable[[DatasetAdapter], list[str]]] = {
    "rsna": lambda a: list(dict.fromkeys(_column(a, "labels", "patientId"))),
    "siim": lambda a: list(dict.fromkeys(i.replace(".", "_") for i in _column(a, "labels", "ImageId"))),
    "chexpert": lambda a: [_chexpert_key(p) for role in ("train", "valid") for p in _column(a, role, "Path")],
    "chexpert_5x200": lambda a: [_chexpert_key(p) for p in _column(a, "train", "Path")],
    "covidx": _covidx_keys,
    "chestxray14": lambda a: [n.removesuffix(".png") for n in _column(a, "labels", "Image Index")],
    "object_cxr": lambda a: [Path(n).stem for role in ("train", "dev") for n in _column(a, role, "image_name")],
    "mimic_5x200": lambda a: _column(a, "metadata", "dicom_id"),
    "table": lambda a: _column(a, "table", "dicom_id"),
    TOY: lambda a: _column(a, "labels", "key"),
}
ALL_SPLITS = frozenset(SPLITS)


@dataclass(frozen=True)
class Case:
    """How to run one adapter's demo through the contract, and what its demo must give."""

    spec: DemoSpec
    options: Mapping[str, Any] = field(default_factory=dict)
    split_draw: Mapping[str, float] | None = None  # None: the adapter's own, as the stage without --split
    raw_records: int | None = None  # raw records the demo writes (None: not pinned here)
    splits: frozenset[str] = ALL_SPLITS  # the splits of the prepared demo
    demo_rejects: Mapping[str, int] | None = None  # reject reasons of the intact demo (None: not pinned)
    shared_patients: bool = False  # some patient has several images in the drawn pool
    seed_free: frozenset[str] = frozenset()  # raw-file roles the demo writes alike for every seed


CASES: dict[str, Case] = {
    "rsna": Case(DemoSpec(24, 0, 48), raw_records=24, demo_rejects={}),
    "siim": Case(DemoSpec(24, 0, 48), raw_records=24, demo_rejects={}, shared_patients=True),
    # CheXpert's own draw (5,000 validation images) is the real set's; the demo's 5x200 holds 2 per class
    "chexpert": Case(
        DemoSpec(120, 0, 32), {"per_class": 2}, split_draw={"validate": 0.2}, raw_records=120, shared_patients=True
    ),
    "chexpert_5x200": Case(
        DemoSpec(120, 0, 32), {"per_class": 2, "reports": "master_updated.csv"}, splits=frozenset({"test"})
    ),
    "covidx": Case(DemoSpec(40, 1, 32), raw_records=40, demo_rejects={}, shared_patients=True),
    "chestxray14": Case(DemoSpec(24, 0, 32), raw_records=24, demo_rejects={}, shared_patients=True),
    "object_cxr": Case(DemoSpec(12, 0, 32), raw_records=12, demo_rejects={}),
    "mimic_5x200": Case(DemoSpec(100, 0, 32), {"per_class": 1}, splits=frozenset({"test"})),
    # the demo's exports/labels.csv as the tiny workflow maps it (uncertain -1.0 as ones: no rejects)
    "table": Case(
        DemoSpec(40, 0, 32),
        {"table": "exports/labels.csv", "kind": "multilabel", "uncertain": "ones",
         "columns": {"path": "image", "patient": "patient", "key": "dicom_id"},
         "labels": ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]},
        demo_rejects={},
        shared_patients=True,
    ),
    # 40 films and one malformed row; its labels alternate, so only the films follow the seed
    TOY: Case(
        DemoSpec(40, 0, 8),
        raw_records=41,
        demo_rejects={"bad_label": 1},
        shared_patients=True,
        seed_free=frozenset({"labels"}),
    ),
}


def registered() -> list[str]:
    """The modules of imitate/datasets/ that the registry (``adapter_class``) takes as adapters."""
    names = []
    for module in pkgutil.iter_modules(imitate.datasets.__path__):
        try:
            adapter_class(module.name)
        except ValueError:  # a shared module (base, splits, ...): no Adapter class
            continue
        names.append(module.name)
    return sorted(names)


ADAPTERS = [*registered(), TOY]


class Demo(NamedTuple):
    name: str
    case: Case
    root: Path

    def adapter(self, root: Path | None = None) -> DatasetAdapter:
        """A fresh adapter, made as the ``dataset`` stage makes it (config entry -> load_adapter)."""
        entry = {"adapter": self.name, "root": root or self.root, "options": dict(self.case.options)}
        return load_adapter(self.name.rsplit(".", 1)[-1], entry)


def _prepare(demo: Demo, out: Path, root: Path | None = None) -> dict[str, Path]:
    """What the ``dataset`` stage does: prepare_dataset with the stage's arguments, then write_prepared."""
    prepared = prepare_dataset(demo.adapter(root), seed=SEED, fractions=FRACTIONS, split_draw=demo.case.split_draw)
    return write_prepared(prepared, out)


def _rows(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=ADAPTERS, ids=lambda name: name.rsplit(".", 1)[-1])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """The adapter's demo copy, written by its own writer (one per adapter, shared by the tests)."""
    name = request.param
    if name not in CASES:
        pytest.fail(f"adapter {name!r} is registered but has no contract case: add one to CASES")
    root = tmp_path_factory.mktemp(f"demo_{name.rsplit('.', 1)[-1]}")
    made = Demo(name, CASES[name], root)
    made.adapter().write_demo(made.case.spec)
    return made


@pytest.fixture(scope="module")
def prepared(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo prepared as the ``dataset`` stage prepares it: the four files it writes."""
    return _prepare(demo, tmp_path_factory.mktemp("prepared"))


def test_the_cases_name_exactly_the_registered_adapters():
    assert {"rsna", "siim", "chexpert", "chexpert_5x200", "covidx", "chestxray14", "object_cxr", "mimic_5x200"} <= set(
        registered()
    )  # the registry still finds the shipped adapters
    assert set(CASES) == set(ADAPTERS) == set(RAW_KEYS)


def test_demo_writes_the_raw_files_in_their_declared_layout(demo: Demo):
    adapter = demo.adapter()
    for role in adapter.raw_files():
        assert raw_path(adapter, role).is_file() and raw_path(adapter, role).stat().st_size > 0, role
    assert set(adapter.raw_headers()) <= set(adapter.raw_files())
    for role, columns in adapter.raw_headers().items():
        header = _header(raw_path(adapter, role))
        assert set(columns) <= set(header), (role, sorted(set(columns) - set(header)))
    assert adapter.image_dirs()
    for folder in adapter.image_dirs():
        assert any(p.is_file() for p in (demo.root / folder).rglob("*")), folder
    keys = RAW_KEYS[demo.name](adapter)
    assert keys and len(set(keys)) == len(keys)
    if demo.case.raw_records is not None:
        assert len(keys) == demo.case.raw_records
    for record in adapter.read().records.to_pylist():  # every image the raw files keep is there
        assert (demo.root / record["path"]).is_file(), record["path"]


def test_read_gives_records_of_the_declared_columns_and_kind(demo: Demo):
    adapter = demo.adapter()
    parsed = adapter.read()
    assert parsed.records.schema.equals(RECORD_SCHEMA) and parsed.rejects.schema.equals(REJECT_SCHEMA)
    assert adapter.kind in KINDS
    names = adapter.label_names()
    assert names and len(set(names)) == len(names)
    records = parsed.records.to_pylist()
    assert records and parsed.n_input == len(records) + parsed.rejects.num_rows
    keys = [r["key"] for r in records]
    assert len(set(keys)) == len(keys)
    for record in records:
        assert record["key"] and "." not in record["key"] and record["patient_id"], record
        assert record["split"] in (None, *SPLITS)
        assert any(record["path"].startswith(f"{folder.rstrip('/')}/") for folder in adapter.image_dirs()), record
        labels = record["labels"]
        assert len(labels) == len(names) and set(labels) <= {0.0, 1.0}, record
        if adapter.kind == "multiclass":
            assert sum(labels) == 1.0, record
        for x0, y0, x1, y1 in record["boxes"] or []:
            assert 0 <= x0 < x1 and 0 <= y0 < y1, record
    for reject in parsed.rejects.to_pylist():
        assert reject["reason"] and reject["source"], reject


def test_prepare_writes_records_and_subsets_as_the_dataset_stage_does(demo: Demo, prepared: dict[str, Path]):
    adapter = demo.adapter()
    assert sorted(prepared) == sorted(PREPARED) and all(prepared[name].is_file() for name in PREPARED)
    assert pq.read_schema(prepared["records"]).remove_metadata().equals(RECORD_SCHEMA)
    for name in ("records", "rejects", "subsets"):
        facts = read_dataset_facts(prepared[name])
        assert facts["name"] == adapter.name and facts["adapter"] == type(adapter).__module__
        assert facts["kind"] == adapter.kind and facts["labels"] == list(adapter.label_names())
        assert facts["seed"] == SEED and facts["fractions"] == list(FRACTIONS)
    records, rejects = _rows(prepared["records"]), _rows(prepared["rejects"])
    read = {r["key"]: r for r in adapter.read().records.to_pylist()}
    assert sorted(r["key"] for r in records) == sorted(read)  # the demo's images are all there
    assert "image_missing" not in {r["reason"] for r in rejects}
    assert {r["split"] for r in records} == demo.case.splits
    for record in records:  # an official split is kept; the draw fills only the others
        assert read[record["key"]]["split"] in (None, record["split"]), record["key"]

    train = sorted(r["key"] for r in records if r["split"] == "train")
    subsets: dict[float, list[str]] = {}
    for row in _rows(prepared["subsets"]):
        subsets.setdefault(row["fraction"], []).append(row["key"])
    assert sorted(subsets) == (list(FRACTIONS) if train else [])
    previous: set[str] = set()
    for fraction in sorted(subsets):  # nested, sized ceil(f % of train), all of train at 100 %
        keys = set(subsets[fraction])
        assert len(keys) == len(subsets[fraction]) == max(1, math.ceil(fraction / 100 * len(train)))
        assert previous <= keys <= set(train)
        previous = keys
    if train:
        assert sorted(subsets[100.0]) == train

    counts = json.loads(prepared["counts"].read_text())
    assert counts == {
        "input_records": len(RAW_KEYS[demo.name](adapter)),
        "records": len(records),
        "rejected": len(rejects),
        "by_split": dict(Counter(r["split"] for r in records)),
        "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
        "train_subsets": {f"{f:g}": len(keys) for f, keys in subsets.items()},
    }


def test_splits_are_leak_free(demo: Demo, prepared: dict[str, Path]):
    splits_of: dict[str, set[str]] = {}
    for record in _rows(prepared["records"]):
        splits_of.setdefault(record["patient_id"], set()).add(record["split"])
    leaks = {patient: sorted(splits) for patient, splits in splits_of.items() if len(splits) > 1}
    assert not leaks
    if demo.case.shared_patients:  # so that a draw by row, not by patient, could have split one
        pool = Counter(r["patient_id"] for r in demo.adapter().read().records.to_pylist() if r["split"] is None)
        assert max(pool.values()) >= 2


def _remove_one_image(adapter: DatasetAdapter) -> str:
    """Delete one record's image (and any copy the adapter falls back to); that record's key."""
    key = min(r["key"] for r in adapter.read().records.to_pylist())
    for _ in range(4):
        path = next(r["path"] for r in adapter.read().records.to_pylist() if r["key"] == key)
        if not (adapter.root / path).is_file():
            return key
        (adapter.root / path).unlink()
    raise AssertionError(f"{key}: the adapter still finds an image after removing {path}")


def test_every_raw_record_is_kept_or_rejected_with_a_reason(demo: Demo, tmp_path: Path):
    root = shutil.copytree(demo.root, tmp_path / "raw")
    adapter = demo.adapter(root)
    removed = _remove_one_image(adapter)
    paths = _prepare(demo, tmp_path / "out", root)
    records, rejects = _rows(paths["records"]), _rows(paths["rejects"])

    raw = RAW_KEYS[demo.name](adapter)  # from the raw files, not from the adapter
    assert Counter(r["key"] for r in records) + Counter(r["key"] for r in rejects) == Counter(raw)
    sources = set(adapter.raw_files().values())
    for reject in rejects:
        assert isinstance(reject["reason"], str) and reject["reason"], reject
        if reject["reason"] == "image_missing":
            assert reject["key"] == removed and not (root / reject["source"]).exists(), reject
        else:
            assert reject["source"] in sources and reject["line"] >= 1, reject
    reasons = Counter(r["reason"] for r in rejects)
    assert reasons.pop("image_missing") == 1
    if demo.case.demo_rejects is not None:
        assert reasons == Counter(demo.case.demo_rejects)

    counts = json.loads(paths["counts"].read_text())
    assert counts["input_records"] == len(raw) == counts["records"] + counts["rejected"]
    assert counts["records"] == len(records) == sum(counts["by_split"].values())
    assert counts["rejected"] == len(rejects) == sum(counts["rejects_by_reason"].values())


def test_the_demo_is_a_function_of_its_seed(demo: Demo, tmp_path: Path):
    spec = demo.case.spec
    demo.adapter(tmp_path / "twin").write_demo(spec)
    assert _tree_digest(tmp_path / "twin") == _tree_digest(demo.root)
    other = demo.adapter(tmp_path / "other")
    other.write_demo(DemoSpec(spec.n_images, spec.seed + 1, spec.image_size))
    changed = {
        role for role in other.raw_files() if _sha256(raw_path(other, role)) != _sha256(raw_path(demo.adapter(), role))
    }
    assert changed == set(other.raw_files()) - demo.case.seed_free
    assert _tree_digest(tmp_path / "other") != _tree_digest(demo.root)


def test_preparing_twice_gives_byte_identical_files(demo: Demo, prepared: dict[str, Path], tmp_path: Path):
    first = {name: _sha256(path) for name, path in prepared.items()}
    again = _prepare(demo, shutil.copytree(prepared["records"].parent, tmp_path / "again"))  # a rerun overwrites
    moved = _prepare(demo, tmp_path / "moved", shutil.copytree(demo.root, tmp_path / "elsewhere"))
    assert {name: _sha256(path) for name, path in again.items()} == first
    assert {name: _sha256(path) for name, path in moved.items()} == first  # the raw root is not in them


def test_shards_hold_every_record_once(demo: Demo, prepared: dict[str, Path], tmp_path: Path):
    records = pq.read_table(prepared["records"]).select(["key", "path", "split"])
    split_of = dict(zip(records["key"].to_pylist(), records["split"].to_pylist(), strict=True))
    written = write_shards(records, demo.root, tmp_path / "shards", image_size=32, samples_per_shard=8)
    assert written.samples == len(split_of) and written.rejected == 0
    members: Counter[str] = Counter()
    for shard in sorted((tmp_path / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, extension = member.name.rsplit(".", 1)
                members[member.name] += 1
                assert extension in ("json", "png") and split_of[key] == shard.name.rsplit("-", 1)[0], member.name
                if extension == "json":
                    assert json.loads(tar.extractfile(member).read())["key"] == key
    assert members == Counter(f"{key}.{extension}" for key in split_of for extension in ("json", "png"))
