
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from imitate.evaluate.metrics.classification import classification_metrics
from imitate.evaluate.tasks.linear_classification import Settings, linear_probe

NAMES = ("a", "b")


def _split(rng, n, w):
    x = rng.normal(size=(n, 16)).astype(np.float32) * 50 + 7  # badly scaled, like raw features
    y = ((x - 7) @ w > 0).astype(np.float32)
    return x, y


def _classes(rng, n, centres, noise):
    """One-hot labels of n points drawn around the rows of ``centres``."""
    y = rng.integers(len(centres), size=n)
    x = centres[y] + rng.normal(size=(n, centres.shape[1])) * noise
    return x.astype(np.float32), np.eye(len(centres), dtype=np.float32)[y]


def test_linear_probe_learns_a_separable_problem_and_selects_on_validation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 2))
    result = linear_probe(
        _split(rng, 200, w), _split(rng, 100, w), _split(rng, 100, w), Settings(epochs=20, lr=1e-2, batch_size=16),
        label_names=NAMES,
    )
    assert result.metrics["auc_macro"] > 0.95
    assert set(result.metrics) == {"auc_macro", "auc:a", "auc:b"}
    assert result.metrics["auc_macro"] == pytest.approx((result.metrics["auc:a"] + result.metrics["auc:b"]) / 2)
    assert result.fit.best_epoch == 1 + int(np.argmax([e.val_score for e in result.fit.history]))
    assert (result.n_train, result.n_test) == (200, 100)


def test_linear_probe_is_deterministic_for_a_seed():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 2))
    data = (_split(rng, 64, w), _split(rng, 32, w), _split(rng, 32, w))
    a = linear_probe(*data, Settings(epochs=2, seed=3), label_names=NAMES)
    b = linear_probe(*data, Settings(epochs=2, seed=3), label_names=NAMES)
    assert a.metrics == b.metrics
    assert np.array_equal(a.test_probabilities, b.test_probabilities)


def test_linear_probe_tests_the_best_validation_epoch_not_the_last():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(16, 2))
    train, test = _split(rng, 64, w), _split(rng, 32, w)
    x_val, y_val = _split(rng, 32, w)
    data = (train, (x_val, 1 - y_val), test)  # validation labels flipped: the more it learns, the worse it scores
    settings = Settings(epochs=6, lr=1e-2, seed=0)
    result = linear_probe(*data, settings, label_names=NAMES)
    assert result.fit.best_epoch < settings.epochs
    assert result.fit.best_score == max([e.val_score for e in result.fit.history])
    stopped = linear_probe(*data, Settings(epochs=result.fit.best_epoch, lr=1e-2, seed=0), label_names=NAMES)
    assert np.array_equal(result.test_probabilities, stopped.test_probabilities)
    assert result.metrics == stopped.metrics


def test_multiclass_probe_reaches_full_accuracy_on_separable_classes():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8)) * 10
    data = [_classes(rng, n, centres, noise=0.5) for n in (90, 30, 30)]
    result = linear_probe(*data, Settings(epochs=10, lr=1e-2), kind="multiclass", label_names=("x", "y", "z"))
    assert set(result.metrics) == {"acc", "auc_macro"}
    assert result.metrics["acc"] == 1.0
    assert result.fit.best_score == max([e.val_score for e in result.fit.history]) == 1.0
    scores = [e.val_score for e in result.fit.history]
    assert result.fit.best_epoch == 1 + int(np.argmax(scores))  # the earliest perfect epoch


def test_multiclass_probe_metrics_equal_scikit_learn_on_its_predictions():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(3, 8))
    data = [_classes(rng, n, centres, noise=1.5) for n in (90, 60, 120)]
    result = linear_probe(*data, Settings(epochs=10, lr=1e-2), kind="multiclass", label_names=("x", "y", "z"))
    truth, probabilities = data[2][1].argmax(1), result.test_probabilities
    assert 0.4 < result.metrics["acc"] < 1.0  # a noisy problem, so the comparison below is not trivial
    assert probabilities.sum(1) == pytest.approx(np.ones(len(truth)))
    assert result.metrics["acc"] == accuracy_score(truth, probabilities.argmax(1))
    assert result.metrics["auc_macro"] == pytest.approx(roc_auc_score(truth, probabilities, multi_class="ovr"))


def test_classification_metrics_match_scikit_learn_for_every_kind():
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet(np.ones(4), size=50)
    one_hot = np.eye(4)[rng.integers(4, size=50)]
    multiclass = classification_metrics("multiclass", one_hot, probabilities, "klmn")
    assert multiclass["acc"] == accuracy_score(one_hot.argmax(1), probabilities.argmax(1))
    assert multiclass["auc_macro"] == pytest.approx(roc_auc_score(one_hot.argmax(1), probabilities, multi_class="ovr"))
    labels = (rng.random((50, 2)) < 0.4).astype(np.float32)
    scores = rng.random((50, 2))
    multilabel = classification_metrics("multilabel", labels, scores, NAMES)
    assert multilabel["auc_macro"] == pytest.approx(roc_auc_score(labels, scores, average="macro"))
    assert multilabel["auc:b"] == pytest.approx(roc_auc_score(labels[:, 1], scores[:, 1]))
    binary = classification_metrics("binary", labels[:, :1], scores[:, :1], ("a",))
    assert binary == {"auc_macro": multilabel["auc:a"], "auc:a": multilabel["auc:a"]}


def test_probe_rejects_bad_multiclass_labels_and_unknown_kinds():
    rng = np.random.default_rng(6)
    x, y = _classes(rng, 12, rng.normal(size=(3, 4)), noise=1.0)
    not_one_hot = y.copy()
    not_one_hot[0] = 1.0
    with pytest.raises(ValueError, match="validate: multiclass labels must be one-hot"):
        linear_probe((x, y), (x, not_one_hot), (x, y), Settings(epochs=1), kind="multiclass", label_names="xyz")
    with pytest.raises(ValueError, match="unknown dataset kind 'ordinal'"):
        linear_probe((x, y), (x, y), (x, y), Settings(epochs=1), kind="ordinal", label_names="xyz")
    with pytest.raises(ValueError, match="2 label names for 3 label columns"):
        classification_metrics("multilabel", y, y, NAMES)
