"""Calibration: a temperature that makes predicted probabilities say how often they are right.

A head fitted to convergence on few images is usually right more often, or less often, than its
softmax says (on a small real-image task: right 85% of the time, 71% sure on average). Temperature
scaling (Guo et al., 2017) divides the logits by one number fitted to minimise the log-loss of
held-out logits: it cannot change a single prediction, only how sure each one is. The held-out
logits must come from models that never saw those images (the selection step's validation or
out-of-fold logits), or the temperature learns the model's over-confidence on its own training
data instead of on new images.

A temperature is kept only when those held-out logits show a miscalibration that is not noise: a
likelihood-ratio test of the fitted temperature against none (one parameter, 95%). A logistic
regression whose strength was chosen by held-out log-loss is usually calibrated already, and a
temperature fitted on 300 out-of-fold logits of models that saw a fifth fewer images than the
refitted one then does more harm than good: on the digits benchmark it raised the test ECE from
0.028 to 0.035, where the test itself cannot measure below 0.023 (BENCHMARKS.md). Heads that are
over-confident (an MLP, a fine-tuned network) fail the test by far and keep their temperature.

A significant temperature is also checked against what it is for: it is kept only when it does
not raise the expected calibration error of those same held-out logits. The log-loss that fits it
is dominated by a few confident mistakes where there are some; an MLP head on the digits benchmark
fitted T = 4.2 on 150 validation logits (likelihood ratio 131), which took the test ECE from 0.10
to 0.47: every other prediction became far too unsure. Its held-out ECE said the same (0.085 to
0.34) before any test image was looked at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CALIBRATIONS",
    "ECE_BINS",
    "SIGNIFICANCE",
    "TemperatureFit",
    "calibrate_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "reliability_bins",
    "softmax",
]

CALIBRATIONS = ("temperature", "none")
ECE_BINS = 15
# The temperature is searched over this range (log-space): far outside it, the held-out logits
# are too few or too degenerate (all correct) for the number to mean anything.
_LOG_T_RANGE = (math.log(0.05), math.log(20.0))
SIGNIFICANCE = 3.841
"""The likelihood-ratio statistic ``2 n (NLL(1) - NLL(T))`` a temperature must exceed to be kept:
the 95% point of chi-square with one degree of freedom (the one parameter fitted)."""


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and whether the held-out logits support it.

    Attributes:
        temperature: The one to apply: ``fitted`` when significant and it does not raise the
            held-out ECE, else 1.0.
        fitted: The held-out log-loss minimiser.
        statistic: ``2 n (NLL(1) - NLL(fitted))``, compared with :data:`SIGNIFICANCE`.
        n: Held-out images it was fitted on.
        ece_before, ece_after: The held-out logits' ECE without and with ``fitted``.
    """

    temperature: float
    fitted: float
    statistic: float
    n: int
    ece_before: float = float("nan")
    ece_after: float = float("nan")

    @property
    def significant(self) -> bool:
        return self.statistic > SIGNIFICANCE

    @property
    def ece_applied(self) -> float:
        """The held-out logits' ECE with the temperature that is applied."""
        return self.ece_after if self.temperature != 1.0 else self.ece_before

    def describe(self) -> str:
        if not self.significant:
            verdict = "not kept: within noise, so 1"
        elif self.temperature == 1.0:
            verdict = (
                f"not kept: it would raise the held-out ECE from {self.ece_before:.3f} to "
                f"{self.ece_after:.3f}, so 1"
            )
        else:
            verdict = "kept"
        return (
            f"temperature {self.fitted:.3g} fitted on {self.n} held-out images, likelihood "
            f"ratio {self.statistic:.2f} vs {SIGNIFICANCE} needed: {verdict}"
        )


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64, shifted by the row maximum so
    that large logits cannot overflow."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature to apply: the held-out log-loss minimiser when it is significant, else 1."""
    return calibrate_temperature(logits, y).temperature


def calibrate_temperature(logits: np.ndarray, y: np.ndarray) -> TemperatureFit:
    """Fit a temperature on held-out logits and test it against none (see the module doc)."""
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return TemperatureFit(1.0, 1.0, 0.0, 0)
    before = expected_calibration_error(softmax(logits, 1.0), y)
    if len(np.unique(y)) < 2:
        return TemperatureFit(1.0, 1.0, 0.0, len(y), before, before)
    fitted = _minimise(logits, y)
    statistic = 2.0 * len(y) * (_nll(logits, y, 1.0) - _nll(logits, y, fitted))
    if not statistic > 0.0:  # never worse than leaving it alone, on the logits it was fitted to
        return TemperatureFit(1.0, 1.0, 0.0, len(y), before, before)
    after = expected_calibration_error(softmax(logits, fitted), y)
    applied = fitted if statistic > SIGNIFICANCE and after <= before else 1.0
    return TemperatureFit(applied, fitted, statistic, len(y), before, after)


def _minimise(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the held-out log-loss."""
    # Golden-section search on log T: the held-out log-loss is unimodal in it.
    low, high = _LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = _nll(logits, y, math.exp(a)), _nll(logits, y, math.exp(b))
    while high - low > 1e-4:
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = _nll(logits, y, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = _nll(logits, y, math.exp(b))
    return float(math.exp((low + high) / 2))


def reliability_bins(
    proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS
) -> list[dict[str, float]]:
    """Confidence bins (equal width): images, mean confidence and accuracy in each non-empty one."""
    proba = np.asarray(proba, np.float64)
    y = np.asarray(y, np.int64)
    if len(y) == 0:
        return []
    confidence = proba.max(1)
    correct = proba.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        member = index == b
        if member.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": int(member.sum()),
                    "confidence": float(confidence[member].mean()),
                    "accuracy": float(correct[member].mean()),
                }
            )
    return rows


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean gap between confidence and accuracy over confidence bins."""
    rows = reliability_bins(proba, y, bins)
    n = sum(r["n"] for r in rows)
    if n == 0:
        return float("nan")
    return float(sum(r["n"] * abs(r["confidence"] - r["accuracy"]) for r in rows) / n)
