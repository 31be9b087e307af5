"""Classification metrics against scikit-learn on randomised inputs."""

import numpy as np
import pytest
from sklearn import metrics as sk

from brats_llm.metrics.bootstrap import bootstrap_ci, with_intervals
from brats_llm.metrics.classification import classification_metrics, majority_baseline, roc_auc


@pytest.mark.parametrize("seed", range(25))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    y_true = rng.integers(0, 2, n)
    y_true[:2] = [0, 1]  # both classes present
    score = np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding creates ties
    y_pred = (score >= rng.random()).astype(int)
    ours = classification_metrics(y_true, y_pred, score)
    kw = {"zero_division": 0}
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred), abs=1e-6)
    assert ours["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred), abs=1e-6)
    assert ours["precision"] == pytest.approx(sk.precision_score(y_true, y_pred, **kw), abs=1e-6)
    assert ours["recall"] == pytest.approx(sk.recall_score(y_true, y_pred, **kw), abs=1e-6)
    assert ours["specificity"] == pytest.approx(sk.recall_score(y_true, y_pred, pos_label=0, **kw), abs=1e-6)
    assert ours["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, **kw), abs=1e-6)
    assert ours["mcc"] == pytest.approx(sk.matthews_corrcoef(y_true, y_pred), abs=1e-6)
    assert ours["auc"] == pytest.approx(sk.roc_auc_score(y_true, score), abs=1e-6)
    tn, fp, fn, tp = sk.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    assert (ours["tn"], ours["fp"], ours["fn"], ours["tp"]) == (tn, fp, fn, tp)


def test_degenerate_inputs():
    only_hgg = classification_metrics([1, 1, 1], [1, 1, 1], [0.9, 0.8, 0.7])
    assert only_hgg["accuracy"] == 1.0 and only_hgg["specificity"] == 0.0 and np.isnan(only_hgg["auc"])
    assert np.isnan(roc_auc([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0 or 1"):
        classification_metrics([0, 2], [0, 1])


def test_majority_baseline_matches_the_paper_cohort():
    y_true = np.array([1] * 293 + [0] * 76)
    baseline = majority_baseline(y_true)
    assert baseline["accuracy"] == pytest.approx(293 / 369)  # 0.794, as the paper notes
    assert baseline["specificity"] == 0.0 and baseline["auc"] == 0.5 and baseline["balanced_accuracy"] == 0.5


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 60)
    y_pred = np.where(rng.random(60) < 0.8, y_true, 1 - y_true)

    def statistic(index):
        return {"accuracy": classification_metrics(y_true[index], y_pred[index])["accuracy"]}

    first = bootstrap_ci(60, statistic, resamples=300, seed=1)
    assert first == bootstrap_ci(60, statistic, resamples=300, seed=1)
    point = statistic(np.arange(60))
    low, high = first["accuracy"]
    assert low < point["accuracy"] < high and high - low < 0.35
    flat = with_intervals(point, first)
    assert set(flat) == {"accuracy", "accuracy_ci_low", "accuracy_ci_high"}


def test_rates_drop_the_confusion_counts():
    from brats_llm.metrics.classification import COUNT_KEYS, rates

    values = classification_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert set(rates(values)) == set(values) - COUNT_KEYS and "accuracy" in rates(values)
