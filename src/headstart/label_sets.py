"""Multi-label runs: where a classifier of label sets differs from one of classes.

The estimator, the fitted state and the commands call these where the data has several labels an
image (``Dataset.multi_label``, a run whose ``thresholds`` are set), so that they each hold one
line for it rather than the logic: which strategies can train it, how its probabilities are
computed (a sigmoid a label: the head's logits are calibrated already, each label's temperature
folded into its row), which labels an image gets (those at or above their thresholds), and how it
is measured (:mod:`headstart.evaluation.multilabel`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.data.multilabel import label_matrix
from headstart.errors import InvalidParameterError
from headstart.evaluation.multilabel import multilabel_metrics
from headstart.heads.multilabel import fold_label_temperatures, sigmoid
from headstart.predictions import Prediction, SplitPrediction

__all__ = [
    "MULTI_LABEL_STRATEGIES",
    "calibrate_labels",
    "check_multi_label_params",
    "evaluate_label_sets",
    "label_proba",
    "label_sets",
    "split_metrics",
    "thresholds_of",
    "with_label_set",
]

MULTI_LABEL_STRATEGIES: tuple[str, ...] = ("features", "augment", "finetune", "scratch")
"""The strategies that train on multi-label data. ``auto`` trains it with the first: its
measurements (the options it scores on held-out log-loss) are of single-label heads so far."""


def check_multi_label_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a multi-label fit trains with: ``auto`` becomes the one strategy there is.

    Raises:
        InvalidParameterError: A strategy, head or option that does not train on several labels
            an image yet, with what to use instead.
    """
    out = dict(params)
    strategy = out.get("strategy")
    if strategy == "auto":
        out["strategy"] = MULTI_LABEL_STRATEGIES[0]
    elif strategy not in MULTI_LABEL_STRATEGIES:
        raise InvalidParameterError(
            f"strategy {strategy!r} does not train on multi-label data yet; use one of "
            f"{', '.join((*MULTI_LABEL_STRATEGIES, 'auto'))} (--strategy features trains one "
            "logistic regression a label on cached features)"
        )
    if out.get("head") not in (None, "linear"):
        raise InvalidParameterError(
            f"head {out.get('head')!r} does not train on multi-label data yet; use the linear "
            "head (--head linear)"
        )
    for name, unused in (("class_weight", (None, "none")), ("C", (None,))):
        if out.get(name) not in unused:
            raise InvalidParameterError(
                f"{name} is not used with multi-label data: each label's L2 strength is chosen "
                f"on held-out images; leave {name} out"
            )
    return out


def thresholds_of(selection: Mapping[str, Any] | None) -> list[float] | None:
    """The per-label thresholds a multi-label head fit chose (None for a single-label one)."""
    if not selection or selection.get("kind") != "multi-label":
        return None
    return [float(t) for t in selection["thresholds"]]


def calibrate_labels(
    head: nn.Module, selection: Mapping[str, Any], method: str
) -> tuple[dict[str, Any], list[float]]:
    """Fold each label's temperature into ``head`` (``method`` "temperature"), or leave the head
    uncalibrated ("none"); returns the record for ``config.json`` and the thresholds to predict
    with.

    The thresholds were chosen on calibrated probabilities; without calibration each is moved to
    the uncalibrated probability of the same logit, ``sigmoid(T logit(t))``, so that the same
    images get the same labels either way: only what the probabilities say changes.
    """
    temperatures = [float(t) for t in selection["temperatures"]]
    thresholds = [float(t) for t in selection["thresholds"]]
    if method == "none":
        raw = [
            float(sigmoid(np.array(t * np.log(p / (1 - p))))) if 0 < p < 1 else p
            for p, t in zip(thresholds, temperatures, strict=True)
        ]
        return {
            "method": "none",
            "temperature": 1.0,
            "reason": "turned off (--calibrate none)",
        }, raw
    assert isinstance(head, nn.Linear)
    fold_label_temperatures(head, temperatures)
    record = {
        "method": "temperature per label",
        "temperature": 1.0,
        "temperatures": temperatures,
        "kept": sum(t != 1.0 for t in temperatures),
        "fitted_on": "held-out logits of the selection step",
    }
    return record, thresholds


def label_proba(head: nn.Module, features: np.ndarray) -> np.ndarray:
    """Per label, the probability it is on the image: the sigmoid of the head's logits."""
    head.eval()
    with torch.no_grad():
        logits = head(torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()
    return sigmoid(logits)


def label_sets(
    proba: np.ndarray, thresholds: Sequence[float], classes: Sequence[str]
) -> list[list[str]]:
    """The labels of each image: those at or above their thresholds (possibly none)."""
    above = np.asarray(proba) >= np.asarray(thresholds)
    return [[classes[int(j)] for j in np.flatnonzero(row)] for row in above]


def split_metrics(
    head: nn.Module,
    split_xy: Mapping[str, tuple[np.ndarray, np.ndarray]],
    thresholds: Sequence[float],
    classes: Sequence[str],
    skip: set[str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of each split not in ``skip``, and the probabilities they came from."""
    metrics: dict[str, Any] = {}
    proba: dict[str, np.ndarray] = {}
    for name, (x, y) in split_xy.items():
        if name in skip or not len(y):
            continue
        proba[name] = label_proba(head, x)
        metrics[name] = multilabel_metrics(y, proba[name], thresholds, classes)
    return metrics, proba


def with_label_set(
    prediction: Prediction, proba: np.ndarray, thresholds: Sequence[float], classes: Sequence[str]
) -> Prediction:
    """``prediction`` with the image's labels and every label's probability."""
    return dataclasses.replace(
        prediction,
        labels=tuple(label_sets(proba[None, :], thresholds, classes)[0]),
        probabilities=tuple((name, float(p)) for name, p in zip(classes, proba, strict=True)),
    )


def evaluate_label_sets(
    predicted: SplitPrediction,
    thresholds: Sequence[float],
    classes: Sequence[str],
    split: str,
    tta: str,
) -> dict[str, Any]:
    """``evaluate``'s result for a multi-label run: the metrics, the images, their predicted
    label indices, and the files that could not be read."""
    kept = predicted.samples
    metrics = multilabel_metrics(
        label_matrix(kept, len(classes)), predicted.proba, thresholds, classes
    )
    above = np.asarray(predicted.proba) >= np.asarray(thresholds)
    metrics["split"] = split
    metrics["tta"] = tta
    metrics["paths"] = [str(s.path) for s in kept]
    metrics["predicted"] = [[int(j) for j in np.flatnonzero(row)] for row in above]
    metrics["skipped"] = [{"path": str(p), "reason": r} for p, r in predicted.failures.items()]
    return metrics
