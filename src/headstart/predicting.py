"""From pooled features to answers: the one path every prediction of a fitted model takes.

``predict_files``, ``predict_proba``, ``predict_features`` (the server's batches), ``predict_split``
and ``evaluate`` all turn a backbone's pooled features into probabilities, a typicality and
:class:`~headstart.predictions.Prediction` records through :class:`Answers`, so the same image
gets the same numbers whichever door it came in by. Extraction stays with the estimator (it owns
the cache and the device): what needs images here takes an ``extract`` callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from headstart.data import collect_image_paths
from headstart.errors import DataError, ImageDecodeError
from headstart.evaluation import classification_metrics
from headstart.fitted import head_logits
from headstart.heads.multilabel import sigmoid
from headstart.heads.typicality import Typicality, check_unknown_options
from headstart.label_sets import label_sets, with_label_set
from headstart.predictions import Prediction, SplitPrediction

__all__ = ["Answers", "Paths", "as_list", "in_given_order"]

Paths = str | Path | Sequence[str | Path]
Extract = Callable[..., Any]
"""``extract(paths, *, desc, view=None)``: the estimator's cached extraction with its backbone."""


@dataclass(frozen=True)
class Answers:
    """What a fitted model says about pooled features.

    Attributes:
        head: The fitted head (calibrated logits out).
        classes: Class names, in the head's output order.
        thresholds: A multi-label run's threshold per label; None for a single-label run.
        typicality: The run's typicality score; None for a run without one.
    """

    head: nn.Module
    classes: list[str]
    thresholds: list[float] | None
    typicality: Typicality | None

    def proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities: the softmax of the head's (calibrated) logits; for a multi-label
        run, each label's probability (a sigmoid each)."""
        return self._proba_of(head_logits(self.head, features))

    def typicality_of(self, features: np.ndarray) -> np.ndarray | None:
        """Typicality of pooled features (None for a run without one)."""
        return self.scores(features)[1]

    def scores(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, typicality) of pooled features, the head run once for both: a logit
        score (``max_logit``, ``energy``, ...) reads the same logits the probabilities come from."""
        logits = head_logits(self.head, features)
        score = self.typicality
        typicality = None
        if score is not None:
            typicality = score.typicality(features, logits if score.needs_logits else None)
        return self._proba_of(logits), typicality

    def _proba_of(self, logits: np.ndarray) -> np.ndarray:
        if self.thresholds is not None:
            return sigmoid(logits)
        return F.softmax(torch.from_numpy(logits), dim=1).numpy()

    def threshold(self, given: float | None) -> float | None:
        """The unknown threshold predictions use: ``given`` (checked), else the run's; None
        without a typicality."""
        if self.typicality is None:
            return None
        if given is None:
            return self.typicality.threshold
        check_unknown_options(self.typicality.score, given)
        return float(given)

    def labels(self, proba: np.ndarray) -> list[Any]:
        """The most probable class of each row; for a multi-label run, each row's label set."""
        if self.thresholds is not None:
            return label_sets(proba, self.thresholds, self.classes)
        return [self.classes[i] for i in proba.argmax(1)]

    def predictions(
        self,
        paths: Sequence[Path],
        features: np.ndarray,
        *,
        top_k: int,
        cut: float | None,
        proba: np.ndarray | None = None,
        typicality: np.ndarray | None = None,
    ) -> list[Prediction]:
        """One answer per row of ``features``: the one place a :class:`Prediction` is made.

        ``cut``: the unknown threshold. ``proba``, ``typicality``: when the caller has them
        already (``proba`` averaged over test-time augmented views); else computed from
        ``features``.
        """
        if proba is None:
            proba, typicality = self.scores(features)
        k = max(1, min(top_k, len(self.classes)))
        results: list[Prediction] = []
        for i, (path, row) in enumerate(zip(paths, proba, strict=True)):
            order = np.argsort(-row, kind="stable")[:k]
            top = tuple((self.classes[c], float(row[c])) for c in order)
            typical = None if typicality is None else float(typicality[i])
            unknown = None if typical is None or cut is None else typical < cut
            answer = Prediction(path, top[0][0], top[0][1], top, typical, unknown)
            if self.thresholds is not None:
                answer = with_label_set(answer, row, self.thresholds, self.classes)
            results.append(answer)
        return results

    def tta_proba(
        self, extract: Extract, files: Sequence[Path], views: Sequence[Any], *, desc: str
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        """(extraction of the plain view, probabilities averaged over ``views``, the plain
        view's typicality): typicality is of the image as it is, not of its flips.

        ``views[0]`` is the plain view (:func:`headstart.tta.tta_views`).
        """
        extracted = extract(files, desc=desc)
        proba, typicality = self.scores(extracted.features)
        for view in views[1:]:
            name = view.name if view is not None else "plain"
            other = extract(extracted.paths, desc=f"{desc}, {name}", view=view)
            if other.paths != extracted.paths:  # the same files decoded a moment ago
                path = next(iter(other.failures), extracted.paths[0])
                raise ImageDecodeError(path, other.failures.get(path, "changed while reading"))
            proba = proba + self.proba(other.features)
        return extracted, proba / len(views), typicality

    def split_metrics(self, predicted: SplitPrediction, split: str, tta: str) -> dict[str, Any]:
        """A single-label run's ``evaluate`` metrics of one predicted split: accuracy, loss,
        per-class P/R/F1, confusion matrix, the files skipped, and with a typicality score the
        share of these known images flagged unknown."""
        kept, proba = predicted.samples, predicted.proba
        y = np.array([s.label for s in kept], dtype=np.int64)
        metrics = classification_metrics(y, proba, self.classes)
        metrics["split"] = split
        metrics["tta"] = tta
        metrics["paths"] = [str(s.path) for s in kept]
        metrics["predicted"] = [int(i) for i in proba.argmax(1)] if len(kept) else []
        metrics["skipped"] = [{"path": str(p), "reason": r} for p, r in predicted.failures.items()]
        if predicted.typicality is not None and self.typicality is not None:
            threshold = self.typicality.threshold
            metrics["unknown_threshold"] = threshold
            metrics["unknown_share"] = float(np.mean(predicted.typicality < threshold))
        return metrics

    def unknown_metrics(
        self, extract: Extract, unknown: Paths, known: np.ndarray
    ) -> dict[str, Any]:
        """Open-set measures of the images of no class in ``unknown`` against the typicality of
        ``known`` images (:func:`~headstart.evaluation.openset.unknown_metrics`)."""
        from headstart.evaluation.openset import unknown_metrics

        assert self.typicality is not None
        images, skipped = collect_image_paths(as_list(unknown))
        if not images:
            raise DataError(
                f"No images found in {as_list(unknown)}; pass images of none of the classes."
            )
        extracted = extract(images, desc="scoring images of no class")
        typicality = self.typicality_of(extracted.features)
        assert typicality is not None
        found = unknown_metrics(known, typicality, self.typicality.threshold)
        found["skipped"] = [
            *({"path": str(s.path), "reason": s.reason} for s in skipped),
            *({"path": str(p), "reason": r} for p, r in extracted.failures.items()),
        ]
        return found


def in_given_order(paths: Paths) -> dict[Path, str | None]:
    """Every file among ``paths``, in the order given (a folder's files sorted by ``str``, in its
    place), each once where it first appears, mapped to why it was skipped (None: an image).

    One path at a time, as :func:`~headstart.data.collect_image_paths` returns the skipped files
    apart from the images: the results of ``predict_files`` line up with its input.
    """
    ordered: dict[Path, str | None] = {}
    for given in as_list(paths):
        images, skipped = collect_image_paths([given])
        found: dict[Path, str | None] = {p: None for p in images}
        found.update((s.path, s.reason) for s in skipped)
        for path in sorted(found, key=str):
            ordered.setdefault(path, found[path])
    return ordered


def as_list(paths: Paths) -> list[str | Path]:
    """One path is a list of one: a ``str`` is a sequence too, and iterating over it would read
    each character as a file name."""
    return [paths] if isinstance(paths, (str, Path)) else list(paths)
