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
    """

    samples: list[Sample]
    proba: np.ndarray
    failures: dict[Path, str]


@dataclass(frozen=True)
class Prediction:
    """What ``predict_files`` says about one file; ``error`` is set when it could not be read."""

    path: Path
    label: str | None = None
    probability: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        return {
            "path": str(self.path),
            "label": self.label,
            "probability": self.probability,
            "top_k": [{"label": name, "probability": p} for name, p in self.top_k],
        }
