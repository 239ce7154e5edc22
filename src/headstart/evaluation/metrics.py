"""Classification metrics: the numbers scikit-learn gives, from one confusion matrix in NumPy.

Every run computes them, and importing scikit-learn (with SciPy) costs about a second per
process, more than a warm run's whole head fit on cached features. The definitions are
scikit-learn's (``precision_recall_fscore_support`` with ``zero_division=0``, ``log_loss`` with
the given labels, ``balanced_accuracy_score``), and a test pins the values to scikit-learn's.

With imbalanced classes, accuracy is mostly the large classes' recall: a model that never
predicts a class of 5% of the images loses 5 points at most. Balanced accuracy (the mean of the
per-class recalls) and macro-F1 (the mean of the per-class F1) count every class alike, so they
show it; they are the numbers ``class_weight="balanced"`` is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["classification_metrics", "format_metrics", "macro_f1"]


def _per_class(
    y_true: np.ndarray, y_pred: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Confusion matrix, precision, recall, F1 and support of each of ``k`` classes."""
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    hits = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros(k), where=support > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(k), where=both > 0)
    return cm, precision, recall, f1, support


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float | None:
    """The mean F1 over the classes that occur in ``y_true`` (None without images)."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    if not len(y_true):
        return None
    *_, f1, support = _per_class(y_true, y_pred, num_classes)
    return float(f1[support > 0].mean())


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        y_true: true class indices.
        proba: predicted probabilities, one row per image, one column per class.
        classes: class names in index order.

    Returns:
        A JSON-able dict: ``accuracy``, ``loss``, ``n``, ``classes``, ``confusion_matrix`` (rows are
        true classes, columns predicted), ``per_class`` (name -> precision, recall, f1, support),
        ``macro_f1`` and ``balanced_accuracy`` (the mean F1 and recall over the classes that
        occur), ``log_loss`` (the same as ``loss``) and ``ece`` (expected calibration
        error over 15 confidence bins).
    """
    from headstart.evaluation.calibration import expected_calibration_error

    labels = list(range(len(classes)))
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = proba.argmax(1) if len(proba) else np.zeros(0, dtype=np.int64)
    n = int(len(y_true))
    if n == 0:
        return {
            "accuracy": None,
            "loss": None,
            "n": 0,
            "classes": list(classes),
            "confusion_matrix": [[0] * len(labels) for _ in labels],
            "per_class": {},
            "macro_f1": None,
            "balanced_accuracy": None,
            "log_loss": None,
            "ece": None,
        }
    k = len(labels)
    cm, precision, recall, f1, support = _per_class(y_true, y_pred, k)
    clipped = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    clipped /= clipped.sum(1, keepdims=True)
    loss = float(-np.log(clipped[np.arange(n), y_true]).mean())
    present = support > 0
    return {
        "accuracy": float((y_pred == y_true).mean()),
        "loss": loss,
        "log_loss": loss,
        "ece": expected_calibration_error(proba, y_true),
        "n": n,
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "macro_f1": float(f1[present].mean()) if present.any() else None,
        "balanced_accuracy": float(recall[present].mean()) if present.any() else None,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table a person can read in a terminal."""
    if metrics.get("multi_label"):
        from headstart.evaluation.multilabel import format_multilabel_metrics

        return format_multilabel_metrics(metrics)
    if not metrics.get("n"):
        return "no images evaluated"
    classes = metrics["classes"]
    width = max(8, *(len(c) for c in classes))
    from headstart.evaluation.openset import format_unknown_metrics

    lines = [
        f"accuracy {metrics['accuracy']:.4f}   loss {metrics['loss']:.4f}   "
        + (f"ece {metrics['ece']:.4f}   " if metrics.get("ece") is not None else "")
        + f"n {metrics['n']}",
        *_balanced_line(metrics),
        *format_unknown_metrics(metrics),
        "",
        f"{'class':<{width}}  precision  recall     f1  support",
    ]
    for name in classes:
        row = metrics["per_class"][name]
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}"
            f"  {row['support']:7d}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    cm = metrics["confusion_matrix"]
    cell = max(5, *(len(str(v)) for row in cm for v in row))
    lines.append(" " * (width + 2) + " ".join(f"{i:>{cell}}" for i in range(len(classes))))
    for i, (name, row) in enumerate(zip(classes, cm, strict=True)):
        lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row) + f"   [{i}]")
    return "\n".join(lines)


def _balanced_line(metrics: dict[str, Any]) -> list[str]:
    """Balanced accuracy and macro-F1, where known (metrics of older runs may lack them)."""
    balanced, f1 = metrics.get("balanced_accuracy"), metrics.get("macro_f1")
    if balanced is None or f1 is None:
        return []
    return [f"balanced accuracy {balanced:.4f}   macro-F1 {f1:.4f}"]
