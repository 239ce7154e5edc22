"""Metrics of a multi-label classifier: per label, and over labels and images.

Accuracy and a confusion matrix need one class an image. With several labels an image each label
is scored as a yes/no question (precision, recall, F1 at its threshold, and average precision over
every threshold), and the labels are summarised as the usual multi-label numbers: mAP (mean over
labels of average precision: ranking quality, independent of thresholds), micro-F1 (every
image-label decision pooled), macro-F1 (mean of the labels' F1: rare labels count as much as
common ones), subset accuracy (the whole label set right) and Hamming loss (share of image-label
decisions wrong). The definitions are scikit-learn's (``average_precision_score``,
``f1_score(average=...)``, ``accuracy_score`` and ``hamming_loss`` on indicator matrices, with
``zero_division=0``), written in NumPy because importing scikit-learn costs a second a process;
a test pins them to scikit-learn's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["average_precision", "format_multilabel_metrics", "multilabel_metrics"]


def average_precision(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the precision-recall curve as a step sum, ``sum (R_n - R_{n-1}) P_n`` over the
    distinct scores (scikit-learn's ``average_precision_score``); None without a positive."""
    y = np.asarray(y, bool)
    positives = int(y.sum())
    if positives == 0:
        return None
    order = np.argsort(-np.asarray(score, np.float64), kind="stable")
    s, hits = np.asarray(score, np.float64)[order], np.cumsum(y[order])
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last image of each distinct score
    tp = hits[ends]
    precision = tp / (ends + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)


def multilabel_metrics(
    y_true: np.ndarray, proba: np.ndarray, thresholds: Sequence[float], classes: Sequence[str]
) -> dict[str, Any]:
    """Per-label and summary metrics of probabilities against 0/1 truths, at ``thresholds``.

    Returns:
        A JSON-able dict: ``multi_label`` (True), ``n``, ``classes``, ``mAP``, ``f1_micro``,
        ``f1_macro``, ``subset_accuracy``, ``hamming_loss``, ``loss`` (binary log-loss, mean over
        images and labels), and ``per_label`` (name -> precision, recall, f1, ap, threshold,
        support). ``mAP`` and ``f1_macro`` average over the labels with a positive image here.
    """
    y = np.asarray(y_true, bool).reshape(len(y_true), len(classes))
    p = np.asarray(proba, np.float64).reshape(y.shape)
    cut = np.asarray(thresholds, np.float64)
    if not len(y):
        return {"multi_label": True, "n": 0, "classes": list(classes)}
    predicted = p >= cut
    tp = (predicted & y).sum(0).astype(np.float64)
    fp = (predicted & ~y).sum(0).astype(np.float64)
    fn = (~predicted & y).sum(0).astype(np.float64)
    support = y.sum(0)
    precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(tp.shape), where=(tp + fn) > 0)
    f1 = _f1(tp, fp, fn)
    ap = [average_precision(y[:, j], p[:, j]) for j in range(len(classes))]
    present = support > 0
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    loss = -(y * np.log(clipped) + ~y * np.log(1 - clipped)).mean()
    known_ap = [a for a in ap if a is not None]
    return {
        "multi_label": True,
        "n": int(len(y)),
        "classes": list(classes),
        "mAP": float(np.mean(known_ap)) if known_ap else None,
        "f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
        "f1_macro": float(f1[present].mean()) if present.any() else None,
        "subset_accuracy": float((predicted == y).all(1).mean()),
        "hamming_loss": float((predicted != y).mean()),
        "loss": float(loss),
        "per_label": {
            name: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "ap": ap[j],
                "threshold": float(cut[j]),
                "support": int(support[j]),
            }
            for j, name in enumerate(classes)
        },
    }


def format_multilabel_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table a person can read in a terminal."""
    if not metrics.get("n"):
        return "no images evaluated"
    classes = metrics["classes"]
    width = max(8, *(len(c) for c in classes))

    def number(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:.3f}"

    lines = [
        f"mAP {number(metrics['mAP'])}   micro-F1 {metrics['f1_micro']:.4f}   macro-F1 "
        f"{number(metrics['f1_macro'])}   n {metrics['n']}",
        f"subset accuracy {metrics['subset_accuracy']:.4f}   Hamming loss "
        f"{metrics['hamming_loss']:.4f}   loss {metrics['loss']:.4f}",
        "",
        f"{'label':<{width}}  precision  recall     f1     AP  threshold  support",
    ]
    for name in classes:
        row = metrics["per_label"][name]
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {number(row['ap'])}  {row['threshold']:9.3f}  {row['support']:7d}"
        )
    return "\n".join(lines)
