"""One call that fits a head on cached features the way its kind is best fitted, then refits it.

- ``linear``: a regularised logistic regression whose L2 strength is chosen on held-out data
  (:mod:`headstart.heads.logistic`).
- ``mlp``: AdamW with early stopping on the validation split, which chooses the number of epochs;
  the same number of epochs is then run again on train + val.

Both end with a model that learnt from every labelled image the run may use (``refit``), and both
keep the held-out logits of the selection step, the only logits calibration may use: no model
that produced them saw those images. Test images never reach this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.heads.logistic import fit_linear
from headstart.heads.multilabel import describe_multilabel, fit_multilabel
from headstart.heads.training import HeadTrainingConfig, train_head
from headstart.heads.weights import ClassWeight, class_weights

__all__ = ["HeadFit", "describe_selection", "fit_head"]


def describe_selection(selection: dict[str, Any]) -> str:
    """One line: what was chosen, on what, its held-out figures, and what the final fit used."""
    fit = selection.get("fit_images") or {}
    used = " + ".join(f"{n} {split}" for split, n in fit.items())
    if selection.get("kind") == "multi-label":
        return describe_multilabel(selection) + f"; final fit on {used} images"
    if selection.get("solver") == "lbfgs":
        chosen = f"linear head, C={selection.get('C'):.3g}"
        final = selection.get("final_C")
        if final is not None and final != selection.get("C"):
            chosen += f" (refitted at C={final:.3g}: the same penalty per image)"
    else:
        chosen = f"{selection.get('epochs')} epochs"
    weights = selection.get("class_weight")
    if weights:
        chosen += " (class weights " + ", ".join(f"{w:.3g}" for w in weights) + ")"
    where = selection.get("protocol_text", selection.get("protocol"))
    loss, accuracy = selection.get("val_loss"), selection.get("val_accuracy")
    figures = (
        f" (held-out accuracy {accuracy:.4f}, log-loss {loss:.4f}, before the final fit)"
        if loss is not None and accuracy is not None
        else ""
    )
    return f"{chosen} chosen on {where}{figures}; final fit on {used} images"


@dataclass
class HeadFit:
    """A head (taking raw features) and how it was chosen and fitted.

    Attributes:
        head: The final head.
        history: Epochs of the selection fit (MLP only; the linear head has a path instead).
        best_epoch, monitor: The epoch kept by the selection fit and what chose it.
        selection: What was chosen, by which protocol, its held-out figures, and which images
            the final fit used (``fit_images``); kept in the run's config.
        heldout_logits, heldout_y: Held-out logits of the selection step (None without any).
    """

    head: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    monitor: str = "val_loss"
    interrupted: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    heldout_logits: np.ndarray | None = None
    heldout_y: np.ndarray | None = None


def fit_head(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    config: HeadTrainingConfig | None = None,
    *,
    C: float | None = None,
    refit: bool = True,
    hidden: int = 512,
    dropout: float = 0.2,
    quiet: bool = False,
    train_views: Sequence[np.ndarray] = (),
    class_weight: ClassWeight = None,
) -> HeadFit:
    """Fit a ``kind`` head: choose its setting on held-out data, then refit on train + val.

    Args:
        C: Linear head only: a fixed inverse L2 strength (None: chosen).
        refit: Refit on train + val after the choice (False: the final fit sees train only).
        train_views: Features of augmented views of the training images (same order).
        train_y: Class indices, or a 0/1 matrix with a column per label for multi-label data:
            then one logistic regression a label (:mod:`headstart.heads.multilabel`), whose
            temperatures and thresholds are in ``selection``;
            ``kind`` must be "linear" and ``C`` and ``class_weight`` are not used.
        class_weight: Weight each image's loss by its class: ``"balanced"`` or one weight per
            class index (:mod:`headstart.heads.weights`); None: unweighted.
    """
    config = config or HeadTrainingConfig()
    if np.ndim(train_y) == 2:  # a 0/1 matrix: several labels an image
        return _fit_multilabel(train_x, train_y, val_x, val_y, config, refit, quiet, train_views)
    if kind == "linear":
        lf = fit_linear(
            train_x,
            train_y,
            val_x,
            val_y,
            num_classes,
            C=C,
            refit=refit,
            seed=config.seed,
            train_extra=train_views,
            class_weight=class_weight,
            quiet=quiet,
        )
        return HeadFit(
            head=lf.head,
            monitor="val_loss" if lf.protocol.kind != "none" else "loss",
            selection=lf.to_dict(),
            heldout_logits=lf.heldout_logits,
            heldout_y=lf.heldout_y,
        )
    return _fit_mlp(
        kind,
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes,
        config,
        refit=refit,
        hidden=hidden,
        dropout=dropout,
        quiet=quiet,
        train_views=train_views,
        class_weight=class_weight,
    )


def _fit_mlp(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    config: HeadTrainingConfig,
    *,
    refit: bool,
    hidden: int,
    dropout: float,
    quiet: bool,
    train_views: Sequence[np.ndarray],
    class_weight: ClassWeight = None,
) -> HeadFit:
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    trained = train_head(
        kind,
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes,
        config,
        hidden=hidden,
        dropout=dropout,
        quiet=quiet,
        train_views=train_views,
        class_weight=class_weight,
    )
    selection: dict[str, Any] = {
        "solver": "adamw",
        "protocol": "validation" if has_val else "none",
        "protocol_text": "the validation split" if has_val else "nothing (no validation split)",
        "epochs": trained.best_epoch,
        "weight_decay": config.weight_decay,
        "fit_images": {"train": len(train_y)},
        "class_weight": _recorded(class_weight, train_y, num_classes),
    }
    result = HeadFit(
        head=trained.head,
        history=trained.history,
        best_epoch=trained.best_epoch,
        monitor=trained.monitor,
        interrupted=trained.interrupted,
        epoch_seconds=trained.epoch_seconds,
        selection=selection,
    )
    if not has_val or val_x is None or val_y is None:
        return result
    with torch.no_grad():
        logits = trained.head.eval()(torch.from_numpy(np.ascontiguousarray(val_x, np.float32)))
    result.heldout_logits, result.heldout_y = logits.numpy(), np.asarray(val_y, np.int64)
    best = trained.history[trained.best_epoch - 1] if trained.best_epoch else {}
    selection["val_loss"] = best.get("val_loss")
    selection["val_accuracy"] = best.get("val_accuracy")
    if not refit or trained.interrupted or trained.best_epoch < 1:
        return result
    # The epochs the validation split chose, run again on every labelled image.
    all_x = np.concatenate([train_x, val_x]).astype(np.float32, copy=False)
    all_y = np.concatenate([train_y, val_y])
    views = [np.concatenate([v, val_x]).astype(np.float32, copy=False) for v in train_views]
    again = train_head(
        kind,
        all_x,
        all_y,
        None,
        None,
        num_classes,
        replace(config, epochs=trained.best_epoch, patience=trained.best_epoch),
        hidden=hidden,
        dropout=dropout,
        quiet=quiet,
        train_views=views,
        keep_last=True,
        class_weight=class_weight,
    )
    result.head = again.head
    selection["fit_images"] = {"train": len(train_y), "val": len(val_y)}
    return result


def _fit_multilabel(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    config: HeadTrainingConfig,
    refit: bool,
    quiet: bool,
    train_views: Sequence[np.ndarray],
) -> HeadFit:
    fit = fit_multilabel(
        train_x,
        train_y,
        val_x,
        val_y,
        refit=refit,
        seed=config.seed,
        train_extra=train_views,
        quiet=quiet,
    )
    # The temperatures are folded in by the fitted state, as the single-label one is
    # (:func:`headstart.label_sets.calibrate_labels`): calibration can be turned off.
    return HeadFit(head=fit.head, monitor="val_loss", selection=fit.selection)


def _recorded(class_weight: ClassWeight, y: np.ndarray, num_classes: int) -> list[float] | None:
    """The weight of each class as the selection fit used them (for the run's config)."""
    weights = class_weights(class_weight, y, num_classes)
    return None if weights is None else weights.tolist()
