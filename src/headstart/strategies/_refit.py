"""End-to-end strategies learn from every labelled image too: the chosen run again, on train + val.

The heads on cached features choose their setting on held-out images and then refit on train +
val (:mod:`headstart.heads.fitting`). An end-to-end strategy chooses its number of epochs on the
validation images the same way, and without a refit its model never learns from them: on small
data that is a third of the labels left out. So, as scikit-learn's ``refit`` keeps the chosen
hyper-parameters and fits once more on everything, the run is repeated from the same start (the
same head start or random initialisation, the same seed), on train + val, for the number of
end-to-end epochs validation chose, with the same schedule laid over those epochs (warm-up, then
cosine or one-cycle down to the end), every epoch kept and the last one's weights the model's.
When validation kept the head start itself (no end-to-end epoch beat it), the refit is that of
the features head (:func:`._head_start.refit_features_head`): cheap, on cached features.

What needs held-out images after training is taken from the chosen run, fitted on its
validation logits, as a features refit carries over its selection step's: the temperature
(single-label), and the multi-label temperatures and thresholds. A refitted model has no
held-out logits of its own, and it saw more images of the same kind, so the chosen run's are,
if anything, slightly over-cautious for it. Typicality is fitted on the final model's train +
val features with out-of-fold scores as for every run (:func:`headstart.fitted.fit_unknowns`).

The refit's epochs are checkpointed in ``checkpoint/refit`` after the first run's checkpoint is
marked finished, so a run killed during the refit resumes there (the first run is then not
repeated) and ends bit for bit as an uninterrupted one. Ctrl-C during the refit keeps the chosen
run's model, marked interrupted; ``--resume`` finishes the refit.

Class weights (``balanced``) stay those of the chosen run, counted on the training split: the
refit repeats that run on more images, it does not choose anew.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.heads import HeadFit
from headstart.heads.multilabel import heldout_selection
from headstart.heads.training import finalize_head
from headstart.strategies._common import Job, extract_splits, targets
from headstart.strategies._end_to_end import loss_weights, train_images
from headstart.strategies._loop import LoopOutcome, train_network
from headstart.strategies._network import Network
from headstart.strategies._settings import (
    REFIT_MAX_TRAIN,
    REFIT_MIN_VAL_SHARE,
    refit_by_default,
)

__all__ = [
    "REFIT_FOLDER",
    "ChosenRun",
    "Refit",
    "refit_run",
    "val_features_through",
    "wants_refit",
]

REFIT_FOLDER = "refit"

ValFeatures = Callable[[], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ChosenRun:
    """What an end-to-end strategy's first run started from, kept to repeat it on train + val.

    Each strategy builds one before its first run (the groups and the start change as it trains)
    and hands it to :func:`refit_run` after, so the refit repeats exactly the run that was made.

    Attributes:
        label: The strategy's name, for messages and the refit's progress lines.
        backbone, dataset, device: Those of the first run (the dataset's splits are the images).
        has_val: Whether the first run had validation images to choose its epochs on.
        groups: Parameter groups as they were before the first run (copies: an optimizer adds
            its defaults to the dicts it is given).
        initial: The network's state when the first run started (None: no refit possible).
        before: Epochs of the history before the first end-to-end epoch (the head start's).
        val_features: The chosen network's validation features and labels (called before the
            refit changes the network; for a trained backbone, extracted through it).
        head_refit: The features head refitted on train + val, for when validation kept the
            head start (None: no head start, as for ``scratch``).
    """

    label: str
    backbone: Backbone
    dataset: Dataset
    device: torch.device
    has_val: bool
    groups: list[dict[str, Any]]
    initial: dict[str, torch.Tensor] | None
    before: int
    val_features: ValFeatures
    head_refit: Callable[[], HeadFit] | None = None


@dataclass
class Refit:
    """What the refit did, for the strategy's result.

    Attributes:
        record: ``details["refit"]`` of the run's config: whether it happened and why.
        selection: What validation chose and which images the final fit used (None: no refit).
        heldout_logits, heldout_y: The chosen run's validation logits, for the temperature.
        head: The features head refitted on train + val, when validation kept the head start.
        interrupted: Ctrl-C during the refit: the network holds the chosen run's weights.
    """

    record: dict[str, Any]
    selection: dict[str, Any] | None = None
    heldout_logits: np.ndarray | None = None
    heldout_y: np.ndarray | None = None
    head: nn.Module | None = None
    interrupted: bool = False
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return bool(self.record.get("done"))


def wants_refit(job: Job, has_val: bool) -> bool:
    """Whether this run may refit: asked for (or by default) and with validation images."""
    return job.settings.refit and has_val


def _counts(job: Job) -> tuple[int, int]:
    splits = job.dataset.splits
    return len(splits.get("train", [])), len(splits.get("val", []))


def _why_not(job: Job, has_val: bool, interrupted: bool) -> str | None:
    n_train, n_val = _counts(job)
    if not job.settings.refit:
        if refit_by_default(n_train, n_val):
            return "turned off (refit=False, --refit none)"
        if n_train > REFIT_MAX_TRAIN:
            return (
                f"not by default past {REFIT_MAX_TRAIN} training images ({n_train}): a refit is "
                "another whole run (refit=True, --refit trainval, asks for one)"
            )
        return (
            f"not by default with {n_val} validation images against {n_train} training ones: "
            f"under {REFIT_MIN_VAL_SHARE:.0%} of them, a refit did not pay on the benchmark "
            "(refit=True, --refit trainval, asks for one)"
        )
    if not has_val:
        return "no validation images: the run trained on every labelled image already"
    if interrupted:
        return "training was interrupted before the refit; --resume finishes both"
    return None


def _why(job: Job) -> str:
    n_train, n_val = _counts(job)
    if refit_by_default(n_train, n_val):
        return (
            f"by default: {n_val} validation images, at least {REFIT_MIN_VAL_SHARE:.0%} of the "
            f"{n_train} training ones"
        )
    return "asked for (refit=True, --refit trainval)"


def refit_run(job: Job, network: Network, chosen: ChosenRun, outcome: LoopOutcome) -> Refit:
    """Refit the chosen run on train + val, or say why not.

    Args:
        network: Holds the chosen run's weights; on return, the refit's (or still the chosen
            run's, when there was no refit, the head start was kept, or Ctrl-C came).
        chosen: What the first run started from.
        outcome: The first run's.
    """
    label, backbone, dataset, device = chosen.label, chosen.backbone, chosen.dataset, chosen.device
    initial = chosen.initial
    if outcome.fingerprint in job.fingerprints_before_refit(backbone, dataset):
        return Refit(
            {
                "done": False,
                "reason": "the run was started by a headstart without end-to-end refits; it "
                "ends as it began, with the chosen run",
            }
        )
    reason = _why_not(job, chosen.has_val, outcome.interrupted)
    if reason is not None or initial is None:
        return Refit({"done": False, "reason": reason or "no starting point kept"})
    epochs = max(0, outcome.best_epoch - chosen.before)
    train_samples = dataset.splits["train"]
    val_samples = dataset.splits["val"]
    images = {"train": len(train_samples), "val": len(val_samples)}
    record: dict[str, Any] = {"done": True, "reason": _why(job), "epochs": epochs}
    if epochs == 0:
        if chosen.head_refit is None:
            return Refit({"done": False, "reason": "no epoch was chosen"})
        fit = chosen.head_refit()
        record.update(
            what="the head start was kept on validation, so the features head was refitted on "
            "train + val (cached features)",
            fit_images=fit.selection.get("fit_images", images),
        )
        return Refit(
            record,
            selection=fit.selection,
            heldout_logits=fit.heldout_logits,
            heldout_y=fit.heldout_y,
            head=fit.head,
        )
    val_x, val_y = chosen.val_features()
    chosen_head = finalize_head(copy.deepcopy(network.head)).eval()
    with torch.no_grad():
        logits = chosen_head(torch.from_numpy(np.ascontiguousarray(val_x, np.float32))).numpy()
    if dataset.multi_label:
        selection = heldout_selection(
            chosen_head, val_x, val_y, num_labels=len(dataset.classes), n_train=len(train_samples)
        )
    else:
        row = outcome.history[outcome.best_epoch - 1]
        selection = {
            "solver": "adamw",
            "val_loss": row.get("val_loss"),
            "val_accuracy": row.get("val_accuracy"),
        }
    selection.update(
        protocol="validation",
        protocol_text="the validation split, by its lowest loss",
        epochs=epochs,
        end_to_end=True,
        fit_images=images,
    )
    chosen_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    multi = len(dataset.classes) if dataset.multi_label else None
    samples = [*train_samples, *val_samples]
    paths = [s.path for s in samples]
    labels = targets(samples, multi)
    settings = job.settings
    warmup = settings.warmup_epochs if settings.warmup_epochs < epochs else epochs / 10
    again = replace(settings, epochs=epochs, warmup_epochs=warmup)
    network.load_state_dict(initial)
    job.say(
        f"{label}: refitting on train + val ({len(paths)} images) from the same start, for the "
        f"{epochs} epoch(s) validation chose"
    )
    folder = job.checkpoint_dir / REFIT_FOLDER if job.checkpoint_dir is not None else None
    fingerprint = hashlib.sha256(
        f"{job.fingerprint(backbone, dataset)}:refit:{epochs}".encode()
    ).hexdigest()
    try:
        run = train_network(
            network,
            [dict(g) for g in chosen.groups],
            train_images(job, backbone, paths, labels),
            None,
            again,
            device=device,
            label=f"{label} refit",
            fingerprint=fingerprint,
            checkpoint_dir=folder,
            resume=job.resume,
            quiet=job.quiet,
            stream=job.out,
            class_weight=loss_weights(job, dataset),
            keep_last=True,
        )
    except KeyboardInterrupt:
        network.to("cpu")
        network.load_state_dict(chosen_state)
        job.say(f"{label} refit: interrupted; keeping the chosen run's model")
        return Refit(
            {"done": False, "reason": "interrupted during the refit; --resume finishes it"},
            interrupted=True,
        )
    network.to("cpu")
    last = run.history[-1]
    record.update(
        fit_images=images,
        loss=last["loss"],
        accuracy=last["accuracy"],
        seconds=float(sum(run.epoch_seconds)),
        calibration="temperature and thresholds of the chosen run, fitted on its validation logits",
    )
    single = not dataset.multi_label  # multi-label carries its temperatures in the selection
    return Refit(
        record,
        selection=selection,
        heldout_logits=logits if single else None,
        heldout_y=np.asarray(val_y) if single else None,
        epoch_seconds=list(run.epoch_seconds),
    )


def val_features_through(
    job: Job, dataset: Dataset, backbone: Backbone
) -> tuple[np.ndarray, np.ndarray]:
    """Validation features and labels through ``backbone``: a trained one's, the chosen run's
    (before the refit changes it), for the temperature and thresholds fitted on them."""
    only_val = replace(dataset, splits={"val": dataset.splits["val"]})
    _, features, _ = extract_splits(
        replace(job, dataset=only_val, plain=None), backbone, desc="validation"
    )
    return features["val"]
