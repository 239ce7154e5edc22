"""Label-noise candidates: images whose folder disagrees with what frozen features say.

Confident learning (Northcutt, Jiang and Chuang, 2021): a logistic regression on the backbone's
features predicts each image out-of-fold (5-fold cross-validation, so no image is scored by a model
that saw its label). Each class ``j`` gets a threshold ``t_j``, the mean predicted probability of
``j`` over the images labelled ``j``: how confident the model is on that class's own images. An
image is a candidate when another class is above its own threshold and more probable than the given
label. Per-class thresholds, not one global cut, because a hard class is predicted with less
confidence everywhere and a global cut would flag all of it.

Candidates are listed for a person to review, never moved or dropped: the features may simply be
weak for that class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.doctor._findings import Finding
from headstart.doctor._samples import Labelled, display_path

if TYPE_CHECKING:
    from headstart.backbones import Backbone

__all__ = ["FOLDS", "label_noise_findings"]

FOLDS = 5
"""Cross-validation folds; a class needs at least this many images to take part."""


def _out_of_fold_proba(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Features of separable classes make lbfgs approach infinite weights; the probabilities it
        # reaches are still the right ranking, which is all the thresholds need.
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    return np.asarray(proba, dtype=np.float64)


def confident_candidates(proba: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """``(index, suggested class)`` of likely mislabelled rows, most suspicious first.

    Args:
        proba: Out-of-fold probabilities ``[N, K]``.
        y: Given labels ``[N]`` in ``0..K-1``; every class must occur.
    """
    k = proba.shape[1]
    thresholds = np.array([proba[y == j, j].mean() for j in range(k)])
    above = proba >= thresholds[None, :]
    masked = np.where(above, proba, -1.0)
    suggested = masked.argmax(axis=1)
    given_p = proba[np.arange(len(y)), y]
    suggested_p = proba[np.arange(len(y)), suggested]
    flagged = (masked.max(axis=1) >= 0) & (suggested != y) & (suggested_p > given_p)
    order = sorted(np.flatnonzero(flagged).tolist(), key=lambda i: (given_p[i], i))
    return [(i, int(suggested[i])) for i in order]


def label_noise_findings(
    backbone: Backbone,
    samples: Sequence[Labelled],
    *,
    root: Path,
    cache_dir: Path | None,
    num_workers: int | None,
    device: str,
    quiet: bool,
    seed: int = 0,
) -> tuple[list[Finding], dict[str, Any]]:
    """Findings for label-noise candidates among all splits, and the cross-validation's numbers.

    Every split takes part: a wrong label in val or test distorts the scores as much as one in
    train misleads the model. Classes with fewer than :data:`FOLDS` images are left out (they are
    reported as too small already).

    Args:
        backbone: Extracts the features (through the feature cache, so a later training run on
            the same data and model reuses them).
        samples: Readable samples.
        root: Dataset root, to show paths.
        cache_dir: Feature cache folder, or None for no cache.
        num_workers: Decoding workers for extraction.
        device: Where the backbone runs.
        quiet: No progress output.
        seed: Seeds the folds.
    """
    from headstart.features import FeatureCache, extract_features

    cache = FeatureCache(cache_dir) if cache_dir is not None else None
    try:
        result = extract_features(
            backbone,
            [s.path for s in samples],
            cache=cache,
            num_workers=num_workers,
            device=device,
            quiet=quiet,
            desc="extracting features",
        )
    finally:
        if cache is not None:
            cache.close()
    label_of = {s.path: s.label for s in samples}
    per_class: dict[str, int] = {}
    for path in result.paths:
        per_class[label_of[path]] = per_class.get(label_of[path], 0) + 1
    kept = sorted(c for c, n in per_class.items() if n >= FOLDS)
    left_out = sorted(c for c, n in per_class.items() if n < FOLDS)
    stats: dict[str, Any] = {"folds": FOLDS, "classes_left_out": left_out}
    if len(kept) < 2:
        message = (
            f"label noise not checked: it needs at least two classes with {FOLDS} or more "
            f"readable images, found {len(kept)}"
        )
        return [Finding("info", "label-noise-skipped", message)], stats
    index = {c: i for i, c in enumerate(kept)}
    rows = [i for i, p in enumerate(result.paths) if label_of[p] in index]
    x = result.features[rows]
    y = np.array([index[label_of[result.paths[i]]] for i in rows])
    proba = _out_of_fold_proba(x, y, seed)
    stats.update(
        images=len(rows),
        cv_accuracy=round(float((proba.argmax(axis=1) == y).mean()), 4),
    )
    findings = []
    for i, suggested in confident_candidates(proba, y):
        path = result.paths[rows[i]]
        given = kept[y[i]]
        better = kept[suggested]
        p_given, p_better = float(proba[i, y[i]]), float(proba[i, suggested])
        findings.append(
            Finding(
                "warning",
                "label-noise",
                f"{display_path(path, root)} is labelled {given!r} but looks like {better!r} "
                f"(cross-validated probability {p_better:.2f}, {p_given:.2f} for {given!r}); "
                "check its label",
                (path,),
                {
                    "given": given,
                    "suggested": better,
                    "p_given": round(p_given, 4),
                    "p_suggested": round(p_better, 4),
                },
            )
        )
    stats["candidates"] = len(findings)
    return findings, stats
