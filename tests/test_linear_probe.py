import gzip

import numpy as np
import pytest

from imitate.evaluate.labels import read_study_labels, uncertain_value
from imitate.evaluate.linear import ProbeSettings, linear_probe, nested_subsets


def _split(rng, n, w):
    x = rng.normal(size=(n, 16)).astype(np.float32) * 50 + 7  # badly scaled, like raw features
    y = ((x - 7) @ w > 0).astype(np.float32)
    return x, y


def test_linear_probe_learns_a_separable_problem_and_selects_on_validation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 2))
    result = linear_probe(
        _split(rng, 200, w), _split(rng, 100, w), _split(rng, 100, w), ProbeSettings(epochs=20, lr=1e-2, batch_size=16)
    )
    assert result.test_macro_auc > 0.95
    assert 1 <= result.best_epoch <= 20
    assert result.test_label_auc.shape == (2,)


def test_linear_probe_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 2))
    data = (_split(rng, 64, w), _split(rng, 32, w), _split(rng, 32, w))
    a = linear_probe(*data, ProbeSettings(epochs=2, seed=3))
    b = linear_probe(*data, ProbeSettings(epochs=2, seed=3))
    assert a.test_macro_auc == b.test_macro_auc


def test_nested_subsets_are_nested_seeded_and_sized():
    keys = [f"k{i:03d}" for i in range(250)]
    subsets = nested_subsets(keys, [1, 10, 100], seed=0)
    assert [len(subsets[f]) for f in (1, 10, 100)] == [3, 25, 250]
    assert set(subsets[1]) <= set(subsets[10]) <= set(subsets[100])
    assert subsets == nested_subsets(list(reversed(keys)), [1, 10, 100], seed=0)
    assert subsets[10] != nested_subsets(keys, [1, 10, 100], seed=1)[10]


def test_read_study_labels_applies_the_uncertainty_policy(tmp_path):
    path = tmp_path / "chexpert.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("subject_id,study_id,Atelectasis,Cardiomegaly\n")
        fh.write("10000001,50000001,-1.0,-1.0\n10000001,50000002,,1.0\n10000002,50000003,0.0,\n")
    labels = read_study_labels(
        path, ["Atelectasis", "Cardiomegaly"], {"ones": ["Atelectasis"], "zeros": ["Cardiomegaly"]}
    )
    assert labels[50000001].tolist() == [1.0, 0.0]
    assert labels[50000002].tolist() == [0.0, 1.0]
    assert labels[50000003].tolist() == [0.0, 0.0]


def test_labels_without_policy_or_column_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="no uncertainty policy"):
        uncertain_value("Edema", {"ones": [], "zeros": []})
    path = tmp_path / "l.csv"
    path.write_text("subject_id,study_id,Edema\n1,5,1.0\n")
    with pytest.raises(ValueError, match="lacks column"):
        read_study_labels(path, ["Cardiomegaly"], {"zeros": ["Cardiomegaly"]})
