"""What prediction returns: one file's answer, and one split's probabilities.

Plain records, apart from the estimator that makes them, so that code which only reads results
(the CLI's printers, the report) needs no estimator to name their types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data import Sample

__all__ = ["Prediction", "SplitPrediction"]


@dataclass(frozen=True)
class SplitPrediction:
    """What ``predict_split`` says about one split of a labelled dataset.

    Attributes:
        samples: The split's samples that could be read, in the split's order.
        proba: Their class probabilities, a row per sample of ``samples`` (columns: ``classes_``).
        failures: The files that could not be read, and why.
        typicality: How typical of the training classes each sample is, in [0, 1] (None for a
            run without a typicality score).
    """

    samples: list[Sample]
    proba: np.ndarray
    failures: dict[Path, str]
    typicality: np.ndarray | None = None


@dataclass(frozen=True)
class Prediction:
    """What ``predict_files`` says about one file; ``error`` is set when it could not be read.

    ``typicality`` (in [0, 1]: the share of held-out known images less typical than this one)
    and ``unknown`` (typicality below the threshold) are None for a run without a typicality
    score, and then absent from :meth:`to_dict`. ``label`` stays the most probable class either
    way: rejecting is the caller's choice (``headstart predict --reject``).

    A multi-label run also sets ``labels`` (every label at or above its threshold, possibly
    none) and ``probabilities`` (every label's, in the run's label order); ``label`` is then the
    most probable label, whether or not it reaches its threshold.
    """

    path: Path
    label: str | None = None
    probability: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    typicality: float | None = None
    unknown: bool | None = None
    error: str | None = None
    labels: tuple[str, ...] | None = None
    probabilities: tuple[tuple[str, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        out: dict[str, Any] = {
            "path": str(self.path),
            "label": self.label,
            "probability": self.probability,
            "top_k": [{"label": name, "probability": p} for name, p in self.top_k],
        }
        if self.typicality is not None:
            out["typicality"] = self.typicality
            out["unknown"] = bool(self.unknown)
        if self.labels is not None and self.probabilities is not None:
            out["labels"] = list(self.labels)
            out["probabilities"] = dict(self.probabilities)
        return out
