"""End-to-end strategies start from the best head on cached features, counted as their first epoch.

``augment`` and ``finetune`` train a head (and for ``finetune`` the top of the backbone) on images.
A random head sends large, random gradients into the network in the first steps; the head that
:func:`headstart.heads.fit_head` finds on cached features in seconds is a far better start, and a
result in its own right. It becomes the loop's first history row and its best-so-far, so the run
keeps it unless an end-to-end epoch beats it on validation: these strategies never end worse on
validation than the features head they started from. It is fitted on the training images only
(no refit): the validation images must stay unseen to choose between it and later epochs. When
it wins and the run refits (:mod:`._refit`), :func:`refit_features_head` fits it once more, as
the ``features`` strategy would, on train + val.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart import distributed
from headstart.heads import HeadFit, HeadTrainingConfig, fit_head
from headstart.heads.training import standardized_from
from headstart.heads.weights import correct, weight_vector, weighted_cross_entropy
from headstart.strategies._common import Job, SplitFeatures
from headstart.strategies._end_to_end import loss_weights
from headstart.strategies._settings import STRATEGY_DEFAULTS

__all__ = ["HeadStart", "best_features_head", "features_head_refit", "refit_features_head"]


@dataclass
class HeadStart:
    """The features head, in trainable form, and its row for the loop's history."""

    fit: HeadFit
    trainable: nn.Module
    row: dict[str, Any]
    val_loss: float | None


def best_features_head(job: Job, split_xy: SplitFeatures, num_classes: int) -> HeadStart:
    """Fit the head on cached training features and score it on the cached validation ones."""
    train_x, train_y = split_xy["train"]
    fitted = _fit(job, split_xy, num_classes, refit=False)
    val_x, val_y = split_xy.get("val", (None, None))
    if val_y is not None and not len(val_y):
        val_x, val_y = None, None
    # Scored with the loop's loss, weights included: the loop keeps this head unless it beats it.
    weights = loss_weights(job, job.dataset)
    train_loss, train_acc = _score(fitted.head, train_x, train_y, weights)
    row: dict[str, Any] = {"epoch": 1, "phase": "head", "loss": train_loss, "accuracy": train_acc}
    val_loss: float | None = None
    if val_x is not None and val_y is not None:
        val_loss, val_acc = _score(fitted.head, val_x, val_y, weights)
        row.update(val_loss=val_loss, val_accuracy=val_acc)
    return HeadStart(
        fit=fitted,
        trainable=standardized_from(fitted.head, train_x),
        row=row,
        val_loss=val_loss,
    )


def refit_features_head(job: Job, split_xy: SplitFeatures, num_classes: int) -> HeadFit:
    """The head start's fit again, its setting chosen the same way, then refitted on train + val:
    the model when validation kept the head start and the run refits."""
    return _fit(job, split_xy, num_classes, refit=True)


def features_head_refit(
    job: Job, split_xy: SplitFeatures, num_classes: int
) -> Callable[[], HeadFit]:
    """:func:`refit_features_head`, deferred, for :class:`._refit.ChosenRun`'s ``head_refit``.

    Deferred because it is needed only when validation keeps the head start, which is known
    after the end-to-end run. Under torchrun it runs once, on rank 0, and every rank gets its
    result, as the head start itself was fitted.
    """
    return lambda: distributed.run_on_main(lambda: refit_features_head(job, split_xy, num_classes))


def _fit(job: Job, split_xy: SplitFeatures, num_classes: int, *, refit: bool) -> HeadFit:
    settings = job.settings
    train_x, train_y = split_xy["train"]
    val = split_xy.get("val")
    has_val = val is not None and len(val[1]) > 0
    val_x, val_y = val if has_val and val is not None else (None, None)
    defaults = STRATEGY_DEFAULTS["features"]
    return fit_head(
        settings.head,
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes,
        HeadTrainingConfig(
            epochs=defaults["epochs"],
            lr=defaults["lr"],
            weight_decay=defaults["weight_decay"],
            batch_size=defaults["batch_size"],
            patience=defaults["patience"],
            seed=settings.seed,
            label_smoothing=settings.label_smoothing,
        ),
        C=settings.C,
        class_weight=weight_vector(settings.class_weight, job.dataset.classes),
        refit=refit,
        hidden=settings.hidden,
        dropout=settings.dropout,
        quiet=job.quiet,
    )


def _score(
    head: nn.Module, x: np.ndarray, y: np.ndarray, weights: torch.Tensor | None
) -> tuple[float, float]:
    head.eval()
    with torch.no_grad():
        logits = head(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        target = torch.from_numpy(np.asarray(y, np.int64))
        loss = float(weighted_cross_entropy(logits, target, weights))
        accuracy = float(correct(logits, target) / max(1, len(target)))
    return loss, accuracy
