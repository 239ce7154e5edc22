"""``finetune``: train the head on frozen features first, then the top stages of the backbone.

Phase 1 is the ``features`` strategy (cheap: cached features). Starting phase 2 from a trained
head matters: a random head sends large, random gradients into pretrained layers in the first
steps and destroys what they knew. Phase 2 trains the head and the top ``unfreeze`` stages end to
end on augmented images, at a learning rate that decays by ``layer_decay`` per stage downwards
(timm's layer decay), so the generic low-level filters move least.

BatchNorm (``bn``): with ``frozen``, the default, BatchNorm layers keep their running statistics
(inference mode) while their affine weights train. With small batches, batch statistics are
noisy, and the pretrained statistics match the pretrained weights; changing them shifts every
later layer's input at once. ``train`` uses batch statistics in the trainable stages; it warns
when the batch is smaller than 16 images.

The weights kept are those with the lowest validation loss over both phases: if fine-tuning
never beats the head alone, the result is the head on the untouched backbone. Then, as for
``augment``, the chosen run is repeated on train + val for the epochs validation chose
(:mod:`._refit`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import replace
from typing import Any

from headstart import distributed
from headstart.data import Dataset
from headstart.errors import HeadstartWarning
from headstart.heads.multilabel import heldout_selection
from headstart.heads.training import finalize_head
from headstart.strategies._common import (
    Fitted,
    Job,
    extract_splits,
    trained_backbone,
)
from headstart.strategies._end_to_end import run_network, train_images, validation_images
from headstart.strategies._head_start import best_features_head, features_head_refit
from headstart.strategies._loop import (
    LoopStart,
    clone_state,
)
from headstart.strategies._network import (
    Network,
    backbone_stages,
    has_batchnorm,
    param_groups,
    unfrozen_stages,
)
from headstart.strategies._refit import ChosenRun, refit_run, val_features_through, wants_refit

__all__ = ["fit", "only_val", "warn_small_batchnorm_batches"]

_MIN_BN_BATCH = 16


def warn_small_batchnorm_batches(job: Job) -> None:
    """Warn when BatchNorm is to learn from batches too small for meaningful statistics."""
    settings = job.settings
    if (
        settings.bn == "train"
        and settings.batch_size < _MIN_BN_BATCH
        and has_batchnorm(job.backbone.module)
    ):
        n = settings.batch_size
        warnings.warn(
            f"--bn train with batch size {n}: BatchNorm statistics of {n} images mean little, "
            f"and replace the pretrained ones; use a batch size of at least {_MIN_BN_BATCH} or "
            "--bn frozen.",
            HeadstartWarning,
            stacklevel=3,
        )


def fit(job: Job) -> Fitted:
    """Head on cached features, then the top stages end to end with discriminative rates."""
    settings = job.settings
    device = job.torch_device
    backbone = job.backbone
    warn_small_batchnorm_batches(job)
    dataset, split_xy, extraction = extract_splits(job, backbone)
    train_x, train_y = split_xy["train"]
    val = split_xy.get("val")
    has_val = val is not None and len(val[1]) > 0
    # Under torchrun the head phase runs once, on rank 0; DDP then starts from its result.
    start_head = distributed.run_on_main(
        lambda: best_features_head(job, split_xy, len(dataset.classes))
    )
    phase1 = start_head.fit
    head_history: list[dict[str, Any]] = [{**row, "phase": "head"} for row in phase1.history] or [
        start_head.row
    ]
    if phase1.interrupted:  # Ctrl-C during the head phase: stop there, with the best head
        return Fitted(
            backbone=backbone,
            head=phase1.head,
            history=head_history,
            best_epoch=phase1.best_epoch or 1,
            monitor=phase1.monitor,
            dataset=dataset,
            features=split_xy,
            extraction=extraction,
            interrupted=True,
        )
    stages = backbone_stages(backbone.module)
    chosen = unfrozen_stages(stages, settings.unfreeze)
    trainable = [name for stage in chosen for name in stage]
    network = Network(backbone.module, start_head.trainable, trainable=trainable, bn=settings.bn)
    groups = param_groups(
        network, chosen, weight_decay=settings.weight_decay, layer_decay=settings.layer_decay
    )
    train = train_images(job, backbone, [s.path for s in dataset.splits["train"]], train_y)
    validate = validation_images(job, backbone, dataset, device) if has_val else None
    start = LoopStart(history=head_history)
    if has_val and start_head.val_loss is not None:
        # The head alone is a result too: fine-tuning must beat it to replace it.
        start.best_loss = start_head.val_loss
        start.best_epoch = phase1.best_epoch or 1
        start.best_state = clone_state(network)
    chosen_run = ChosenRun(
        label="finetune",
        backbone=backbone,
        dataset=dataset,
        device=device,
        has_val=has_val,
        groups=[dict(g) for g in groups],
        initial=start.best_state if wants_refit(job, has_val) else None,
        before=len(head_history),
        val_features=lambda: val_features_through(job, dataset, trained_backbone(backbone)),
        head_refit=features_head_refit(job, split_xy, len(dataset.classes)),
    )
    outcome, cost = run_network(
        job,
        network,
        groups,
        train,
        validate,
        label="finetune",
        backbone=backbone,
        dataset=dataset,
        device=device,
        backward=True,
        val_images=len(dataset.splits.get("val", [])),
        uncached_images=0,
        start=start,
    )
    changed = outcome.best_epoch > len(head_history)
    refit = refit_run(job, network, chosen_run, outcome)
    final = trained_backbone(backbone) if changed else backbone
    for param in final.module.parameters():
        param.requires_grad_(False)
    head = refit.head if refit.head is not None else finalize_head(network.head).eval()
    features = {} if changed else split_xy
    details: dict[str, Any] = {
        "stages": len(stages),
        "unfrozen_stages": len(chosen),
        "trainable_parameters": sum(p.numel() for g in groups for p in g["params"]),
        "backbone_changed": changed,
        "head_start": phase1.selection,
        "refit": refit.record,
    }
    if refit.selection is not None:
        details["selection"] = refit.selection
    elif dataset.multi_label:  # the final model's thresholds, on its validation features
        if changed and has_val:
            _, features, _ = extract_splits(
                replace(job, dataset=only_val(dataset), plain=None), final, desc="validation"
            )
        val_x, val_y = features.get("val", (None, None))
        details["selection"] = heldout_selection(
            head, val_x, val_y, num_labels=len(dataset.classes), n_train=len(train_y)
        )
    return Fitted(
        backbone=final,
        head=head,
        history=outcome.history,
        best_epoch=outcome.best_epoch,
        monitor=outcome.monitor,
        dataset=dataset,
        features=features,
        extraction=extraction,
        interrupted=outcome.interrupted or refit.interrupted,
        cost=cost,
        epoch_seconds=outcome.epoch_seconds,
        details=details,
        heldout_logits=refit.heldout_logits,
        heldout_y=refit.heldout_y,
    )


def only_val(dataset: Dataset) -> Dataset:
    """The dataset with its validation split alone (to extract it through a trained backbone)."""
    return dataclasses.replace(dataset, splits={"val": dataset.splits["val"]})
