"""The temperature: fitted on held-out logits, kept only when they show real miscalibration."""

from __future__ import annotations

import numpy as np

from headstart.evaluation.calibration import (
    SIGNIFICANCE,
    calibrate_temperature,
    expected_calibration_error,
    fit_temperature,
    softmax,
)


def _calibrated(n: int, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from their own softmax: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 2.0
    proba = softmax(logits)
    y = np.array([rng.choice(classes, p=p) for p in proba])
    return logits, y


def test_over_confident_logits_get_their_temperature_back() -> None:
    logits, y = _calibrated(2000)
    fit = calibrate_temperature(logits * 3.0, y)
    assert fit.significant and fit.statistic > SIGNIFICANCE
    assert abs(fit.temperature - 3.0) < 0.3
    calibrated = softmax(logits * 3.0, fit.temperature)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(
        softmax(logits * 3.0), y
    )


def test_calibrated_logits_keep_no_temperature() -> None:
    kept = []
    for seed in range(10):
        logits, y = _calibrated(300, seed=seed)
        fit = calibrate_temperature(logits, y)
        assert fit.fitted != 1.0  # a minimiser is always found ...
        kept.append(fit.significant)
        if not fit.significant:  # ... but noise is not applied
            assert fit.temperature == 1.0 == fit_temperature(logits, y)
            assert "not kept" in fit.describe()
    assert sum(kept) <= 2  # a 95% test: about one seed in twenty


def test_nothing_to_fit_is_temperature_one() -> None:
    assert calibrate_temperature(np.zeros((0, 3)), np.zeros(0, np.int64)).temperature == 1.0
    one_class = calibrate_temperature(np.ones((4, 3)), np.zeros(4, np.int64))
    assert one_class.temperature == 1.0 and not one_class.significant


def test_a_temperature_driven_by_a_few_confident_mistakes_is_not_kept() -> None:
    logits, y = _calibrated(600)
    # Ten images confidently wrong by a wide margin: the log-loss wants every logit flattened.
    wrong = np.flatnonzero(logits.argmax(1) == y)[:10]
    logits[wrong, y[wrong]] -= 40.0
    fit = calibrate_temperature(logits, y)
    assert fit.significant and fit.fitted > 1.5
    assert fit.ece_after > fit.ece_before
    assert fit.temperature == 1.0
    assert "would raise the held-out ECE" in fit.describe()
