"""Typicality: the scale comes from held-out known images, and the scores flag what they should."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from scipy.stats import kstest

from headstart.errors import DataError, InvalidParameterError, WeightsError
from headstart.heads.typicality import (
    DEFAULT_SCORE,
    LOGIT_SCORES,
    SCORES,
    Typicality,
    choose_score,
    fit_typicality,
)

FEATURE_SCORES = [name for name in SCORES if name not in LOGIT_SCORES]


def _clusters(
    n_per_class: int, seed: int, d: int = 12, k: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters with a shared, correlated covariance: known images of ``k`` classes."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0.0, 2.0, (k, d))
    mixing = np.random.default_rng(98).normal(0.0, 0.4, (d, d)) + np.eye(d)
    y = np.repeat(np.arange(k), n_per_class)
    return centres[y] + rng.normal(0.0, 1.0, (len(y), d)) @ mixing, y


def _line(n_per_class: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Four classes in a row along one axis: the class held out at either end lies beyond its
    neighbour, where a linear head is *more* confident than on the known images (issue 24's
    unknowns that excite the features more)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), n_per_class)
    centres = np.zeros((4, 8))
    centres[:, 0] = 3.0 * np.arange(4)
    return centres[y] + rng.normal(0.0, 0.6, (len(y), 8)), y


def _logits(x: np.ndarray) -> np.ndarray:
    """Stand-in head logits: a fixed linear map, enough for the logit scores' plumbing."""
    w = np.random.default_rng(5).normal(0.0, 1.0, (x.shape[1], 3))
    return x @ w


@pytest.mark.parametrize("score", FEATURE_SCORES)
def test_scale_is_the_out_of_fold_scores_of_the_labelled_images_only(score: str) -> None:
    x, y = _clusters(40, seed=0)
    val_x, val_y = _clusters(10, seed=1)
    typ = fit_typicality(x, y, val_x, val_y, score=score)  # type: ignore[arg-type]
    assert len(typ.knowns) == len(y) + len(val_y)
    assert np.all(np.diff(typ.knowns) >= 0)
    # Scoring test images afterwards uses the fitted scale as it is: an image's typicality is
    # the same alone or among far-away images that would move any scale fitted on the batch.
    test_x, _ = _clusters(20, seed=2)
    alone = typ.typicality(test_x[:1])
    batch = typ.typicality(np.concatenate([test_x[:1], test_x[1:] + 100.0]))
    assert alone[0] == batch[0]


@pytest.mark.parametrize("score", FEATURE_SCORES)
def test_typicality_of_new_known_images_is_close_to_uniform(score: str) -> None:
    x, y = _clusters(300, seed=0)
    typ = fit_typicality(x, y, score=score)  # type: ignore[arg-type]
    test_x, _ = _clusters(300, seed=100)
    values = typ.typicality(test_x)
    # Two samples of 900 (the held-out scores and these) differ by about 0.045 at random.
    assert kstest(values, "uniform").statistic < 0.08
    assert 0.92 <= np.mean(~typ.unknown(test_x)) <= 0.98


@pytest.mark.parametrize("score", ["mahalanobis", "knn"])
def test_far_away_points_have_typicality_zero_and_are_flagged(score: str) -> None:
    x, y = _clusters(40, seed=0)
    typ = fit_typicality(x, y, score=score)  # type: ignore[arg-type]
    # Far in distance and in direction (kNN's cosine does not see scale): away from the classes'
    # centres, orthogonal to the space they span.
    rng = np.random.default_rng(4)
    far = rng.normal(0.0, 1.0, (50, x.shape[1]))
    centres, _ = np.linalg.qr(np.stack([x[y == c].mean(axis=0) for c in range(3)]).T)
    far -= (far @ centres) @ centres.T
    far = 50.0 * far / np.linalg.norm(far, axis=1, keepdims=True)
    assert typ.typicality(far).max() < 0.02
    assert np.all(typ.unknown(far))


def test_default_score_is_mahalanobis_with_the_5_percent_threshold() -> None:
    x, y = _clusters(20, seed=0)
    typ = fit_typicality(x, y)
    assert (typ.score, typ.threshold, DEFAULT_SCORE) == ("mahalanobis", 0.05, "mahalanobis")


@pytest.mark.parametrize("score", SCORES)
def test_saved_state_gives_the_same_typicality(score: str, tmp_path: Path) -> None:
    x, y = _clusters(30, seed=0)
    typ = fit_typicality(
        x,
        y,
        score=score,  # type: ignore[arg-type]
        heldout_logits=_logits(x),
        threshold=0.1,
    )
    tensors, meta = typ.to_state()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded = Typicality.from_state(
        load_file(str(tmp_path / "model.safetensors")),
        json.loads((tmp_path / "config.json").read_text()),
    )
    test_x, _ = _clusters(20, seed=6)
    assert (loaded.score, loaded.threshold, loaded.folds) == (score, 0.1, typ.folds)
    np.testing.assert_allclose(
        loaded.raw(test_x, _logits(test_x)), typ.raw(test_x, _logits(test_x)), rtol=1e-6
    )
    np.testing.assert_allclose(
        loaded.typicality(test_x, _logits(test_x)),
        typ.typicality(test_x, _logits(test_x)),
        atol=1e-6,
    )


def test_state_of_another_format_is_refused_with_the_fix() -> None:
    x, y = _clusters(20, seed=0)
    tensors, meta = fit_typicality(x, y).to_state()
    with pytest.raises(DataError, match="retrain"):
        Typicality.from_state(tensors, {**meta, "format": 99})


def test_choice_by_held_out_class_skips_the_max_softmax_that_fails() -> None:
    x, y = _line(30)
    rng = np.random.default_rng(1)
    typ = fit_typicality(x, y, score="auto", heldout_logits=rng.normal(size=(len(y), 4)))
    measured = typ.measured
    assert set(measured) == set(SCORES)
    assert measured["max_softmax"] < 0.6  # a confident head on the held-out end classes
    assert measured["mahalanobis"] > 0.95
    assert typ.score not in LOGIT_SCORES
    assert measured[typ.score] == max(measured.values())


def test_choice_needs_three_classes_and_falls_back_to_the_default() -> None:
    x, y = _clusters(20, seed=0, k=2)
    assert all(np.isnan(v) for v in choose_score(x, y).values())
    assert fit_typicality(x, y, score="auto").score == DEFAULT_SCORE


def test_logit_score_takes_its_scale_from_the_heads_held_out_logits() -> None:
    x, y = _clusters(20, seed=0)
    heldout = _logits(x)
    typ = fit_typicality(x, y, score="max_logit", heldout_logits=heldout)
    np.testing.assert_array_equal(typ.knowns, np.sort(heldout.max(axis=1)))
    with pytest.raises(DataError, match="held-out logits"):
        fit_typicality(x, y, score="energy")


def test_nothing_to_hold_out_raises_data_error() -> None:
    x = np.eye(3)
    with pytest.raises(DataError, match="two or more labelled images"):
        fit_typicality(x, np.arange(3))


def test_threshold_outside_0_1_raises_invalid_parameter_error() -> None:
    x, y = _clusters(10, seed=0)
    with pytest.raises(InvalidParameterError, match=r"within \[0, 1\]"):
        fit_typicality(x, y, threshold=5.0)


def test_precision_is_scikit_learns_ledoit_wolf_with_more_dimensions_than_images() -> None:
    from sklearn.covariance import LedoitWolf

    from headstart.heads.typicality import _precision

    rows = np.random.default_rng(0).normal(0.0, 1.0, (30, 50))
    rows -= rows.mean(axis=0)
    expected = LedoitWolf(assume_centered=True).fit(rows).precision_
    actual = _precision(rows.T @ rows / len(rows), rows)
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=1e-10)


def test_out_of_fold_fit_from_the_subtracted_product_equals_a_fit_on_the_rows() -> None:
    from headstart.heads.typicality import _fit_params

    x, y = _clusters(20, seed=0)
    x = x - x.mean(axis=0)
    keep = np.arange(len(y)) % 4 != 0
    gram = x.T @ x - x[~keep].T @ x[~keep]
    for name in ("mahalanobis", "relative_mahalanobis"):
        direct = _fit_params(name, x[keep], y[keep], 0)
        from_gram = _fit_params(name, x[keep], y[keep], 0, gram)
        for key, value in direct.items():
            np.testing.assert_allclose(from_gram[key], value, rtol=1e-4, atol=1e-5)


def test_a_handful_of_near_identical_feature_rows_still_fit_a_mahalanobis_score(tmp_path) -> None:
    """Random-init features of four images a class are nearly identical: the covariance made of
    summed products came out slightly indefinite and its Cholesky factorisation raised (a
    LinAlgError traceback from `headstart train`, found by `scripts/demo.py --smoke`)."""
    from headstart import ImageClassifier
    from headstart.synthetic import make_demo_dataset

    data = make_demo_dataset(tmp_path / "demo", n_per_class=(4, 2, 2))
    clf = ImageClassifier(
        "headstart-tiny",
        weights="none",
        strategy="features",
        aug_views=4,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
    ).fit(data)

    assert clf.config()["headstart"]["unknowns"]["score"] == "mahalanobis"


def test_folds_whose_classes_hold_one_image_each_still_fit_a_mahalanobis_score() -> None:
    """Two images a class: a training fold keeps one of each, so the rows have no spread within
    a class while the covariance made of summed products said otherwise; its shrinkage came out
    negative and the Cholesky factorisation raised."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 2)
    x = (rng.normal(0, 1, (10, 192))[y] * 5 + rng.normal(0, 1, (20, 192))).astype(np.float32)

    typ = fit_typicality(x, y, score="mahalanobis")

    assert np.all(np.isfinite(typ.raw(x)))


def test_features_that_are_not_finite_raise_weights_error_not_a_bad_precision() -> None:
    """The Cholesky retry nudges an indefinite covariance towards the identity; NaN features
    make every attempt fail. Mutation: returning the last failed attempt (the old code) gave a
    NaN precision and a typicality of NaN for every image, silently."""
    x, y = _clusters(20, seed=0)
    x[3, 2] = np.nan
    with pytest.raises(WeightsError, match="not finite"):
        fit_typicality(x, y, score="mahalanobis")


def test_tiny_classes_of_many_dimensions_fit_a_finite_typicality() -> None:
    """Two images a class in 192 dimensions: each out-of-fold fit holds one image a class, so
    the spread within classes is zero, and the one got by subtracting products is rounding noise.
    Mutation: with the spread read off that noise (the old code), held-out distances were 1e17,
    these far-away points were typical (1.0), and a493b29's check raised 'features are not
    finite' on finite features (benchmarks/warm.py's smoke run found it)."""
    rng = np.random.default_rng(0)
    x = rng.random((20, 192)).astype(np.float32)
    y = np.arange(20) % 10
    fitted = fit_typicality(x, y, score="mahalanobis")
    far = x[:3] + 100.0
    assert np.isfinite(fitted.typicality(x, None)).all()
    assert (fitted.typicality(far, None) == 0.0).all()
