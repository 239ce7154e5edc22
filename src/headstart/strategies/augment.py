"""``augment``: the frozen backbone end to end, on freshly augmented images every epoch.

The head trains on features of augmented training images computed on the fly, through a backbone
that is frozen in the full sense: ``requires_grad=False`` *and* inference mode for every layer,
BatchNorm and Dropout included, after every ``model.train()`` (:class:`._network.Network`). Its
weights and BatchNorm statistics end bit for bit as they started, and with augmentation off the
head learns exactly what it would learn on cached features. Because the backbone does not change,
validation uses cached plain features, and each epoch costs one forward pass over the training
images only. The head starts from the best head on cached features, counted as the first epoch
(:mod:`._head_start`). Once validation has chosen the epoch, the run is repeated on train + val
for that many epochs (:mod:`._refit`).
"""

from __future__ import annotations

from headstart import distributed
from headstart.heads.multilabel import heldout_selection
from headstart.heads.training import finalize_head
from headstart.strategies._common import Fitted, Job, extract_splits
from headstart.strategies._end_to_end import loss_weights, run_network, train_images
from headstart.strategies._head_start import best_features_head, features_head_refit
from headstart.strategies._loop import LoopStart, clone_state, features_validator
from headstart.strategies._network import Network, param_groups, select_layer
from headstart.strategies._refit import ChosenRun, refit_run, wants_refit

__all__ = ["fit"]


def fit(job: Job) -> Fitted:
    """Train a head on the fly through the frozen backbone, with augmentation."""
    settings = job.settings
    device = job.torch_device
    backbone = job.backbone
    if settings.layer is not None:
        backbone = select_layer(backbone, settings.layer)
    dataset, split_xy, extraction = extract_splits(job, backbone)
    train_x, train_y = split_xy["train"]
    # Under torchrun the head is fitted once, on rank 0; every rank starts from its result.
    start_head = distributed.run_on_main(
        lambda: best_features_head(job, split_xy, len(dataset.classes))
    )
    network = Network(backbone.module, start_head.trainable, trainable=(), bn="frozen")
    groups = param_groups(network, [], weight_decay=settings.weight_decay, layer_decay=1.0)
    train = train_images(job, backbone, [s.path for s in dataset.splits["train"]], train_y)
    val = split_xy.get("val")
    weights = loss_weights(job, dataset)
    has_val = val is not None and len(val[1]) > 0
    validate = features_validator(*val, device, weights) if val is not None and has_val else None
    start = LoopStart(history=[start_head.row])
    if start_head.val_loss is not None:
        start.best_loss, start.best_epoch = start_head.val_loss, 1
        start.best_state = clone_state(network)
    chosen_run = ChosenRun(
        label="augment",
        backbone=backbone,
        dataset=dataset,
        device=device,
        has_val=has_val,
        groups=[dict(g) for g in groups],
        initial=start.best_state if wants_refit(job, has_val) else None,
        before=len(start.history),
        val_features=lambda: split_xy["val"],
        head_refit=features_head_refit(job, split_xy, len(dataset.classes)),
    )
    outcome, cost = run_network(
        job,
        network,
        groups,
        train,
        validate,
        label="augment",
        backbone=backbone,
        dataset=dataset,
        device=device,
        backward=False,
        val_images=0,
        uncached_images=0,
        start=start,
    )
    refit = refit_run(job, network, chosen_run, outcome)
    head = refit.head if refit.head is not None else finalize_head(network.head).eval()
    details = {
        "augment": settings.augment.describe(),
        "head_start": start_head.fit.selection,
        "kept_head_start": outcome.best_epoch == 1,
        "refit": refit.record,
    }
    if refit.selection is not None:
        details["selection"] = refit.selection
    elif dataset.multi_label:  # the final head's thresholds, on the validation features
        val_x, val_y = val if has_val and val is not None else (None, None)
        details["selection"] = heldout_selection(
            head, val_x, val_y, num_labels=len(dataset.classes), n_train=len(train_y)
        )
    return Fitted(
        backbone=backbone,
        head=head,
        history=outcome.history,
        best_epoch=outcome.best_epoch,
        monitor=outcome.monitor,
        dataset=dataset,
        features=split_xy,
        extraction=extraction,
        interrupted=outcome.interrupted or refit.interrupted,
        cost=cost,
        epoch_seconds=outcome.epoch_seconds,
        details=details,
        heldout_logits=refit.heldout_logits,
        heldout_y=refit.heldout_y,
    )
