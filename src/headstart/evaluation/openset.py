"""How well typicality tells known images from images of none of the classes.

The measures of the open-set literature (Hendrycks & Gimpel 2017; Liu et al. 2020): the AUROC of
typicality between known and unknown images (0.5: chance, 1: every unknown image less typical
than every known one), and the false-accept rate, the share of unknown images that pass as known,
at two operating points: the run's own threshold, and the one that accepts 95% of the known
images given (the literature's "FPR at 95% TPR", comparable across scores and runs).

In NumPy, as :mod:`headstart.evaluation.metrics` is, so that evaluating does not import
scikit-learn (a test pins the AUROC to ``sklearn.metrics.roc_auc_score``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["auroc", "format_unknown_metrics", "unknown_metrics"]

ACCEPTED_KNOWN = 0.95
"""The share of known images accepted at the literature's comparable operating point."""


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """The probability that a known image is more typical than an unknown one (ties count a
    half): the Mann-Whitney statistic, the area under the ROC curve. NaN without both kinds."""
    known = np.asarray(known, np.float64)
    unknown = np.asarray(unknown, np.float64)
    if not len(known) or not len(unknown):
        return math.nan
    values, inverse, counts = np.unique(
        np.concatenate([known, unknown]), return_inverse=True, return_counts=True
    )
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based ranks, ties sharing their mean
    above = ranks[: len(known)].sum() - len(known) * (len(known) + 1) / 2.0
    return float(above / (len(known) * len(unknown)))


def unknown_metrics(known: np.ndarray, unknown: np.ndarray, threshold: float) -> dict[str, Any]:
    """Open-set measures of typicality: known test images against images of no class.

    Args:
        known: Typicality of the known (labelled) images evaluated.
        unknown: Typicality of the images of none of the classes.
        threshold: The run's threshold: typicality below it is flagged unknown.

    Returns:
        ``auroc``; ``false_accept`` (share of unknown images at or above ``threshold``) and
        ``known_accepted`` there; ``false_accept_at_95`` at the threshold that accepts 95% of
        the known images; and the counts.
    """
    known = np.sort(np.asarray(known, np.float64))
    unknown = np.asarray(unknown, np.float64)
    out: dict[str, Any] = {
        "n_known": int(len(known)),
        "n_unknown": int(len(unknown)),
        "threshold": float(threshold),
        "auroc": auroc(known, unknown),
        "false_accept": float(np.mean(unknown >= threshold)) if len(unknown) else math.nan,
        "known_accepted": float(np.mean(known >= threshold)) if len(known) else math.nan,
        "false_accept_at_95": math.nan,
    }
    if len(known) and len(unknown):
        # The largest cut that still accepts at least 95% of the known images.
        cut = known[int(math.floor((1.0 - ACCEPTED_KNOWN) * len(known)))]
        out["false_accept_at_95"] = float(np.mean(unknown >= cut))
    return out


def format_unknown_metrics(metrics: dict[str, Any]) -> list[str]:
    """Plain-text lines about unknowns in a metrics dict (none when it has no typicality)."""
    lines = []
    share = metrics.get("unknown_share")
    if share is not None:
        lines.append(
            f"flagged unknown {share:.1%} of these known images "
            f"(typicality below {metrics.get('unknown_threshold', 0.05):g})"
        )
    found = metrics.get("unknowns")
    if found:
        lines.append(
            f"images of no class: AUROC {found['auroc']:.3f}   false-accept "
            f"{found['false_accept']:.1%} at the threshold, {found['false_accept_at_95']:.1%} "
            f"at 95% of known images accepted   n {found['n_unknown']}"
        )
    return lines
