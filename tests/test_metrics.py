import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from imitate.evaluate.metrics.classification import macro_auc, per_label_auc, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + y, 1)  # rounding creates many ties
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_roc_auc_extremes_and_single_class():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(y, np.zeros(4)) == 0.5
    assert np.isnan(roc_auc(np.ones(4), np.arange(4.0)))


def test_macro_auc_matches_sklearn_and_skips_single_class_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (100, 3))
    s = rng.normal(size=(100, 3)) + y
    assert macro_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="macro"))
    y[:, 1] = 0
    aucs = per_label_auc(y, s)
    assert np.isnan(aucs[1])
    assert macro_auc(y, s) == pytest.approx(np.mean([aucs[0], aucs[2]]))


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_and_f1_match_sklearn(seed):
    from sklearn.metrics import accuracy_score, f1_score

    from imitate.evaluate.metrics.classification import accuracy, f1, macro_f1

    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 3, 150), rng.integers(0, 3, 150)
    assert accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    assert macro_f1(y, p, 3) == pytest.approx(f1_score(y, p, average="macro"))
    assert f1(y == 1, p == 1) == pytest.approx(f1_score(y == 1, p == 1))
    assert f1(np.zeros(4), np.zeros(4)) == 0.0


def test_precision_at_k_counts_relevant_items_in_the_top_k():
    from imitate.evaluate.metrics.classification import precision_at_k

    ranked = np.array([[1, 1, 0, 0], [0, 1, 0, 1]], dtype=bool)
    assert precision_at_k(ranked, 1) == 0.5
    assert precision_at_k(ranked, 2) == 0.75
    assert precision_at_k(ranked, 4) == 0.5
    with pytest.raises(ValueError, match="Precision@5"):
        precision_at_k(ranked, 5)
