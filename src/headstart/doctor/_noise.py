"""Label-noise candidates: images whose folder disagrees with what frozen features say.

The probabilities come from the project's own head protocol (:mod:`headstart.heads.logistic`),
applied out of fold: the L2 strength ``C`` is chosen by 5-fold cross-validated log-loss as ``fit``
chooses it, a temperature is fitted on those held-out logits (kept only where
:func:`~headstart.evaluation.calibration.calibrate_temperature` finds it significant), and then
each of 5 folds is predicted by a head fitted at that ``C`` on the other four. Only two numbers,
``C`` and the temperature, saw every image; no image's own weights did. So each probability is
calibrated (it says how often such a label is right) and comes from a model that never saw the
image, which is what confident learning (Northcutt, Jiang and Chuang, 2021) needs. The check
used an untuned ``LogisticRegression()`` before: on separable features its probabilities go to 0
and 1, and on 300 clean digits it called an obvious 8 a '6' "with probability 1.00".

An image is doubted when the head predicts another class ``k`` and either gives the image's own
label at most :data:`MAX_LABEL_PROBABILITY`, or is at least :data:`MIN_CONFIDENCE` sure of ``k``
and above confident learning's threshold for ``k`` (the mean probability of ``k`` over the images
labelled ``k``: how sure the head is on that class's own images). The second arm is for few
classes: a head calibrated on noisy labels gives a flipped label about the noise rate of that
pair of classes, so with two classes the flips sit above any small cut (on two well-separated
classes, 5% flipped: recall 0.15 with the cut alone, 0.85 with both arms).

The check speaks only when the features explain the labels well enough for a disagreement to
point at the label rather than at the features: the head's out-of-fold accuracy, counting the
doubted labels as the wrong labels they are said to be, must reach :data:`MIN_ACCURACY`.
Counting them, because 5% of flipped labels lower the plain accuracy by 5-8 points and would
otherwise silence the check exactly where it is needed; a weak head's calibrated probabilities
are too unsure to doubt many labels (none on 300 digits in random colours, 14% accurate).

Why not every doubted label is reported. Calibrated probabilities say how many correct labels a
rule doubts on a clean dataset: if every label were right, the number of images whose label the
head gives at most ``t`` is expected to be ``E(t)``, the sum of all probabilities (every image,
every class) that are at most ``t``. Where the features are middling, that is what the doubts were:
on ten draws of 1,000 clean digits through the shipped backbone (86-89% accurate, above the gate),
13-23 labels got at most 0.025 where ``E(0.025)`` was 15-20, and 4-10 more were predicted as
another class at 0.9 or more; the fixed rule flagged 2.1-2.9% of each clean dataset, every one a
correct label that the features find ambiguous. No fixed cut tells those from flips; a count can.
So below :data:`STRONG_ACCURACY` the cut is lowered to the largest ``t`` (at most
:data:`MAX_LABEL_PROBABILITY`) at which calibration expects at most :data:`MAX_EXPECTED_SHARE` of
the labels under it to be correct, ``E(t) <= MAX_EXPECTED_SHARE * n(t)`` (Benjamini and Hochberg's
step-up, with the calibrated expectation as the null), and the confident arm, which adds as many
ambiguous images as flips there, is not used. On those draws 0.45% was flagged (at most 0.8%; at
most 2.0% on draws of 600 digits), and with 5% of their labels flipped, 0.87 of the flags were
flips (recall 0.57; reporting every doubt, precision 0.75 and recall 0.73). The count is cautious
where labels are noisy: the head, calibrated on those labels, spreads the noise rate over every
class, so ``E`` counts much of the flips' own share as expected.

That caution costs flips where the features are strong, and buys little there: calibration
expects few correct labels under the rule (0.9% of the clean digits' pixels were doubted). So
from :data:`STRONG_ACCURACY` (the gate's accuracy) every doubted label is reported; the count
alone would find 0.70 of the pixels' flips rather than 0.84, and 0.12 of the two-class flips
rather than 0.86. ``MAX_EXPECTED_SHARE`` (0.3-0.8 tried) and ``STRONG_ACCURACY`` (0.93-0.97) were
chosen on draws and flips that BENCHMARKS.md does not report (``benchmarks/noise.py`` seeds
1-10, where 0.45 and 0.5 let one clean draw of 600 digits be 2.2% and 2.3% flagged); its table
is measured on seeds 11 onwards.

Candidates are listed for a person to review, never moved or dropped: the features may simply be
weak for that class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.doctor._findings import Finding
from headstart.doctor._samples import Labelled, display_path

if TYPE_CHECKING:
    from headstart.backbones import Backbone

__all__ = [
    "FOLDS",
    "MAX_EXPECTED_SHARE",
    "MAX_LABEL_PROBABILITY",
    "MIN_ACCURACY",
    "MIN_CONFIDENCE",
    "STRONG_ACCURACY",
    "NoiseCheck",
    "check_label_noise",
    "doubted_labels",
    "excess_cut",
    "expected_correct_below",
    "label_noise_findings",
    "out_of_fold_proba",
]

FOLDS = 5
"""Cross-validation folds; a class needs at least this many images to take part."""

MAX_LABEL_PROBABILITY = 0.025
"""A doubted label's calibrated out-of-fold probability is at most this..."""

MIN_CONFIDENCE = 0.9
"""... or the class it is predicted as gets at least this (and confident learning's threshold)."""

MIN_ACCURACY = 0.88
"""Out-of-fold accuracy (doubted labels counted as wrong) below which the check is silent."""

STRONG_ACCURACY = 0.95
"""The same accuracy from which every doubted label is reported; below it, only the excess."""

MAX_EXPECTED_SHARE = 0.4
"""Below :data:`STRONG_ACCURACY`, the share of the reported labels that calibration may expect
to be correct ones (the false-discovery rate the cut is chosen for)."""


@dataclass(frozen=True)
class OutOfFold:
    """Calibrated out-of-fold probabilities and how they were made.

    Attributes:
        proba: ``[N, K]``; row ``i`` from a head that never saw image ``i``.
        C: The inverse L2 strength chosen by cross-validated log-loss.
        temperature: The temperature applied (1.0 where the test did not support one).
    """

    proba: np.ndarray
    C: float
    temperature: float


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int) -> OutOfFold:
    """Each image's class probabilities from the project's linear head fitted without it.

    ``C`` and the temperature are chosen once, on :data:`FOLDS`-fold cross-validation over all
    images (as ``fit`` chooses them), rather than inside each fold: one walk instead of five, and
    two scalars fitted on thousands of images learn nothing about any single one of them. The
    fold heads are then fitted at that ``C`` (each on as many images as the folds that chose it,
    so with the same penalty per image).

    Args:
        x: Features ``[N, D]``.
        y: Labels ``[N]`` in ``0..num_classes-1``; every class has at least :data:`FOLDS` images.
        num_classes: K.
        seed: Seeds the folds.
    """
    import torch
    from sklearn.model_selection import StratifiedKFold

    from headstart.evaluation.calibration import calibrate_temperature, softmax
    from headstart.heads.logistic import Protocol, fit_linear, score_linear

    x = np.ascontiguousarray(x, np.float32)
    y = np.asarray(y, np.int64)
    chosen = score_linear(
        x, y, None, None, num_classes, seed=seed, protocol=Protocol("cv", folds=FOLDS)
    )
    temperature = 1.0
    if chosen.heldout_logits is not None and chosen.heldout_y is not None:
        temperature = calibrate_temperature(chosen.heldout_logits, chosen.heldout_y).temperature
    proba = np.zeros((len(y), num_classes), np.float64)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    for train, held in folds.split(x, y):
        head = fit_linear(
            x[train], y[train], None, None, num_classes, C=chosen.C, protocol=Protocol("none")
        ).head
        with torch.no_grad():
            logits = head(torch.from_numpy(x[held])).numpy()
        proba[held] = softmax(logits, temperature)
    return OutOfFold(proba, chosen.C, temperature)


def doubted_labels(proba: np.ndarray, y: np.ndarray) -> list[tuple[int, int]]:
    """``(index, suggested class)`` of the rows the head doubts, most suspicious first.

    The fixed rule (the module doc): what the gate counts, and what is reported where the
    features are strong.

    Args:
        proba: Calibrated out-of-fold probabilities ``[N, K]``.
        y: Given labels ``[N]`` in ``0..K-1``; every class occurs.
    """
    y = np.asarray(y, np.int64)
    rows = np.arange(len(y))
    given_p = proba[rows, y]
    suggested = proba.argmax(axis=1)
    suggested_p = proba[rows, suggested]
    thresholds = np.array([proba[y == j, j].mean() for j in range(proba.shape[1])])
    confident = (suggested_p >= MIN_CONFIDENCE) & (suggested_p >= thresholds[suggested])
    flagged = (suggested != y) & ((given_p <= MAX_LABEL_PROBABILITY) | confident)
    order = sorted(np.flatnonzero(flagged).tolist(), key=lambda i: (given_p[i], i))
    return [(i, int(suggested[i])) for i in order]


def expected_correct_below(proba: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """How many images' labels would get at most each cut if every label were right.

    With calibrated probabilities, image ``i`` carries class ``c`` with probability
    ``proba[i, c]``, so the expected count of correct labels given at most ``t`` is the sum of
    every probability that is at most ``t``.

    Args:
        proba: Calibrated probabilities ``[N, K]``.
        cuts: Probabilities ``t`` to count at.
    """
    flat = np.sort(np.asarray(proba, np.float64).ravel())
    totals = np.concatenate([[0.0], np.cumsum(flat)])
    return totals[np.searchsorted(flat, np.asarray(cuts, np.float64), side="right")]


def excess_cut(proba: np.ndarray, y: np.ndarray, max_expected_share: float) -> float:
    """The largest cut on the given label's probability whose labels calibration cannot explain.

    The step-up rule of Benjamini and Hochberg with the calibrated expectation as the null: of
    the given labels' probabilities (each a candidate ``t``), the largest at which the expected
    number of correct labels at most ``t`` is at most ``max_expected_share`` of the labels that
    are; 0 where there is none.

    Args:
        proba: Calibrated out-of-fold probabilities ``[N, K]``.
        y: Given labels ``[N]``.
        max_expected_share: The expected share of correct labels allowed under the cut.
    """
    given = np.sort(proba[np.arange(len(y)), np.asarray(y, np.int64)])
    # Counting ties: the labels at most given[j] are at least j + 1.
    observed = np.searchsorted(given, given, side="right")
    ok = np.flatnonzero(expected_correct_below(proba, given) <= max_expected_share * observed)
    return float(given[ok[-1]]) if len(ok) else 0.0


@dataclass(frozen=True)
class NoiseCheck:
    """What the check found on one set of features, or why it stayed silent.

    Attributes:
        candidates: ``(index, suggested class)``, most suspicious first; empty when skipped.
        proba: The calibrated out-of-fold probabilities the candidates were read from.
        accuracy: Out-of-fold accuracy against the given labels.
        gate_accuracy: The same with the doubted labels (:func:`doubted_labels`) counted as
            right (their labels taken as the wrong ones): what the gate compares with
            :data:`MIN_ACCURACY`, and :data:`STRONG_ACCURACY`.
        doubted: How many labels :func:`doubted_labels` doubts; the candidates are all of them
            (strong features) or those under :attr:`cut` (middling ones).
        cut: The cut on the given label's probability the candidates were read with: 1.0 where
            every doubted label is reported, else from :func:`excess_cut`.
        skipped: Why the candidates are withheld (the features are too weak), or "".
        stats: JSON-able numbers for the report.
    """

    candidates: list[tuple[int, int]]
    proba: np.ndarray
    accuracy: float
    gate_accuracy: float
    doubted: int = 0
    cut: float = 1.0
    skipped: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


def check_label_noise(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    seed: int = 0,
    min_accuracy: float = MIN_ACCURACY,
) -> NoiseCheck:
    """Candidates on ``x``: the doubted labels that calibration cannot explain, or none.

    Args:
        x: Features ``[N, D]``.
        y: Given labels ``[N]`` in ``0..num_classes-1``; each class with :data:`FOLDS` or more.
        num_classes: K.
        seed: Seeds the folds.
        min_accuracy: The gate (see the module doc); 0 always speaks (the benchmark uses it to
            measure what the gate withholds).
    """
    oof = out_of_fold_proba(x, y, num_classes, seed)
    y = np.asarray(y, np.int64)
    doubted = doubted_labels(oof.proba, y)
    accuracy = float((oof.proba.argmax(axis=1) == y).mean())
    # A doubted label is always a wrong prediction, so counting it as right adds one each.
    gate_accuracy = accuracy + len(doubted) / max(1, len(y))
    cut = 1.0
    candidates = doubted
    if gate_accuracy < STRONG_ACCURACY:
        cut = excess_cut(oof.proba, y, MAX_EXPECTED_SHARE)
        given = oof.proba[np.arange(len(y)), y]
        candidates = [(i, k) for i, k in doubted if given[i] <= cut]
    stats = {
        "C": oof.C,
        "temperature": oof.temperature,
        "cv_accuracy": round(accuracy, 4),
        "gate_accuracy": round(gate_accuracy, 4),
        "min_accuracy": min_accuracy,
        "doubted": len(doubted),
        "cut": round(cut, 6),
        "candidates": len(candidates),
    }
    skipped = ""
    if gate_accuracy < min_accuracy:
        doubts = (
            f" ({100 * gate_accuracy:.1f}% if the {len(doubted)} labels the check doubts are wrong)"
            if doubted
            else ""
        )
        skipped = (
            f"the features' own cross-validated accuracy is {100 * accuracy:.1f}%{doubts}, "
            f"below the {100 * min_accuracy:.0f}% at which their disagreements point at a wrong "
            "label rather than at the features; a stronger --model may tell"
        )
        stats["withheld"], stats["candidates"] = len(candidates), 0
        candidates = []
    return NoiseCheck(
        candidates, oof.proba, accuracy, gate_accuracy, len(doubted), cut, skipped, stats
    )


def label_noise_findings(
    backbone: Backbone,
    samples: Sequence[Labelled],
    *,
    root: Path,
    cache_dir: Path | None,
    num_workers: int | None,
    device: str,
    engine: str = "auto",
    quiet: bool,
    seed: int = 0,
) -> tuple[list[Finding], dict[str, Any]]:
    """Findings for label-noise candidates among all splits, and the cross-validation's numbers.

    Every split takes part: a wrong label in val or test distorts the scores as much as one in
    train misleads the model. Classes with fewer than :data:`FOLDS` images are left out (they are
    reported as too small already). Where the features are too weak for the check to speak, the
    one finding is an info line that says so and why.

    Args:
        backbone: Extracts the features (through the feature cache, so a later training run on
            the same data and model reuses them).
        samples: Readable samples.
        root: Dataset root, to show paths.
        cache_dir: Feature cache folder, or None for no cache.
        num_workers: Decoding workers for extraction.
        device: Where the backbone runs.
        engine: What runs it on a CPU (:mod:`headstart.features.engines`).
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
            engine=engine,
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
    check = check_label_noise(x, y, len(kept), seed=seed)
    stats.update(images=len(rows), **check.stats)
    if check.skipped:
        message = f"label noise not checked: {check.skipped}"
        return [Finding("info", "label-noise-skipped", message)], stats
    proba = check.proba
    findings = []
    for i, suggested in check.candidates:
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
    return findings, stats
