"""The shared dataset preparation: patient-level split draw, leakage check, subsets, adapter loading.

Preparation end to end (accounting, dataset facts, byte-identical reruns) is checked for every adapter,
the toy one included, by tests/test_adapter_contract.py.
"""

from collections import Counter

import numpy as np
import pytest

from imitate.datasets import adapter_class, load_adapter
from imitate.datasets.base import records_table, rejects_table
from imitate.datasets.dataset import Prepared
from imitate.datasets.splits import LeakageError, check_leakage, draw_splits, nested_subsets, subsets_table
from imitate.evaluate.data.prepared import read_subsets


def _records(n, per_patient=3, split=None):
    return records_table([
        {"key": f"k{i:03d}", "patient_id": f"p{i // per_patient:03d}", "path": f"{i}.png", "split": split,
         "labels": [float(i % 2)]}
        for i in range(n)
    ])


def _patients_by_split(table):
    out = {}
    for patient, split in zip(table["patient_id"].to_pylist(), table["split"].to_pylist(), strict=True):
        out.setdefault(patient, set()).add(split)
    return out


def test_draw_splits_is_by_patient_seeded_and_sized():
    table = draw_splits(_records(300), {"validate": 0.15, "test": 0.15}, seed=0)
    assert all(len(s) == 1 for s in _patients_by_split(table).values())
    counts = Counter(table["split"].to_pylist())
    assert counts["test"] == 45 and counts["validate"] == 45 and counts["train"] == 210
    again = draw_splits(_records(300), {"validate": 0.15, "test": 0.15}, seed=0)
    other = draw_splits(_records(300), {"validate": 0.15, "test": 0.15}, seed=1)
    assert again["split"].to_pylist() == table["split"].to_pylist() != other["split"].to_pylist()


def test_draw_splits_takes_image_counts_and_keeps_official_splits():
    pool = _records(30)
    official = records_table([{"key": "t0", "patient_id": "q0", "path": "t.png", "split": "test", "labels": [1.0]}])
    import pyarrow as pa

    table = draw_splits(pa.concat_tables([pool, official]), {"validate": 6}, seed=0)
    counts = Counter(table["split"].to_pylist())
    assert counts == {"validate": 6, "train": 24, "test": 1}
    with pytest.raises(ValueError, match="more than the 30 images"):
        draw_splits(pool, {"validate": 20, "test": 20}, seed=0)
    with pytest.raises(ValueError, match="'validate' and 'test' only"):
        draw_splits(pool, {"train": 0.5}, seed=0)


def _sized(sizes):
    """A pool with patient ``p<i>`` holding ``sizes[i]`` images (keys ``p<i>_<j>``)."""
    return records_table([
        {"key": f"p{i}_{j}", "patient_id": f"p{i}", "path": f"p{i}_{j}.png", "split": None, "labels": [0.0]}
        for i, size in enumerate(sizes) for j in range(size)
    ])


def _split_of_patients(table):
    groups = _patients_by_split(table)
    assert all(len(s) == 1 for s in groups.values())  # no patient straddles two splits
    return {patient: next(iter(s)) for patient, s in groups.items()}


def test_draw_splits_passes_over_patients_that_would_overshoot():
    # The seed-0 shuffle of 6 sorted patients (numpy's PCG64; the derivation below rests on it).
    assert np.random.default_rng(0).permutation(6).tolist() == [3, 2, 5, 4, 0, 1]
    # Images per patient p0..p5; walked in the order p3 (2), p2 (3), p5 (2), p4 (1), p0 (1), p1 (1).
    sizes = [1, 1, 3, 2, 1, 2]
    # test, target 3: p3 joins (2); p2 (2 + 3 > 3) and p5 (2 + 2 > 3) are passed over; p4 joins (3), stop.
    # validate, target 3, walks what is left, p2 p5 p0 p1: p2 joins (3), stop. Train: p5, p0, p1.
    # (Dealing until "at least the target" gave test p3 + p2 = 5 images, validate p5 + p4 = 3, train 2.)
    for draw in ({"test": 3, "validate": 3}, {"test": 0.3, "validate": 0.3}):
        table = draw_splits(_sized(sizes), draw, seed=0)
        assert _split_of_patients(table) == {"p3": "test", "p4": "test", "p2": "validate", "p5": "train",
                                             "p0": "train", "p1": "train"}
        assert Counter(table["split"].to_pylist()) == {"test": 3, "validate": 3, "train": 4}


def test_draw_splits_never_overshoots_when_no_patient_fits_the_gap():
    # Four patients of two images, test target 3: the first patient of the walk joins (2); every other
    # would make 4 > 3, so the split stays at 2 (fewer, never more) and the rest is train.
    table = draw_splits(_sized([2, 2, 2, 2]), {"test": 3}, seed=5)
    assert Counter(table["split"].to_pylist()) == {"test": 2, "train": 6}
    assert sorted(_split_of_patients(table).values()) == ["test", "train", "train", "train"]


def test_draw_splits_with_one_image_per_patient_takes_the_next_patients_of_the_shuffle():
    table = draw_splits(_records(20, per_patient=1), {"test": 0.25, "validate": 3}, seed=7)
    order = [f"p{i:03d}" for i in np.random.default_rng(7).permutation(20)]
    expected = dict.fromkeys(order[:5], "test") | dict.fromkeys(order[5:8], "validate")
    assert _split_of_patients(table) == {p: expected.get(p, "train") for p in order}


def test_draw_splits_is_exact_on_mixed_patient_sizes_and_seeded():
    rng = np.random.default_rng(123)
    for seed in range(20):
        sizes = [int(v) for v in rng.choice([1, 1, 1, 2, 3, 5, 8], size=60)]  # mixed sizes, many singles
        table = draw_splits(_sized(sizes), {"test": 0.2, "validate": 17}, seed=seed)
        counts = Counter(table["split"].to_pylist())
        assert counts["test"] == round(0.2 * sum(sizes)) and counts["validate"] == 17, (seed, counts)
        _split_of_patients(table)
        again = draw_splits(_sized(sizes), {"test": 0.2, "validate": 17}, seed=seed)
        assert again["split"].to_pylist() == table["split"].to_pylist()


def test_leakage_check_names_the_patient_in_two_splits():
    table = _records(6, split="train").to_pylist()
    table[5]["split"] = "test"  # patient p001 now has train and test images
    with pytest.raises(LeakageError, match=r"1 patient\(s\).*p001 \(test/train\)"):
        check_leakage(records_table(table), "dataset 'toy'")
    table[3]["split"] = table[4]["split"] = "test"
    check_leakage(records_table(table), "dataset 'toy'")


def test_nested_subsets_are_nested_seeded_and_sized():
    keys = [f"k{i:03d}" for i in range(250)]
    subsets = nested_subsets(keys, [1, 10, 100], seed=0)
    assert [len(subsets[f]) for f in (1, 10, 100)] == [3, 25, 250]
    assert set(subsets[1]) <= set(subsets[10]) <= set(subsets[100])
    assert nested_subsets(list(reversed(keys)), [10], seed=0)[10] == subsets[10]
    assert nested_subsets(keys, [10], seed=1)[10] != subsets[10]
    with pytest.raises(ValueError, match="percentages"):
        nested_subsets(keys, [0], seed=0)


def test_subsets_come_from_the_train_split_only():
    table = draw_splits(_records(60), {"validate": 0.2, "test": 0.2}, seed=0)
    subsets = subsets_table(table, [50, 100], seed=0)
    train = {k for k, s in zip(table["key"].to_pylist(), table["split"].to_pylist(), strict=True) if s == "train"}
    full = {k for f, k in zip(subsets["fraction"].to_pylist(), subsets["key"].to_pylist(), strict=True) if f == 100}
    assert full == train


def _by_fraction(table, seed=None):
    rows = table.to_pylist()
    return {f: sorted(r["key"] for r in rows if r["fraction"] == f and r.get("seed") == seed)
            for f in sorted({r["fraction"] for r in rows})}


def test_subsets_drawn_per_evaluation_seed_differ_by_seed_and_keep_their_sizes(tmp_path):
    import math

    import pyarrow.parquet as pq

    table = draw_splits(_records(300, per_patient=1), {"validate": 0.2, "test": 0.2}, seed=0)
    train = sorted(k for k, s in zip(table["key"].to_pylist(), table["split"].to_pylist(), strict=True)
                   if s == "train")
    # without subsets_per_seed, today's one draw: the first ceil(f/100 n) of numpy's permutation by the seed
    order = np.random.default_rng(5).permutation(len(train))
    today = {f: sorted(train[i] for i in order[: math.ceil(f / 100 * len(train))]) for f in (1.0, 10.0, 100.0)}
    fixed = subsets_table(table, [1, 10, 100], seed=5)
    assert fixed.column_names == ["fraction", "key"] and _by_fraction(fixed) == today
    per_seed = subsets_table(table, [1, 10, 100], seed=5, subset_seeds=[1, 0])
    assert per_seed.column_names == ["seed", "fraction", "key"]
    draws = {s: _by_fraction(per_seed, s) for s in (0, 1)}
    for draw in draws.values():
        assert {f: len(keys) for f, keys in draw.items()} == {1.0: 2, 10.0: 18, 100.0: 180}
        assert set(draw[1.0]) <= set(draw[10.0]) <= set(draw[100.0]) and draw[100.0] == train
    assert draws[0][1.0] != draws[1][1.0] and draws[0][10.0] != draws[1][10.0]
    assert subsets_table(table, [1, 10, 100], seed=5, subset_seeds=[0, 1]).equals(per_seed)  # a rerun
    counts = Prepared(table, rejects_table([]), per_seed, {"n_input": 300}).counts()
    assert counts["train_subsets"] == {"1": 2, "10": 18, "100": 180}  # one draw's sizes, not the sum
    pq.write_table(per_seed, tmp_path / "per_seed.parquet")
    pq.write_table(fixed, tmp_path / "fixed.parquet")
    assert read_subsets(tmp_path / "per_seed.parquet", 1) == draws[1]
    assert read_subsets(tmp_path / "fixed.parquet", 1) == read_subsets(tmp_path / "fixed.parquet") == today
    with pytest.raises(ValueError, match=r"drawn for evaluation seeds \[0, 1\], not for seed 2"):
        read_subsets(tmp_path / "per_seed.parquet", 2)


def test_unknown_options_and_modules_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown option.*labels_fil .*known: labels_file"):
        load_adapter("toy", {"adapter": "tests.helpers.toy_adapter", "root": tmp_path,
                             "options": {"labels_fil ": "x"}})
    with pytest.raises(ValueError, match=r"no dataset adapter module 'imitate\.datasets\.nope'"):
        adapter_class("nope")
    with pytest.raises(ValueError, match="has no class Adapter"):
        adapter_class("imitate.datasets.splits")
