"""Class weights: `balanced` (scikit-learn's) for every head and strategy, and auto's use of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.errors import HeadstartError
from headstart.heads import fit_head, fit_linear
from headstart.heads.weights import class_weights, weight_vector


def _imbalanced(counts: tuple[int, ...], dim: int = 8, seed: int = 0, spread: float = 0.9):
    """Overlapping blobs, ``counts[c]`` images of class ``c``: the small class loses recall."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(counts), dim)) * spread
    y = np.repeat(np.arange(len(counts)), counts)
    x = centers[y] + rng.normal(size=(len(y), dim))
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def _recall(head: torch.nn.Module, x: np.ndarray, y: np.ndarray, label: int) -> float:
    with torch.no_grad():
        predicted = head(torch.from_numpy(x)).argmax(1).numpy()
    return float((predicted[y == label] == label).mean())


def test_balanced_weights_are_n_over_classes_times_class_count() -> None:
    weights = class_weights("balanced", np.array([0, 0, 0, 1]), 3)
    assert weights is not None
    np.testing.assert_allclose(weights.numpy(), [4 / (2 * 3), 4 / (2 * 1), 0.0])


def test_a_fixed_C_with_balanced_weights_solves_scikit_learns_weighted_problem() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _imbalanced((120, 40, 12))
    ours = fit_linear(x, y, None, None, 3, C=0.5, class_weight="balanced")
    scaler = StandardScaler().fit(x)
    theirs = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-8, max_iter=5000)
    theirs.fit(scaler.transform(x), y)
    with torch.no_grad():
        p_ours = torch.softmax(ours.head(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(p_ours, theirs.predict_proba(scaler.transform(x)), atol=2e-3)
    assert ours.to_dict()["class_weight"] == pytest.approx([172 / 360, 172 / 120, 172 / 36])


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_balanced_head_recalls_the_small_class_more_often(kind: str) -> None:
    x, y = _imbalanced((150, 150, 15), seed=1)
    tx, ty, vx, vy = x[:250], y[:250], x[250:], y[250:]
    test_x, test_y = _imbalanced((300, 300, 300), seed=1)  # the same centers, every class alike
    plain = fit_head(kind, tx, ty, vx, vy, 3)
    balanced = fit_head(kind, tx, ty, vx, vy, 3, class_weight="balanced")
    assert _recall(balanced.head, test_x, test_y, 2) > _recall(plain.head, test_x, test_y, 2) + 0.1
    assert balanced.selection["class_weight"] is not None
    assert plain.selection.get("class_weight") is None


def test_class_weight_by_name_maps_to_class_order_and_rejects_unknown_names() -> None:
    assert weight_vector({"cat": 3.0}, ["cat", "dog"]) == [3.0, 1.0]
    assert weight_vector("balanced", ["cat", "dog"]) == "balanced"
    with pytest.raises(HeadstartError, match="'cta', not a class of this data"):
        weight_vector({"cta": 3.0}, ["cat", "dog"])
    with pytest.raises(HeadstartError, match="positive number"):
        weight_vector({"cat": -1}, ["cat", "dog"])
