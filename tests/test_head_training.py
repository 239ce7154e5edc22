"""Head training: best-validation weights kept, deterministic, standardization folded away."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.errors import HeadstartError
from headstart.heads import HeadTrainingConfig, train_head


def _blobs(n: int, dim: int = 16, classes: int = 3, seed: int = 0):
    centers = np.random.default_rng(42).normal(0, 3, (classes, dim)) + 50.0  # needs scaling
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.normal(0, 1.0, (n, dim))
    return x.astype(np.float32), y


def test_linear_head_learns_separable_features_with_raw_inputs() -> None:
    x, y = _blobs(300)
    xv, yv = _blobs(100, seed=1)
    result = train_head("linear", x, y, xv, yv, 3, HeadTrainingConfig(epochs=30), quiet=True)
    assert isinstance(result.head, torch.nn.Linear)
    with torch.no_grad():
        pred = result.head(torch.from_numpy(xv)).argmax(1).numpy()
    assert (pred == yv).mean() > 0.95


def test_same_seed_gives_bit_identical_head() -> None:
    x, y = _blobs(200)
    xv, yv = _blobs(60, seed=1)
    cfg = HeadTrainingConfig(epochs=5, seed=3)
    a = train_head("mlp", x, y, xv, yv, 3, cfg, quiet=True)
    b = train_head("mlp", x, y, xv, yv, 3, cfg, quiet=True)
    for (ka, va), (kb, vb) in zip(
        a.head.state_dict().items(), b.head.state_dict().items(), strict=True
    ):
        assert ka == kb
        assert torch.equal(va, vb)
    assert a.history == b.history


def test_training_does_not_touch_the_global_rng() -> None:
    x, y = _blobs(50)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_head("linear", x, y, x, y, 3, HeadTrainingConfig(epochs=2), quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_kept_weights_are_those_of_the_lowest_validation_loss() -> None:
    x, y = _blobs(200)
    # validation labels shuffled: validation loss rises as the head fits the training labels
    xv, yv = _blobs(60, seed=1)
    yv = np.random.default_rng(5).permutation(yv)
    result = train_head(
        "linear", x, y, xv, yv, 3, HeadTrainingConfig(epochs=40, patience=5), quiet=True
    )
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    with torch.no_grad():
        logits = result.head(torch.from_numpy(xv))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yv)).item()
    assert loss == pytest.approx(min(losses), rel=1e-4)


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    x, y = _blobs(200)
    xv, yv = _blobs(60, seed=1)
    yv = np.random.default_rng(5).permutation(yv)
    result = train_head(
        "linear", x, y, xv, yv, 3, HeadTrainingConfig(epochs=200, patience=4), quiet=True
    )
    assert len(result.history) == result.best_epoch + 4


def test_invalid_learning_rate_raises() -> None:
    with pytest.raises(HeadstartError, match="lr"):
        HeadTrainingConfig(lr=0)
