"""The fitted state of a classifier: one record that training and loading both produce.

``ImageClassifier.fit`` builds a :class:`FittedModel` from what the strategy returned, and
:func:`headstart.saving.load_run` builds one from a run folder; the estimator sets its learned
attributes (``classes_``, ``head_``, ...) from either in one place, each field as the attribute
of the same name with a trailing ``_``. A loaded classifier therefore has exactly the attributes of
a freshly fitted one, and saving writes the record, whichever way it came.

Calibration and the end-of-training metrics live here too, because they turn a strategy's result
into the fitted state: the temperature is folded into the head before anything predicts with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.errors import DataError
from headstart.evaluation.metrics import classification_metrics
from headstart.heads.modules import fold_temperature
from headstart.heads.typicality import Typicality, fit_typicality
from headstart.label_sets import calibrate_labels, split_metrics, thresholds_of
from headstart.preprocess import Preprocess
from headstart.strategies import Fitted, ResolvedSettings, TrainSettings, xy
from headstart.strategies.auto import Advice

__all__ = [
    "FittedModel",
    "LearnedAttributes",
    "calibrate",
    "SplitScores",
    "finish_fit",
    "fit_unknowns",
    "fitted_metrics",
    "fitted_names",
    "head_logits",
    "head_proba",
    "missing_typicality",
    "split_features",
]


@dataclass
class FittedModel:
    """Everything a fitted classifier has; saved as a run folder, read back by ``load``.

    Attributes:
        backbone, head: The network that predicts: the head takes the backbone's pooled features
            (with the calibration temperature folded into its last layer).
        classes: Class names, in the order of the head's outputs.
        preprocess: The one preprocessing of training and prediction, from the weights.
        backbone_id: The backbone's weights fingerprint (the feature cache's key).
        settings: The training settings as resolved and used.
        history: One row per epoch (empty for a head solved in one go).
        best_epoch, monitor: The epoch whose weights were kept, and the quantity that chose it.
        interrupted: Ctrl-C ended training; the best weights so far were kept.
        epoch_seconds, fit_seconds: Wall time of each end-to-end epoch, and of the whole fit.
        details: Strategy-specific facts (stages unfrozen, views, the head's selection).
        selection: How the head's setting was chosen and which images the final fit used.
        cost_estimate: The estimate printed before end-to-end training, if any.
        extraction: Images whose features were computed and read from the cache.
        calibration, temperature: How probabilities were calibrated, and the temperature.
        metrics: Validation and test metrics at the end of training.
        dataset: The data's summary (root, layout, counts, split recipe, skipped files).
        advice: What ``auto`` measured and chose (None when the user named the strategy).
        not_used: Options the user gave that the strategy ``auto`` chose does not use, and why
            (empty when every option given was used).
        typicality: How typical of the training classes an image's features are, fitted on
            train + val (:mod:`headstart.heads.typicality`); None when it was turned off or could
            not be fitted (why: ``unknowns``), and for runs saved before it existed.
        unknowns: What was done about images of none of the classes: the score, the threshold,
            or why there is none.
        thresholds: Multi-label runs only: per label (``classes``), the probability from which
            an image has it (:mod:`headstart.label_sets`); None for one class an image.
    """

    backbone: Backbone
    head: nn.Module
    classes: list[str]
    preprocess: Preprocess
    backbone_id: str
    settings: TrainSettings
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    monitor: str = "val_loss"
    interrupted: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    cost_estimate: str | None = None
    extraction: dict[str, int] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    temperature: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    advice: Advice | None = None
    not_used: dict[str, Any] = field(default_factory=dict)
    typicality: Typicality | None = None
    unknowns: dict[str, Any] = field(default_factory=dict)
    thresholds: list[float] | None = None


class LearnedAttributes:
    """The fitted state as an estimator's attributes: each field of :class:`FittedModel` with a
    trailing ``_`` (scikit-learn's mark of learned state), typed; set only from a record."""

    backbone_: Backbone
    head_: nn.Module
    classes_: list[str]
    preprocess_: Preprocess
    backbone_id_: str
    settings_: TrainSettings
    history_: list[dict[str, Any]]
    best_epoch_: int
    monitor_: str
    interrupted_: bool
    epoch_seconds_: list[float]
    fit_seconds_: float
    details_: dict[str, Any]
    selection_: dict[str, Any] | None
    cost_estimate_: str | None
    extraction_: dict[str, int]
    calibration_: dict[str, Any] | None
    temperature_: float
    metrics_: dict[str, Any]
    dataset_: dict[str, Any]
    advice_: Advice | None
    not_used_: dict[str, Any]
    typicality_: Typicality | None
    unknowns_: dict[str, Any]
    thresholds_: list[float] | None


def fitted_names() -> tuple[str, ...]:
    """The record's field names: the estimator's learned attributes, each with a trailing ``_``."""
    return tuple(f.name for f in fields(FittedModel))


def finish_fit(
    fitted: Fitted,
    resolved: ResolvedSettings,
    *,
    calibration: str,
    unknown_score: str,
    unknown_threshold: float,
    extract: Callable[[Sequence[Path]], Any],
    advice: Advice | None,
    started: float,
) -> tuple[FittedModel, Dataset, dict[str, SplitScores]]:
    """A strategy's result made the fitted state: calibrated, its typicality fitted, then
    measured on held-out splits.

    Args:
        fitted: What the strategy returned.
        resolved: The settings it trained with, and the options given that they left unused.
        calibration: ``"temperature"`` or ``"none"`` (:func:`calibrate`).
        unknown_score, unknown_threshold: The typicality score (``"none"``: no typicality) and
            the typicality below which an image is flagged unknown (:func:`fit_unknowns`).
        extract: Plain features of ``fitted.backbone`` for splits it has none of.
        advice: What ``auto`` measured and chose, if it chose.
        started: ``time.monotonic()`` when the fit started.

    Returns:
        The record, the dataset as trained on (unreadable images skipped), and each held-out
        split's probabilities and typicality (:func:`fitted_metrics`).
    """
    thresholds = thresholds_of(fitted.details.get("selection"))
    temperature = 1.0
    if thresholds is None:
        record, temperature = calibrate(fitted.head, fitted, calibration)
    else:  # several labels an image: a temperature a label
        record, thresholds = calibrate_labels(fitted.head, fitted.details["selection"], calibration)
    unknown_score = unknown_score if thresholds is None else "none"
    wanted = ("train", "val", "test") if unknown_score != "none" else ("val", "test")
    dataset, split_xy = split_features(fitted, extract, wanted)
    typicality, unknowns = fit_unknowns(
        fitted,
        split_xy,
        score=unknown_score,
        threshold=unknown_threshold,
        temperature=temperature,
        seed=resolved.settings.seed,
    )
    metrics, proba = fitted_metrics(fitted, dataset, split_xy, typicality, thresholds)
    not_used = {"options": resolved.not_used, "reason": resolved.note} if resolved.not_used else {}
    state = FittedModel(
        backbone=fitted.backbone,
        head=fitted.head,
        classes=list(fitted.dataset.classes),
        preprocess=fitted.backbone.preprocess,
        backbone_id=fitted.backbone.weights_id,
        settings=resolved.settings,
        history=fitted.history,
        best_epoch=fitted.best_epoch,
        monitor=fitted.monitor,
        interrupted=fitted.interrupted,
        epoch_seconds=fitted.epoch_seconds,
        fit_seconds=time.monotonic() - started,
        details=fitted.details,
        selection=fitted.details.get("selection"),
        cost_estimate=fitted.cost.message() if fitted.cost else None,
        extraction=fitted.extraction,
        calibration=record,
        temperature=temperature,
        metrics=metrics,
        dataset=dataset.summary(),
        advice=advice,
        not_used=not_used,
        typicality=typicality,
        unknowns=unknowns,
        thresholds=thresholds,
    )
    return state, dataset, proba


def calibrate(head: nn.Module, fitted: Fitted, method: str) -> tuple[dict[str, Any], float]:
    """Fit a temperature on logits of images the model that produced them never saw, and fold it
    into ``head``'s last layer; returns the record of what was done and the temperature.

    Folding (weights and bias divided by it) means every path that runs the head (predict,
    evaluate, the report, timm loading the run folder, an export) gives calibrated probabilities
    without knowing about it, and no prediction changes: the arg-max of ``z / T`` is that of ``z``.

    Those are the selection step's held-out logits (validation, or out of fold); after an
    end-to-end strategy, the validation logits of the final model, which chose only its epoch
    there. A model refitted on train + val has no such logits of its own: the temperature of its
    selection step carries over (the refit sees more images of the same kind, so it is, if
    anything, slightly less over-confident). The temperature is applied only when a
    likelihood-ratio test on those logits supports it and it does not raise their ECE
    (:func:`~headstart.evaluation.calibration.calibrate_temperature`).
    """
    from headstart.evaluation.calibration import calibrate_temperature

    logits, y = fitted.heldout_logits, fitted.heldout_y
    source = "held-out logits of the selection step"
    if logits is None and not fitted.trained_on_val and "val" in fitted.features:
        val_x, y = fitted.features["val"]
        if len(y):
            head.eval()
            with torch.no_grad():
                logits = head(torch.from_numpy(np.ascontiguousarray(val_x))).numpy()
            source = "validation logits of the final model"
    if method == "none" or logits is None or y is None or not len(y):
        reason = (
            "turned off (--calibrate none)"
            if method == "none"
            else ("no held-out images to fit it on")
        )
        return {"method": "none", "temperature": 1.0, "reason": reason}, 1.0
    fit = calibrate_temperature(logits, y)
    fold_temperature(head, fit.temperature)
    record = {
        "method": "temperature",
        "temperature": fit.temperature,
        "fitted_temperature": fit.fitted,
        "likelihood_ratio": fit.statistic,
        "significant": fit.significant,
        "test": fit.describe(),
        "fitted_on": source,
        "n": int(len(y)),
        "heldout_ece_before": fit.ece_before,
        "heldout_ece_after": fit.ece_applied,
    }
    return record, fit.temperature


def split_features(
    fitted: Fitted, extract: Callable[[Sequence[Path]], Any], names: Sequence[str]
) -> tuple[Dataset, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Features and labels of the named splits for ``fitted.backbone``: the strategy's where it
    has them (still valid for the backbone it returned), the others extracted in one pass.

    Returns:
        The dataset (less any image that could not be read now) and ``split -> (x, y)`` for
        each named split that has images.
    """
    dataset = fitted.dataset
    split_xy = {k: v for k, v in fitted.features.items() if k in names}
    missing = [name for name in names if dataset.splits.get(name) and name not in split_xy]
    if missing:
        extracted = extract([s.path for name in missing for s in dataset.splits[name]])
        if extracted.failures:
            dataset = dataset.without(extracted.failures)
        by_path = dict(zip(extracted.paths, extracted.features, strict=True))
        labels = len(dataset.classes) if dataset.multi_label else None
        for name in missing:
            samples = dataset.splits.get(name, [])
            split_xy[name] = xy(samples, by_path, fitted.backbone.num_features, num_labels=labels)
    return dataset, split_xy


def missing_typicality(unknowns: Mapping[str, Any]) -> str:
    """Why a run has no typicality score, from its ``unknowns`` record, for every message that
    refuses an unknowns option on it: turned off, multi-label, or saved before headstart had one
    (an empty record)."""
    reason = unknowns.get("reason")
    if reason:
        return str(reason)
    return "it was saved before headstart had one; retrain it to get one"


def fit_unknowns(
    fitted: Fitted,
    split_xy: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    score: str,
    threshold: float,
    temperature: float,
    seed: int,
) -> tuple[Typicality | None, dict[str, Any]]:
    """The run's typicality, fitted on the final model's train + val features (never test), and
    the record of what was done.

    Validation images join the fit and the out-of-fold scale whether or not the head was refitted
    on them: they are labelled known images like the training ones, and the scale needs held-out
    known images, which the folds provide. A logit score's scale comes from the selection step's
    held-out logits, divided by the temperature folded into the head (the head predicts with it).
    """
    if fitted.dataset.multi_label:
        reason = "not fitted for multi-label data: an image of no label is a valid answer there"
        return None, {"score": "none", "reason": reason}
    if score == "none":
        return None, {"score": "none", "reason": "turned off (--unknown-score none)"}
    train_x, train_y = split_xy.get("train", (None, None))
    val_x, val_y = split_xy.get("val", (None, None))
    if train_x is None or train_y is None:
        return None, {"score": "none", "reason": "no training features"}
    logits = fitted.heldout_logits
    try:
        typicality = fit_typicality(
            train_x,
            train_y,
            val_x,
            val_y,
            score=score,  # type: ignore[arg-type]  # checked by the estimator
            heldout_logits=None if logits is None else logits / temperature,
            threshold=threshold,
            seed=seed,
        )
    except DataError as exc:
        return None, {"score": "none", "reason": str(exc)}
    return typicality, {
        "score": typicality.score,
        "threshold": typicality.threshold,
        "folds": typicality.folds,
        "heldout_images": int(len(typicality.knowns)),
        "measured": dict(typicality.measured),
    }


@dataclass(frozen=True)
class SplitScores:
    """A held-out split's probabilities, and its typicality when the run has one."""

    proba: np.ndarray
    typicality: np.ndarray | None = None


def fitted_metrics(
    fitted: Fitted,
    dataset: Dataset,
    split_xy: dict[str, tuple[np.ndarray, np.ndarray]],
    typicality: Typicality | None,
    thresholds: Sequence[float] | None = None,
) -> tuple[dict[str, Any], dict[str, SplitScores]]:
    """Validation and test metrics, and the scores they came from (each split's, when it has a
    row per sample); with a typicality, the share of each split's images flagged unknown.

    A model refitted on train + val gets no "val" metrics: those images trained it. The
    held-out figures of its selection step are in ``selection``, named as what they are.
    A multi-label run (``thresholds``, one a label) is measured by
    :func:`headstart.label_sets.split_metrics`.
    """
    classes = list(dataset.classes)
    skip = {"train", "val"} if fitted.trained_on_val else {"train"}
    if thresholds is not None:
        found, probas = split_metrics(fitted.head, split_xy, thresholds, classes, skip)
        sizes = {name: len(dataset.splits.get(name, [])) for name in probas}
        return found, {n: SplitScores(p) for n, p in probas.items() if len(p) == sizes[n]}
    metrics: dict[str, Any] = {}
    scores: dict[str, SplitScores] = {}
    for name, (x, y) in split_xy.items():
        if name in skip or not len(y):
            continue
        logits = head_logits(fitted.head, x)
        proba = F.softmax(torch.from_numpy(logits), dim=1).numpy()
        metrics[name] = classification_metrics(y, proba, classes)
        typical = None
        if typicality is not None:
            typical = typicality.typicality(x, logits)
            metrics[name]["unknown_share"] = float(np.mean(typical < typicality.threshold))
        if np.array_equal(y, [s.label for s in dataset.splits.get(name, [])]):
            scores[name] = SplitScores(proba, typical)  # a row per sample, in the split's order
    return metrics, scores


def head_logits(head: nn.Module, features: np.ndarray) -> np.ndarray:
    """The head's (calibrated) logits of pooled features."""
    head.eval()
    with torch.no_grad():
        return head(torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()


def head_proba(head: nn.Module, features: np.ndarray) -> np.ndarray:
    """Class probabilities: the softmax of the head's (calibrated) logits."""
    return F.softmax(torch.from_numpy(head_logits(head, features)), dim=1).numpy()
