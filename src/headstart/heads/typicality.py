"""Typicality: how much an image looks like the training classes, fitted on cached features.

A classifier answers "which of my classes?" even for an image of none of them, and the top
probability does not say when that happened (issue 24: on five held-out digits a plain logistic
regression's max softmax separated them from the known digits with an AUROC of 0.44, worse than
chance, because those digits excited the features more than the known ones did). The information
is in the pooled features, so this module scores them. The candidates, from the literature:

- ``max_softmax``: the top probability (Hendrycks & Gimpel 2017); ``max_logit`` and ``energy``
  (``logsumexp`` of the logits, Liu et al. 2020): these read the head's logits.
- ``mahalanobis``: minus the smallest Mahalanobis distance to a class mean, with one covariance
  shared by the classes (Lee et al. 2018). Features can outnumber images, so the covariance is
  Ledoit-Wolf shrunk (scikit-learn's ``LedoitWolf``), on features standardised by their spread
  *within* classes: shrinkage pulls towards the identity, and scaled by the total spread the
  few directions that separate the classes have a tiny within-class variance that shrinkage
  drowns (on four classes in a row, held-out-class AUROC 0.69 scaled by the total spread, 0.996
  by the within-class one).
- ``relative_mahalanobis``: the same minus the distance under one Gaussian fitted to all images
  (Ren et al. 2021): the directions every image varies in stop counting as unusual.
- ``knn``: cosine similarity to the ``k``-th nearest training image, on L2-normalised features
  (Sun et al. 2022; ``k`` scaled with the number of images as they scale it: 50 for 50,000).

A raw score means nothing to a user, so it becomes **typicality** in [0, 1]: the share of held-out
known images whose score is lower (an empirical CDF). Held-out known images therefore spread
evenly over [0, 1], and the default threshold of 0.05 accepts about 95% of known images whatever
the score and the data. The held-out scores come from images no fitted score saw: each of
:data:`SCALE_FOLDS` folds of train + val scored by the score fitted on the other folds (a feature
score costs one covariance per fold, not a head fit; the logit scores take the head's own held-out
logits instead). Test images are never used. The final score is fitted on train + val, as the
head is.

The default, measured (``benchmarks/openset.py``, 5 seeds, ``headstart-tiny`` features; mean
AUROC of known test images against unknown ones):

=====================  ===========  =========  ============  ========
score                  digits-near  demo-near  digits-noise  demo-far
=====================  ===========  =========  ============  ========
max_softmax            0.802        0.455      0.020         0.342
max_logit              0.790        0.462      0.000         0.366
energy                 0.785        0.473      0.000         0.372
mahalanobis            0.802        0.795      1.000         1.000
relative_mahalanobis   0.700        0.306      0.457         0.001
knn                    0.711        0.796      1.000         1.000
auto (held-out class)  0.811        0.796      0.805         1.000
=====================  ===========  =========  ============  ========

Mahalanobis is within 0.01 of the best on every one of these tasks, so it is the default. On tasks
and seeds that chose nothing (``benchmarks/openset.py``'s report side, seeds 200-209) it stayed the
best on far unknowns but not on near ones, where relative Mahalanobis or a logit score beat it by
0.01-0.05 (BENCHMARKS.md); the default was left as chosen. The logit scores call noise and flat
colours *more* typical than the known images (AUROC near 0): a head's logits grow with feature
norms, not with resemblance. Choosing by measurement (``score="auto"``,
:func:`choose_score`: each known class in turn plays the unknown, every candidate is fitted on the
other classes, the best mean AUROC wins) ranks near unknowns about right but cannot see far ones:
it picked max softmax on one digits seed, which then accepted every noise image. It stays
available, measured, not the default. Relative Mahalanobis keeps only the few directions the
classes differ in, where these unknowns look like known classes. Mahalanobis at the default
threshold accepted 93.1% and 95.9% of the known test images of the digits and demo tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import numpy as np
import torch

from headstart.errors import DataError, InvalidParameterError, WeightsError
from headstart.heads.logistic import Protocol, fit_linear

__all__ = [
    "DEFAULT_SCORE",
    "DEFAULT_THRESHOLD",
    "SCORES",
    "ScoreName",
    "Typicality",
    "check_unknown_options",
    "choose_score",
    "fit_typicality",
    "logit_score",
]

ScoreName = Literal[
    "max_softmax", "max_logit", "energy", "mahalanobis", "relative_mahalanobis", "knn"
]
SCORES: tuple[ScoreName, ...] = get_args(ScoreName)
LOGIT_SCORES: frozenset[str] = frozenset({"max_softmax", "max_logit", "energy"})
DEFAULT_SCORE: ScoreName = "mahalanobis"
"""What :func:`fit_typicality` uses unless told: chosen by ``benchmarks/openset.py`` (above)."""
DEFAULT_THRESHOLD = 0.05
"""Typicality below this is flagged unknown: about 5% of known images are, by construction."""
MAX_HELD_CLASSES = 10
"""The choice holds out at most this many classes (spread over the labels) one at a time: each
costs a head fit, and ten already average the AUROC well."""
KNN_BANK_MAX = 10_000
"""kNN keeps at most this many training features (a stratified, seeded sample, ``k`` scaled to
match, as Sun et al. subsample ImageNet): they are saved with the model."""
KNN_IMAGES_PER_NEIGHBOUR = 1_000
"""Sun et al.'s ``k``: 50 for CIFAR-10's 50,000 images, ``k`` scaled with the share sampled."""
SCALE_FOLDS = 10
"""Folds of the out-of-fold scores that set the scale: each fit sees 9/10 of the images, close to
the final fit on all of them (5 and 20 folds accepted the same shares of known test images, within
their noise, in ``benchmarks/openset.py``)."""
SCALE_FOLD_IMAGES = 100_000
"""Above ``SCALE_FOLD_IMAGES / SCALE_FOLDS`` images, fewer folds (at least 3): each fold's fit
costs passes over all the images, and with many images a fit on 2/3 of them is as close to the
final one as a fit on 9/10 of a few thousand is (about constant time from 10,000 images up)."""

_FORMAT = 1
_PREFIX = "typicality."


def check_unknown_options(score: str, threshold: float) -> None:
    """Refuse a score name or threshold that :func:`fit_typicality` could not use, before any
    training: ``score`` one of :data:`SCORES`, ``"auto"`` or ``"none"``; ``threshold`` in [0, 1].
    """
    names = (*SCORES, "auto", "none")
    if score not in names:
        raise InvalidParameterError(
            f"Unknown typicality score {score!r}; choose one of {', '.join(names)}."
        )
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not 0.0 <= threshold <= 1.0
    ):
        raise InvalidParameterError(
            f"The unknown threshold must be a number within [0, 1], got {threshold!r} "
            "(0.05: about 95% of known images accepted)."
        )


def logit_score(name: str, logits: np.ndarray) -> np.ndarray:
    """Raw score from a head's logits (higher: more typical)."""
    z = torch.as_tensor(np.asarray(logits, np.float64))
    if name == "max_softmax":
        return torch.softmax(z, dim=1).max(dim=1).values.numpy()
    if name == "max_logit":
        return z.max(dim=1).values.numpy()
    if name == "energy":
        return torch.logsumexp(z, dim=1).numpy()
    raise ValueError(f"{name!r} is not a logit score; one of {sorted(LOGIT_SCORES)}")


def _precision(cov: np.ndarray, rows: np.ndarray, *, factor: bool = False) -> np.ndarray:
    """Ledoit-Wolf shrunk precision of the covariance ``cov`` of the centred ``rows``:
    invertible with more dimensions than rows, where the sample covariance is singular. With
    ``factor``, the shrunk covariance's lower Cholesky factor instead: the out-of-fold scores
    need only distances, which triangular solves give without the inverse (two thirds of the
    cubic cost, each fold).

    The same matrix as scikit-learn's ``LedoitWolf(assume_centered=True).fit(rows)
    .precision_`` (its shrinkage formula, written out), computed from a covariance the caller
    already has: out-of-fold fits get theirs by subtracting the held-out rows' products from one
    product of all rows, instead of one pass over the rows per fold and per estimator step (on
    5,000 images of 2,048 dimensions that took :func:`fit_typicality` from 51 s to 14 s, one
    thread). The shrunk matrix is positive definite, so a Cholesky inverse serves where
    scikit-learn takes an eigendecomposition.
    """
    n, d = rows.shape
    if not (np.isfinite(cov).all() and np.isfinite(rows).all()):
        raise WeightsError(
            "The backbone's features are not finite (NaN or infinity), so no typicality can be "
            "fitted on them; check the weights, or train with unknown_score='none'."
        )
    trace = float(np.einsum("ij,ij->", rows, rows)) / max(n, 1)  # exact, from the rows
    if abs(float(np.trace(cov)) - trace) > 1e-6 * trace:
        # A covariance got by subtraction (all rows' products less the held-out ones') is all
        # cancellation when little spread is left, e.g. a fold whose fit holds one image a
        # class: rounding noise shaped like a covariance, with distances of 1e17. The rows'
        # own product has no such error.
        cov = rows.T @ rows / max(n, 1)
    mu = trace / d
    if mu <= 0.0:  # every row identical: no spread to measure distances by
        return np.eye(d)  # the identity is its own inverse and its own Cholesky factor
    fourth = float(np.sum(np.einsum("ij,ij->i", rows, rows) ** 2))
    frobenius = float(np.sum(cov * cov))
    beta = (fourth / n - frobenius) / (d * n)
    delta = (frobenius - 2.0 * mu * trace + d * mu**2) / d
    shrinkage = 0.0 if beta == 0 or delta <= 0 else min(beta, delta) / delta
    shrunk = torch.from_numpy((1.0 - shrinkage) * cov + shrinkage * mu * np.eye(d))
    lower, info = torch.linalg.cholesky_ex(shrunk)
    jitter = 1e-10
    while int(info) != 0 and jitter <= 1.0:  # indefinite by rounding: nudge towards the identity
        lower, info = torch.linalg.cholesky_ex(
            shrunk + jitter * mu * torch.eye(d, dtype=shrunk.dtype)
        )
        jitter *= 100.0
    if int(info) != 0:  # even mu on the diagonal: never seen with finite rows
        return np.sqrt(mu) * np.eye(d) if factor else np.eye(d) / mu  # the spread alone
    return lower.numpy() if factor else torch.cholesky_inverse(lower).numpy()


def _distances(
    x: np.ndarray,
    means: np.ndarray,
    precision: np.ndarray | None = None,
    factor: np.ndarray | None = None,
) -> np.ndarray:
    """Squared Mahalanobis distance of each row to each mean, shape (rows, means), by the
    precision matrix or by the covariance's Cholesky factor ``L`` (``|L^-1 (x - m)|^2``)."""
    if factor is not None:
        lower = torch.from_numpy(np.asarray(factor, np.float64))
        both = torch.from_numpy(np.concatenate([x, means]).T.copy())
        z = torch.linalg.solve_triangular(lower, both, upper=False).T.numpy()
        xz, mz = z[: len(x)], z[len(x) :]
        own = np.einsum("ij,ij->i", xz, xz)
        cross = xz @ mz.T
        mean_terms = np.einsum("ij,ij->i", mz, mz)
    else:
        assert precision is not None
        xp = x @ precision
        own = np.einsum("ij,ij->i", xp, x)
        cross = xp @ means.T
        mean_terms = np.einsum("ij,ij->i", means @ precision, means)
    return np.maximum(own[:, None] - 2 * cross + mean_terms[None, :], 0.0)


def _knn_k(n: int) -> int:
    return max(1, round(n / KNN_IMAGES_PER_NEIGHBOUR))


def _normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _bank_rows(y: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """All rows, or a stratified, seeded sample of about ``cap`` (every class keeps its share)."""
    if len(y) <= cap:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = max(1, round(len(members) * cap / len(y)))
        picked.append(rng.choice(members, take, replace=False))
    return np.sort(np.concatenate(picked))


def _fit_params(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    gram: np.ndarray | None = None,
    *,
    centre: np.ndarray | None = None,
    factor: bool = False,
) -> dict[str, np.ndarray]:
    """The arrays a feature score needs, fitted on ``x`` (labels ``y``); empty for logit
    scores, whose state is the head.

    Args:
        gram: ``x.T @ x`` where the caller has it (the costliest product, computed once).
        centre: What the caller subtracted from the features to get ``x`` (the scores are
            shift-invariant, and centred products are better conditioned): added back to the
            ``shift``, so that the params score the features as they come.
        factor: Cholesky factors (``factor``, ``background_factor``) instead of precisions,
            kept in float64: for scoring held-out rows at once, never saved.
    """
    if name in LOGIT_SCORES:
        return {}
    x = np.asarray(x, np.float64)
    if name == "knn":
        rows = _bank_rows(y, KNN_BANK_MAX, seed)
        return {"bank": _normalize(x[rows]).astype(np.float32)}
    if name not in ("mahalanobis", "relative_mahalanobis"):
        raise InvalidParameterError(f"Unknown typicality score {name!r}; one of {list(SCORES)}")
    n = len(x)
    gram = x.T @ x if gram is None else gram
    labels, index, counts = np.unique(y, return_inverse=True, return_counts=True)
    # Per-class sums by one sort and a segmented sum (np.add.at goes element by element).
    order = np.argsort(index, kind="stable")
    sums = np.add.reduceat(x[order], np.r_[0, np.cumsum(counts)[:-1]], axis=0)
    raw_means = sums / counts[:, None]
    # Standardised by the spread within classes: Ledoit-Wolf shrinks towards a multiple of the
    # identity, which then means "as spread as a class is", not "as spread as all images are"
    # (scaled by the total spread, the few directions that separate the classes have a tiny
    # within-class variance, and shrinkage drowns exactly them).
    within = gram - (raw_means.T * counts) @ raw_means  # sum of (x - its class mean) products
    centred = x - raw_means[index]
    # From the rows, not within's diagonal: where a fit holds one image a class, that diagonal
    # is all cancellation, and its noise (1e-16) taken for a spread scaled distances by 1e16.
    spread = np.sqrt(np.einsum("ij,ij->j", centred, centred) / n)
    scale = 1.0 / np.where(spread > 1e-8 * max(spread.max(), 1e-30), spread, 1.0)
    shift = sums.sum(axis=0) / n
    outer = scale[:, None] * scale[None, :]
    key = "factor" if factor else "precision"
    params = {
        "shift": shift if centre is None else shift + centre,
        "scale": scale,
        "means": (raw_means - shift) * scale,
        key: _precision(within * outer / n, centred * scale, factor=factor),
    }
    if name == "relative_mahalanobis":
        total = (gram - n * np.outer(shift, shift)) * outer / n
        params["background_mean"] = np.zeros_like(shift)
        params[f"background_{key}"] = _precision(total, (x - shift) * scale, factor=factor)
    if factor:
        return params
    # Stored as float32 (a 2048-d precision is 16 MB so), scored in float64.
    return {k: v.astype(np.float32) for k, v in params.items()}


def _raw(
    name: str, params: Mapping[str, np.ndarray], x: np.ndarray | None, logits: np.ndarray | None
) -> np.ndarray:
    """Raw score of each row (higher: more typical)."""
    if name in LOGIT_SCORES:
        if logits is None:
            raise ValueError(f"The {name!r} score needs the head's logits.")
        return logit_score(name, logits)
    if x is None:
        raise ValueError(f"The {name!r} score needs the features.")
    x = np.asarray(x, np.float64)
    if name == "knn":
        bank = torch.from_numpy(params["bank"])
        sims = torch.from_numpy(_normalize(x).astype(np.float32)) @ bank.T
        k = min(_knn_k(len(bank)), len(bank))
        return sims.topk(k, dim=1).values[:, -1].double().numpy()
    xs = (x - params["shift"]) * params["scale"]
    nearest = _distances(xs, params["means"], params.get("precision"), params.get("factor")).min(
        axis=1
    )
    if name == "relative_mahalanobis":
        background = _distances(
            xs,
            params["background_mean"][None, :],
            params.get("background_precision"),
            params.get("background_factor"),
        )[:, 0]
        return -(nearest - background)
    return -nearest


@dataclass(frozen=True, eq=False)
class Typicality:
    """A fitted typicality score: its state, its scale and its threshold.

    Attributes:
        score: Which raw score (:data:`SCORES`).
        params: The arrays it needs: ``shift``/``scale``/``means``/``precision`` (plus
            ``background_mean``/``background_precision``) for the Mahalanobis scores, ``bank``
            (L2-normalised training features) for ``knn``, nothing for the logit scores.
        knowns: Sorted raw scores of held-out known images: the scale.
        threshold: Typicality below this is flagged unknown.
        folds: Folds of the out-of-fold scores in ``knowns`` (0: the head's held-out logits).
        measured: Mean held-out-class AUROC of each candidate, when the score was chosen.
    """

    score: ScoreName
    params: Mapping[str, np.ndarray]
    knowns: np.ndarray
    threshold: float = DEFAULT_THRESHOLD
    folds: int = 0
    measured: Mapping[str, float] = field(default_factory=dict)

    @property
    def needs_logits(self) -> bool:
        return self.score in LOGIT_SCORES

    def raw(self, features: np.ndarray | None, logits: np.ndarray | None = None) -> np.ndarray:
        """The raw score of each image (higher: more typical)."""
        return _raw(self.score, self.params, features, logits)

    def typicality(
        self, features: np.ndarray | None, logits: np.ndarray | None = None
    ) -> np.ndarray:
        """The share of held-out known images less typical than each image, in [0, 1]."""
        raw = self.raw(features, logits)
        below = np.searchsorted(self.knowns, raw, side="left") / len(self.knowns)
        return np.where(np.isnan(raw), 0.0, below)

    def unknown(
        self,
        features: np.ndarray | None,
        logits: np.ndarray | None = None,
        threshold: float | None = None,
    ) -> np.ndarray:
        """True for images less typical than the threshold (default: the fitted one)."""
        cut = self.threshold if threshold is None else threshold
        return self.typicality(features, logits) < cut

    def to_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (keys prefixed ``typicality.``, for model.safetensors) and JSON metadata."""
        tensors = {
            _PREFIX + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.params.items()
        }
        tensors[_PREFIX + "knowns"] = torch.from_numpy(np.ascontiguousarray(self.knowns))
        meta = {
            "format": _FORMAT,
            "score": self.score,
            "threshold": self.threshold,
            "folds": self.folds,
            "measured": dict(self.measured),
        }
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Typicality:
        """Rebuild from :meth:`to_state`'s output (other keys in ``tensors`` are ignored)."""
        if meta.get("format") != _FORMAT or meta.get("score") not in SCORES:
            raise DataError(
                f"Unreadable typicality state (format {meta.get('format')!r}, score "
                f"{meta.get('score')!r}); it was written by another version of headstart: "
                "retrain the run."
            )
        ours = {k[len(_PREFIX) :]: v.numpy() for k, v in tensors.items() if k.startswith(_PREFIX)}
        knowns = ours.pop("knowns")
        return cls(
            score=cast(ScoreName, meta["score"]),
            params=ours,
            knowns=knowns,
            threshold=float(meta["threshold"]),
            folds=int(meta.get("folds", 0)),
            measured={k: float(v) for k, v in dict(meta.get("measured") or {}).items()},
        )


def _folds(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Stratified, seeded held-out index sets; classes with one image are never held out (a
    score fitted without them would call them unknown, which says nothing of the others)."""
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(y), -1)
    offset = 0
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        if len(members) < 2:
            continue
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return [np.flatnonzero(fold_of == k) for k in range(folds)]


def _gram(rows: np.ndarray) -> np.ndarray:
    """``rows.T @ rows`` in float64. Not float32: the within-class covariance is this product
    less the class means' own, and on features whose class means are large against their
    spread (ReLU features) float32's rounding left it indefinite after standardisation (a
    Keras ResNet50's 2,048-d features on 36 images)."""
    block = torch.from_numpy(np.ascontiguousarray(rows, np.float64))
    return (block.T @ block).numpy()


def _scale_folds(y: np.ndarray) -> int:
    counts = np.bincount(y)
    by_size = max(3, round(SCALE_FOLD_IMAGES / max(len(y), 1)))
    return int(min(SCALE_FOLDS, by_size, counts[counts >= 2].min()))


def _heldout_scores(
    name: str, xc: np.ndarray, y: np.ndarray, seed: int
) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Raw scores of images no fitted score saw, the number of folds, and for the Mahalanobis
    scores ``xc.T @ xc``: each fold of the labelled images scored by the score fitted on the
    others.

    ``xc``: the features, centred for the Mahalanobis scores, whose product of all rows is the
    sum of the folds' products: each fold's fit takes the total less its held-out rows' own, so
    the rows are multiplied once in all.
    """
    folds = _scale_folds(y)
    held_sets = _folds(y, folds, seed)
    gram = None
    held_grams: list[np.ndarray] = []
    if name in ("mahalanobis", "relative_mahalanobis"):
        held_grams = [_gram(xc[held]) for held in held_sets]
        # Rows in no fold (classes with one image) join every fit.
        in_folds = np.zeros(len(y), bool)
        for held in held_sets:
            in_folds[held] = True
        gram = sum(held_grams, _gram(xc[~in_folds]))
    pieces = []
    for i, held in enumerate(held_sets):
        keep = np.ones(len(y), bool)
        keep[held] = False
        fold_gram = None if gram is None else gram - held_grams[i]
        params = _fit_params(name, xc[keep], y[keep], seed, fold_gram, factor=True)
        pieces.append(_raw(name, params, xc[held], None))
    return np.concatenate(pieces), folds, gram


def fit_typicality(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None = None,
    val_y: np.ndarray | None = None,
    *,
    score: ScoreName | Literal["auto"] = DEFAULT_SCORE,
    heldout_logits: np.ndarray | None = None,
    C: float = 1.0,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
) -> Typicality:
    """Fit a typicality score on train + val features and set its scale on held-out known ones.

    Args:
        train_x, train_y: Training features and labels.
        val_x, val_y: Validation features and labels (may be None or empty): labelled images
            like the training ones, so they join both the fit and the folds.
        score: A name of :data:`SCORES`, or ``"auto"`` to choose by :func:`choose_score` (the
            logit scores only where ``heldout_logits`` are given).
        heldout_logits: The head's held-out logits (``LinearFit.heldout_logits``): the scale of
            a logit score comes from them, as a feature score's comes from out-of-fold scores.
        C: The head's inverse L2 strength, for the heads :func:`choose_score` fits.
        threshold: Typicality below which an image is flagged unknown.
        seed: Seeds the folds and samples.

    Raises:
        DataError: No class has two images (nothing can be held out, so no scale can be set),
            a logit score without held-out logits, or a threshold outside [0, 1].
    """
    if not 0.0 <= threshold <= 1.0:
        raise InvalidParameterError(
            f"The unknown threshold must be within [0, 1], got {threshold}."
        )
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    x = np.asarray(train_x, np.float64)
    y = np.asarray(train_y, np.int64)
    if has_val:
        x = np.concatenate([x, np.asarray(val_x, np.float64)])
        y = np.concatenate([y, np.asarray(val_y, np.int64)])
    if len(y) == 0 or np.bincount(y).max() < 2:
        raise DataError(
            "Typicality needs held-out known images to set its scale: give at least one class "
            "two or more labelled images."
        )
    measured: dict[str, float] = {}
    chosen: ScoreName
    if score == "auto":
        candidates = [n for n in SCORES if heldout_logits is not None or n not in LOGIT_SCORES]
        measured = choose_score(x, y, candidates=candidates, C=C, seed=seed)
        finite = {n: v for n, v in measured.items() if not math.isnan(v)}
        chosen = cast(ScoreName, max(finite, key=finite.__getitem__)) if finite else DEFAULT_SCORE
    else:
        chosen = score
    if chosen in LOGIT_SCORES:
        if heldout_logits is None:
            raise DataError(f"The {chosen!r} typicality score needs the head's held-out logits.")
        knowns, folds = logit_score(chosen, heldout_logits), 0
        params = _fit_params(chosen, x, y, seed)
    elif chosen == "knn":
        knowns, folds, _ = _heldout_scores(chosen, x, y, seed)
        params = _fit_params(chosen, x, y, seed)
    else:
        # Centred once (the scores are shift-invariant; centred products are better
        # conditioned), and the one product of all rows serves the folds and the final fit.
        centre = x.mean(axis=0)
        xc = x - centre
        knowns, folds, gram = _heldout_scores(chosen, xc, y, seed)
        params = _fit_params(chosen, xc, y, seed, gram, centre=centre)
    return Typicality(
        score=chosen,
        params=params,
        knowns=np.sort(knowns[~np.isnan(knowns)]),
        threshold=float(threshold),
        folds=folds,
        measured=measured,
    )


def _held_classes(labels: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``labels``, spread evenly over them."""
    if len(labels) <= limit:
        return labels
    return labels[np.linspace(0, len(labels) - 1, limit).round().astype(int)]


def choose_score(
    x: np.ndarray,
    y: np.ndarray,
    *,
    candidates: Sequence[ScoreName] = SCORES,
    C: float = 1.0,
    seed: int = 0,
    max_classes: int = MAX_HELD_CLASSES,
    head: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """Mean AUROC of each candidate at flagging a held-out known class, on labelled images only.

    Each class in turn (at most ``max_classes``) plays the unknown: the other classes' images
    are dealt into a fit part (4/5) and a held-out part (1/5); every candidate is fitted on the
    fit part (the logit scores through a linear head at the given ``C``) and scores the held-out
    part (known) and the class (unknown). Needs three classes or more (two must stay to fit a
    head); with fewer, every candidate gets NaN and the first listed wins.

    Args:
        x, y: Labelled features (train + val: no test image).
        candidates: The scores compared.
        C: Inverse L2 strength of the heads fitted for the logit scores.
        seed: Seeds the deal.
        max_classes: Classes held out, at most.
        head: ``head(fit_x, fit_y, score_x) -> logits`` (default: :func:`fit_linear` at ``C``).

    Returns:
        Candidate name -> mean AUROC (NaN where nothing could be measured).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, np.int64)
    labels = np.unique(y)
    if len(labels) < 3:
        return {name: math.nan for name in candidates}

    def linear(fx: np.ndarray, fy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        fit = fit_linear(
            fx.astype(np.float32), fy, None, None, int(fy.max()) + 1, C=C, protocol=Protocol("none")
        )
        with torch.no_grad():
            return fit.head(torch.from_numpy(sx.astype(np.float32))).double().numpy()

    fit_head = head or linear
    aurocs: dict[str, list[float]] = {name: [] for name in candidates}
    for c in _held_classes(labels, max_classes):
        known = np.flatnonzero(y != c)
        held = np.zeros(len(y), bool)
        for k_rows in _folds(y[known], 5, seed)[:1]:
            held[known[k_rows]] = True
        fit_rows = known[~held[known]]
        score_rows = np.concatenate([np.flatnonzero(held), np.flatnonzero(y == c)])
        truth = np.concatenate([np.ones(held.sum()), np.zeros((y == c).sum())])
        if held.sum() == 0:
            continue
        fy = np.searchsorted(np.unique(y[fit_rows]), y[fit_rows])
        logits = None
        if any(name in LOGIT_SCORES for name in candidates):
            logits = fit_head(x[fit_rows], fy, x[score_rows])
        for name in candidates:
            params = _fit_params(name, x[fit_rows], fy, seed)
            raw = _raw(name, params, x[score_rows], logits)
            aurocs[name].append(float(roc_auc_score(truth, raw)))
    return {name: float(np.mean(v)) if v else math.nan for name, v in aurocs.items()}
