"""The multi-label head: one logistic regression per label, each with its threshold.

With several labels an image, each label is a yes/no question of its own, so the head is one
binary logistic regression per label on the same cached features (one sigmoid output each): what
scikit-learn's ``OneVsRestClassifier(LogisticRegression)`` fits, and what a multi-label network's
last layer with a binary cross-entropy loss computes.

Each label is fitted by :func:`headstart.heads.logistic.fit_linear`, exactly as the single-label
head is: standardised features, full-batch L-BFGS, the L2 strength walked on a grid and chosen by
the label's held-out mean log-loss, then refitted on train + val at that strength.
The held-out images are those of stratified cross-validation over train + val (as a single-label
run with a small validation split has) up to ``CV_MAX_IMAGES`` labelled images, and only past
that the validation split: here the held-out logits also choose each label's threshold, which
wants every labelled image. On the digit grids of ``benchmarks/multilabel.py`` (225 validation
images), choosing on the validation split alone gave a micro-F1 of 0.729 against the
reference's 0.734; cross-validation, 0.742 (seed 0), at the same mAP.

A yes/no label is its two-class softmax regression: softmax over
``(0, z)`` is ``sigmoid(z)``, and the optimum splits the weights evenly, ``w_yes = -w_no = w / 2``,
so the two-class penalty on ``C`` is the binary one on ``2 C``: the same minimiser, the same
choice of strength. Each label gets its own strength, as ``OneVsRestClassifier(
LogisticRegressionCV)`` gives it: a rare label wants a stronger penalty than a common one.

Two things are then chosen per label on the held-out logits of the selection step (from models
that never saw those images, as for single-label calibration):

- a temperature, kept only where those logits show the label is miscalibrated beyond noise
  (:func:`headstart.evaluation.calibration.calibrate_temperature`, the single-label test);
- a decision threshold on the calibrated probability, the one that maximises the label's F1 on
  the held-out images (0.5 without held-out images or without a held-out positive). At 0.5 a
  rare label is predicted too rarely: the probability of a label seen on 5% of images seldom
  reaches one half even where the label is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from headstart.evaluation.calibration import calibrate_temperature
from headstart.heads.logistic import CV_MAX_IMAGES, choose_protocol, fit_linear
from headstart.progress import Progress

__all__ = [
    "THRESHOLD_METRICS",
    "MultiLabelFit",
    "best_threshold",
    "describe_multilabel",
    "fold_label_temperatures",
    "heldout_selection",
    "fit_multilabel",
    "sigmoid",
]

ThresholdMetric = Literal["f1", "none"]
THRESHOLD_METRICS: tuple[str, ...] = ("f1", "none")
DEFAULT_THRESHOLD = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large logits."""
    z = np.asarray(logits, np.float64)
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def best_threshold(proba: np.ndarray, y: np.ndarray) -> float:
    """The threshold on ``proba`` that maximises F1 on these images (0.5 without a positive).

    Candidates lie midway between consecutive distinct probabilities, so a new image is judged by
    which of two held-out images it is closer to, not by where one of them happened to fall; on a
    tie in F1 the higher threshold (fewer positives predicted) wins.
    """
    proba, y = np.asarray(proba, np.float64), np.asarray(y, bool)
    positives = int(y.sum())
    if positives == 0 or len(y) == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-proba, kind="stable")
    p, hits = proba[order], np.cumsum(y[order])
    # Predicting the top k images positive: only k at the end of a run of equal probabilities.
    ends = np.flatnonzero(np.append(p[1:] < p[:-1], True))
    k = ends + 1
    f1 = 2.0 * hits[ends] / (k + positives)
    best = int(np.flatnonzero(f1 == f1.max())[0])
    end = ends[best]
    below = p[end + 1] if end + 1 < len(p) else 0.0
    return float((p[end] + below) / 2.0)


@dataclass
class MultiLabelFit:
    """The fitted multi-label head and what was chosen for each label.

    Attributes:
        head: ``nn.Linear(dim, labels)`` taking raw features (standardisation folded in): one
            logit per label.
        temperatures: Per label, the temperature its logit is divided by (1.0 where none is
            needed).
        thresholds: Per label, the calibrated probability from which it is predicted.
        selection: The record kept in the run: per label, the strength chosen and how, its
            held-out log-loss, the temperature test and the threshold.
        heldout_logits, heldout_y: Per label, the held-out logits (uncalibrated) and truths of
            the selection step (None where nothing was held out).
    """

    head: nn.Linear
    temperatures: np.ndarray
    thresholds: np.ndarray
    selection: dict[str, Any] = field(default_factory=dict)
    heldout_logits: list[np.ndarray | None] = field(default_factory=list)
    heldout_y: list[np.ndarray | None] = field(default_factory=list)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Calibrated logits (each label's divided by its temperature) of raw features."""
        with torch.no_grad():
            raw = self.head(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
        return raw.numpy().astype(np.float64) / self.temperatures

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Per label, the calibrated probability that it is on the image."""
        return sigmoid(self.logits(features))


def fold_label_temperatures(head: nn.Linear, temperatures: Sequence[float]) -> None:
    """Divide each label's row of ``head`` by its temperature, in place: its logits become the
    calibrated ones, so whatever runs it (predict, an export) needs no temperatures."""
    scale = 1.0 / torch.tensor(list(temperatures), dtype=torch.float32)
    with torch.no_grad():
        head.weight.mul_(scale[:, None])
        head.bias.mul_(scale)


def fit_multilabel(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    *,
    refit: bool = True,
    seed: int = 0,
    train_extra: Sequence[np.ndarray] = (),
    calibrate: str = "temperature",
    threshold: ThresholdMetric = "f1",
    quiet: bool = True,
) -> MultiLabelFit:
    """Fit one logistic regression per label, then choose each label's temperature and threshold.

    Args:
        train_x, val_x: Features (val may be None or empty).
        train_y, val_y: 0/1 matrices, one column per label.
        refit: Refit each label's chosen strength on train + val (False: train only).
        seed: Seeds each label's cross-validation folds.
        train_extra: Features of augmented views of the training images (same order).
        calibrate: ``"temperature"`` (kept per label where the held-out logits need it) or
            ``"none"``.
        threshold: ``"f1"``: each label's threshold maximises its held-out F1; ``"none"``: 0.5.
        quiet: No progress line.
    """
    ty = np.asarray(train_y).astype(np.int64)
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    vy = np.asarray(val_y).astype(np.int64) if has_val else None
    num_labels = ty.shape[1]
    dim = train_x.shape[1]
    weight = torch.zeros(num_labels, dim)
    bias = torch.zeros(num_labels)
    temperatures = np.ones(num_labels)
    thresholds = np.full(num_labels, DEFAULT_THRESHOLD)
    labels: list[dict[str, Any]] = []
    heldout_logits: list[np.ndarray | None] = []
    heldout_y: list[np.ndarray | None] = []
    with Progress(num_labels, "fitting one head a label", unit="labels", quiet=quiet) as bar:
        for j in range(num_labels):
            labelled = ty[:, j] if vy is None else np.concatenate([ty[:, j], vy[:, j]])
            fit = fit_linear(
                train_x,
                ty[:, j],
                val_x if has_val else None,
                None if vy is None else vy[:, j],
                2,
                refit=refit,
                seed=seed,
                train_extra=train_extra,
                # Cross-validation over train + val up to CV_MAX_IMAGES, a validation split of
                # any size: the held-out logits choose the threshold too (see the module doc).
                protocol=None
                if len(labelled) > CV_MAX_IMAGES
                else choose_protocol(labelled, None, 2),
            )
            with torch.no_grad():  # sigmoid(z) = softmax((0, z)): z = yes - no
                weight[j] = fit.head.weight[1] - fit.head.weight[0]
                bias[j] = fit.head.bias[1] - fit.head.bias[0]
            record = {
                key: value
                for key, value in fit.to_dict().items()
                if key in ("C", "final_C", "protocol", "folds", "val_loss", "fit_images")
            }
            z = y = None
            if fit.heldout_logits is not None and fit.heldout_y is not None:
                z = fit.heldout_logits[:, 1] - fit.heldout_logits[:, 0]
                y = np.asarray(fit.heldout_y, np.int64)
                temperatures[j], thresholds[j], said = _choose(z, y, calibrate, threshold)
                record.update(said)
            record["temperature"] = float(temperatures[j])
            record["threshold"] = float(thresholds[j])
            labels.append(record)
            heldout_logits.append(z)
            heldout_y.append(y)
            bar.update(1)
    head = nn.utils.skip_init(nn.Linear, dim, num_labels)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    selection = {
        "solver": "lbfgs",
        "kind": "multi-label",
        "thresholds": thresholds.tolist(),
        "temperatures": temperatures.tolist(),
        "threshold_metric": threshold,
        "calibration": calibrate,
        "labels": labels,
        "val_loss": _mean_loss(heldout_logits, heldout_y, temperatures),
        "fit_images": {"train": len(ty), **({"val": len(vy)} if refit and vy is not None else {})},
    }
    return MultiLabelFit(
        head=head.eval(),
        temperatures=temperatures,
        thresholds=thresholds,
        selection=selection,
        heldout_logits=heldout_logits,
        heldout_y=heldout_y,
    )


def _choose(
    z: np.ndarray, y: np.ndarray, calibrate: str, threshold: str
) -> tuple[float, float, dict[str, Any]]:
    """A label's temperature and threshold from held-out logits ``z`` and truths ``y``."""
    temperature, said = 1.0, {}
    if calibrate == "temperature":
        calibration = calibrate_temperature(np.stack([np.zeros_like(z), z], 1), y)
        temperature = calibration.temperature
        said["calibration"] = calibration.describe()
    cut = best_threshold(sigmoid(z / temperature), y) if threshold == "f1" else DEFAULT_THRESHOLD
    return temperature, cut, said


def heldout_selection(
    head: nn.Module,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    *,
    num_labels: int,
    n_train: int,
) -> dict[str, Any]:
    """The temperatures and thresholds of a head trained end to end, chosen on the final model's
    validation logits (its epoch was chosen there too; nothing else of it saw them), in the form
    :func:`fit_multilabel` records them. Without validation images: none, thresholds 0.5."""
    temperatures = np.ones(num_labels)
    thresholds = np.full(num_labels, DEFAULT_THRESHOLD)
    records: list[dict[str, Any]] = [{} for _ in range(num_labels)]
    logits_of: list[np.ndarray | None] = [None] * num_labels
    truths: list[np.ndarray | None] = [None] * num_labels
    if val_x is not None and val_y is not None and len(val_y):
        head.eval()
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(val_x, np.float32))
            logits = head(x).numpy().astype(np.float64)
        y = np.asarray(val_y, np.int64)
        for j in range(num_labels):
            temperatures[j], thresholds[j], said = _choose(
                logits[:, j], y[:, j], "temperature", "f1"
            )
            records[j] = {"protocol": "validation", **said}
            logits_of[j], truths[j] = logits[:, j], y[:, j]
    for j, record in enumerate(records):
        record.update(temperature=float(temperatures[j]), threshold=float(thresholds[j]))
    return {
        "solver": "adamw",
        "kind": "multi-label",
        "thresholds": thresholds.tolist(),
        "temperatures": temperatures.tolist(),
        "threshold_metric": "f1",
        "labels": records,
        "val_loss": _mean_loss(logits_of, truths, temperatures),
        "fit_images": {"train": n_train},
    }


def describe_multilabel(selection: dict[str, Any]) -> str:
    """One line: the strengths and thresholds chosen a label, and the held-out loss."""
    labels = selection.get("labels") or []
    strengths = [r["C"] for r in labels if r.get("C") is not None]
    thresholds = [r["threshold"] for r in labels if r.get("threshold") is not None]
    protocols = sorted({str(r.get("protocol")) for r in labels})
    text = (
        f"a sigmoid a label ({len(labels)}), trained end to end with binary cross-entropy"
        if selection.get("solver") == "adamw"
        else f"one logistic regression a label ({len(labels)})"
    )
    if strengths:
        text += f", C from {min(strengths):.3g} to {max(strengths):.3g}"
    if thresholds:
        text += f", thresholds from {min(thresholds):.2f} to {max(thresholds):.2f}"
    text += f", chosen by {' / '.join(protocols)}"
    loss = selection.get("val_loss")
    if loss is not None:
        text += f" (held-out log-loss {loss:.4f}, mean over labels)"
    return text


def _mean_loss(
    logits: Sequence[np.ndarray | None], y: Sequence[np.ndarray | None], temperatures: np.ndarray
) -> float | None:
    """The held-out binary log-loss, mean over labels (of those with held-out images)."""
    losses = []
    for z, truth, t in zip(logits, y, temperatures, strict=True):
        if z is None or truth is None or not len(truth):
            continue
        p = np.clip(sigmoid(z / t), 1e-12, 1 - 1e-12)
        losses.append(float(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean()))
    return float(np.mean(losses)) if losses else None
