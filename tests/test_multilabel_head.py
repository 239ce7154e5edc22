"""The multi-label head: one logistic regression a label, its thresholds and temperatures."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.heads.multilabel import best_threshold, fit_multilabel, sigmoid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features with three labels of different prevalence, each driven by its own direction."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32) * [1, 2, 0.5, 1, 1, 3]
    logits = np.stack([2 * x[:, 0], x[:, 1] - 1.0, 4 * x[:, 2] - 3.0], 1)
    y = (rng.random((n, 3)) < sigmoid(logits)).astype(np.int64)
    return x, y


def test_each_label_is_the_binary_logistic_regression_at_twice_the_chosen_c() -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = _task()
    fit = fit_multilabel(x[:120], y[:120], x[120:], y[120:], calibrate="none")
    standard = (x - x.mean(0)) / (x.std(0) + 1e-6)
    for j, record in enumerate(fit.selection["labels"]):
        reference = LogisticRegression(C=2 * record["final_C"], tol=1e-10, max_iter=10_000)
        reference.fit(standard, y[:, j])
        expected = reference.predict_proba(standard)[:, 1]
        assert np.abs(fit.predict_proba(x)[:, j] - expected).max() < 2e-3


def test_fit_records_a_strength_threshold_and_temperature_for_every_label() -> None:
    x, y = _task()
    fit = fit_multilabel(x[:120], y[:120], x[120:], y[120:])
    assert fit.head.weight.shape == (3, 6)
    assert len(fit.selection["labels"]) == 3
    for record in fit.selection["labels"]:
        assert record["protocol"] == "cv"
        assert 0 < record["threshold"] < 1 and record["temperature"] > 0
    assert fit.selection["fit_images"] == {"train": 120, "val": 40}
    assert fit.predict_proba(x).shape == (160, 3)


def test_rare_label_gets_a_threshold_below_one_half() -> None:
    x, y = _task(n=400, seed=1)
    fit = fit_multilabel(x[:300], y[:300], x[300:], y[300:])
    assert y[:, 2].mean() < 0.2
    assert fit.thresholds[2] < 0.5


def test_threshold_metric_none_keeps_one_half() -> None:
    x, y = _task()
    fit = fit_multilabel(x[:120], y[:120], x[120:], y[120:], threshold="none")
    assert fit.thresholds.tolist() == [0.5, 0.5, 0.5]


def test_best_threshold_lies_midway_below_the_f1_optimum() -> None:
    proba = np.array([0.9, 0.8, 0.6, 0.4, 0.2])
    truth = np.array([1, 1, 0, 1, 0])
    # Top 4 positive: F1 = 2*3/(4+3) = 0.857 beats top 2 (0.8) and top 3 (0.667).
    assert best_threshold(proba, truth) == pytest.approx(0.3)


def test_best_threshold_without_a_positive_is_one_half() -> None:
    assert best_threshold(np.array([0.9, 0.1]), np.array([0, 0])) == 0.5


def test_best_threshold_never_splits_equal_probabilities() -> None:
    proba = np.array([0.7, 0.7, 0.7, 0.1])
    truth = np.array([1, 0, 0, 0])
    assert best_threshold(proba, truth) == pytest.approx(0.4)


def test_multilabel_metrics_match_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, f1_score, hamming_loss

    from headstart.evaluation.multilabel import multilabel_metrics

    rng = np.random.default_rng(3)
    y = (rng.random((60, 4)) < [0.5, 0.2, 0.1, 0.7]).astype(np.int64)
    proba = np.round(np.clip(y * 0.4 + rng.random((60, 4)) * 0.6, 0, 1), 1)  # with ties
    thresholds = [0.5, 0.4, 0.6, 0.5]
    got = multilabel_metrics(y, proba, thresholds, ["a", "b", "c", "d"])
    predicted = proba >= thresholds
    assert got["mAP"] == pytest.approx(average_precision_score(y, proba, average="macro"))
    assert got["f1_micro"] == pytest.approx(f1_score(y, predicted, average="micro"))
    assert got["f1_macro"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert got["hamming_loss"] == pytest.approx(hamming_loss(y, predicted))
    assert got["subset_accuracy"] == pytest.approx((predicted == y).all(1).mean())
    assert got["per_label"]["c"]["ap"] == pytest.approx(
        average_precision_score(y[:, 2], proba[:, 2])
    )


def test_turning_calibration_off_keeps_every_label_set_and_changes_the_probabilities() -> None:
    import torch

    from headstart.label_sets import calibrate_labels, label_proba, label_sets

    def head() -> torch.nn.Linear:
        linear = torch.nn.Linear(2, 2)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor([[3.0, -1.0], [0.5, 2.0]]))
            linear.bias.copy_(torch.tensor([0.2, -0.4]))
        return linear

    selection = {"temperatures": [2.0, 1.0], "thresholds": [0.7, 0.4]}
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    calibrated = head()
    record, on = calibrate_labels(calibrated, selection, "temperature")
    raw = head()
    off_record, off = calibrate_labels(raw, selection, "none")
    assert record["temperatures"] == [2.0, 1.0] and off_record["method"] == "none"
    names = ["a", "b"]
    p_on, p_off = label_proba(calibrated, x), label_proba(raw, x)
    assert not np.allclose(p_on[:, 0], p_off[:, 0])
    assert label_sets(p_on, on, names) == label_sets(p_off, off, names)
