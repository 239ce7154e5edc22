"""What the report shows, gathered: the run's record, its history and a fresh evaluation.

The numbers come from the run folder (``config.json`` through :func:`headstart.runs.read_config`,
``history.csv``); the image grids need the images, so the model is evaluated again on DATA (by
default the training data, if it is still where the run recorded it), through the estimator's
public ``predict_split``: right after training it returns the probabilities ``fit`` computed,
without a forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.errors import HeadstartError, ImageDecodeError
from headstart.reporting._images import jpeg_uri
from headstart.runs import read_history_csv

if TYPE_CHECKING:
    from headstart.data import CsvColumns
    from headstart.estimator import ImageClassifier
    from headstart.reporting._label_sets import LabelSetResults

__all__ = [
    "CAM_SIDE",
    "EXPLAIN_LIMIT",
    "Evaluation",
    "Item",
    "RunRecord",
    "evaluate",
    "read_history",
    "resolve_data",
]

EXPLAIN_LIMIT = 12  # mistakes with class-activation maps: two backward passes each, kept quick
CAM_SIDE = 112


@dataclass(frozen=True)
class RunRecord:
    """The parts of config.json the report reads, with a default for each missing one."""

    folder: Path
    hs: Mapping[str, Any]

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.hs.get("classes", [])]

    def section(self, key: str) -> Mapping[str, Any]:
        value = self.hs.get(key)
        return value if isinstance(value, Mapping) else {}

    @property
    def best_epoch(self) -> int:
        return int(self.section("training").get("best_epoch") or 0)


def read_history(folder: Path) -> list[dict[str, float]]:
    """The run's ``history.csv`` (:func:`headstart.runs.read_history_csv`)."""
    return read_history_csv(folder / "history.csv")


def resolve_data(hs: Mapping[str, Any], data: str | Path | None) -> tuple[Path | None, str]:
    """The data to evaluate on, or None and a note saying why the page has no image grids."""
    if data is not None:
        return Path(data), ""
    root = (hs.get("data") or {}).get("root")
    if not root:
        return None, (
            "The run does not record where its training data is; the image grids need it: "
            "run `headstart report RUN DATA`."
        )
    if not Path(root).exists():
        return None, (
            f"The training data is no longer at {root}; the image grids need the images: "
            "run `headstart report RUN DATA`."
        )
    return Path(root), ""


@dataclass
class Item:
    """One evaluated image: its true and predicted class indices."""

    path: Path
    true: int
    predicted: int
    probability: float  # of the predicted class
    typicality: float | None = None  # for a run with a typicality score


@dataclass
class Evaluation:
    """DATA evaluated now: the split shown, its metrics, and each image's outcome."""

    data: Path
    split: str
    metrics: dict[str, Any]
    items: list[Item]
    skipped: list[dict[str, str]] = field(default_factory=list)
    # path -> (map of the wrong answer, map of the true class, layer), for the top mistakes
    explanations: dict[Path, tuple[str, str, str]] = field(default_factory=dict)
    # the run's typicality threshold, when it has a score and every item has a typicality
    unknown_threshold: float | None = None
    # A multi-label run's images and curves (:mod:`headstart.reporting._label_sets`).
    label_sets: LabelSetResults | None = None


def evaluate(clf: ImageClassifier, data: Path, columns: CsvColumns | None = None) -> Evaluation:
    """The split ``headstart evaluate`` would pick (test, else val, else all), item by item."""
    from headstart.evaluation.metrics import classification_metrics

    if clf.thresholds_ is not None:
        from headstart.reporting._label_sets import evaluate_label_sets

        return evaluate_label_sets(clf, data, columns)

    dataset = clf.evaluation_dataset(data, columns=columns)
    split = next((s for s in ("test", "val", "train") if dataset.splits.get(s)), "train")
    skipped = [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped]
    # The training run's own probabilities when this is the data it just trained on; otherwise
    # one matrix of predicted ones (a Prediction per image cost half a second at 10,000).
    predicted = clf.predict_split(dataset, split)
    skipped += [{"path": str(p), "reason": r} for p, r in predicted.failures.items()]
    proba = predicted.proba
    guesses = proba.argmax(1)
    typical = predicted.typicality
    items = [
        Item(
            sample.path,
            sample.label,
            int(guess),
            float(proba[row, guess]),
            None if typical is None else float(typical[row]),
        )
        for row, (sample, guess) in enumerate(zip(predicted.samples, guesses, strict=True))
    ]
    y = np.array([i.true for i in items])
    metrics = classification_metrics(y, proba, list(clf.classes_))
    metrics["reliability"] = _reliability(proba, y, clf)
    threshold = None
    if typical is not None and clf.typicality_ is not None:
        threshold = float(clf.typicality_.threshold)
        metrics["unknown_share"] = float(np.mean(typical < threshold)) if len(typical) else None
    shown_split = split if (split != "train" or dataset.split_spec is None) else "all"
    return Evaluation(
        data,
        shown_split,
        metrics,
        items,
        skipped,
        _explain_mistakes(clf, items),
        unknown_threshold=threshold,
    )


def _reliability(proba: np.ndarray, y: np.ndarray, clf: ImageClassifier) -> dict[str, Any]:
    """Reliability bins of the probabilities as predicted and as they were before calibration.

    The calibrated logits are the raw ones divided by the temperature T, so the uncalibrated
    probabilities are ``softmax(T * log p)``: no second pass over the images.
    """
    from headstart.evaluation.calibration import (
        expected_calibration_error,
        reliability_bins,
        softmax,
    )

    temperature = float(getattr(clf, "temperature_", 1.0))
    calibration = getattr(clf, "calibration_", None) or {}
    raw = softmax(np.log(np.clip(proba, 1e-30, 1.0)) * temperature) if len(proba) else proba
    return {
        "temperature": temperature,
        "test": str(calibration.get("test", "")),
        "before": reliability_bins(raw, y),
        "after": reliability_bins(proba, y),
        "ece_before": expected_calibration_error(raw, y) if len(y) else None,
        "ece_after": expected_calibration_error(proba, y) if len(y) else None,
    }


def _explain_mistakes(
    clf: ImageClassifier, items: Sequence[Item]
) -> dict[Path, tuple[str, str, str]]:
    """Grad-CAM overlays for the most confident mistakes: for the wrong answer and the truth.

    Capped at :data:`EXPLAIN_LIMIT` images so the report stays quick; a backbone the maps
    cannot be computed for (no spatial activation) gets a gallery without them.
    """
    from headstart.reporting.explain import explain_image, overlay

    wrong = sorted((i for i in items if i.predicted != i.true), key=lambda i: -i.probability)
    out: dict[Path, tuple[str, str, str]] = {}
    for item in wrong[:EXPLAIN_LIMIT]:
        try:
            pred, true = explain_image(clf, item.path, classes=[item.predicted, item.true])
        except ImageDecodeError:
            continue  # changed on disk since it was evaluated
        except HeadstartError:
            return {}
        images = []
        for explanation in (pred, true):
            shown = overlay(explanation)
            shown.thumbnail((CAM_SIDE, CAM_SIDE))
            images.append(jpeg_uri(shown))
        out[item.path] = (images[0], images[1], pred.layer)
    return out
