"""Metrics computed in NumPy are scikit-learn's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from headstart.evaluation import classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_scikit_learns_including_absent_and_never_predicted_classes(seed):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d", "e"]
    y = rng.integers(0, 4, 60)  # class "e" is absent from the truth
    proba = rng.dirichlet(np.ones(5), 60)
    proba[:, 3] *= 0.01  # "d" is hardly ever predicted
    ours = classification_metrics(y, proba, classes)
    labels = list(range(5))
    pred = proba.argmax(1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    clipped = np.clip(proba, 1e-12, 1.0)
    ref_loss = log_loss(y, clipped / clipped.sum(1, keepdims=True), labels=labels)
    assert ours["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    assert ours["loss"] == pytest.approx(ref_loss, rel=1e-12)
    assert ours["accuracy"] == pytest.approx(float((pred == y).mean()))
    for i, name in enumerate(classes):
        row = ours["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert row["support"] == s[i]
    assert ours["macro_f1"] == pytest.approx(f[s > 0].mean())
