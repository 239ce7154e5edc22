"""``scratch``: the same architecture from random initialisation, everything trained: the baseline.

What transfer learning is measured against. It uses the settings that suit training from
scratch: a high learning rate with a one-cycle schedule, weight decay, augmentation, every layer
trainable and BatchNorm learning its statistics from the data. The preprocessing stays the
weights' own, so the comparison with the pretrained strategies changes one thing only. As for
the other end-to-end strategies, the chosen run is repeated on train + val from the same random
initialisation for the epochs validation chose (:mod:`._refit`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from headstart import distributed
from headstart.heads import create_head
from headstart.heads.multilabel import heldout_selection
from headstart.strategies._common import (
    Fitted,
    Job,
    SplitFeatures,
    extract_splits,
    targets,
    trained_backbone,
)
from headstart.strategies._end_to_end import run_network, train_images, validation_images
from headstart.strategies._loop import clone_state
from headstart.strategies._network import Network, param_groups
from headstart.strategies._refit import ChosenRun, refit_run, val_features_through, wants_refit
from headstart.strategies.finetune import only_val, warn_small_batchnorm_batches

__all__ = ["fit"]


def fit(job: Job) -> Fitted:
    """Train backbone and head from random initialisation."""
    import torch

    settings = job.settings
    device = job.torch_device
    backbone = job.backbone
    dataset = job.dataset
    warn_small_batchnorm_batches(job)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        head = create_head(
            settings.head,
            backbone.num_features,
            len(dataset.classes),
            hidden=settings.hidden,
            dropout=settings.dropout,
        )
    names = [name for name, _ in backbone.module.named_parameters()]
    network = Network(backbone.module, head, trainable=names, bn=settings.bn)
    groups = param_groups(network, [names], weight_decay=settings.weight_decay, layer_decay=1.0)
    train_samples = dataset.splits["train"]
    labels = targets(train_samples, len(dataset.classes) if dataset.multi_label else None)
    train = train_images(job, backbone, [s.path for s in train_samples], labels)
    has_val = bool(dataset.splits.get("val"))
    chosen_run = ChosenRun(
        label="scratch",
        backbone=backbone,
        dataset=dataset,
        device=device,
        has_val=has_val,
        groups=[dict(g) for g in groups],
        initial=clone_state(network) if wants_refit(job, has_val) else None,
        before=0,
        val_features=lambda: val_features_through(job, dataset, trained_backbone(backbone)),
    )
    outcome, cost = run_network(
        job,
        network,
        groups,
        train,
        validation_images(job, backbone, dataset, device),
        label="scratch",
        backbone=backbone,
        dataset=dataset,
        device=device,
        backward=True,
        val_images=len(dataset.splits.get("val", [])),
        uncached_images=sum(len(s) for s in dataset.splits.values()),
    )
    refit = refit_run(job, network, chosen_run, outcome)
    for param in backbone.module.parameters():
        param.requires_grad_(False)
    failures = {
        path: why for part in distributed.all_gather(train.failures) for path, why in part.items()
    }
    if failures:
        dataset = dataset.without(failures)
    final = trained_backbone(backbone)
    head = network.head.eval()
    details: dict[str, Any] = {"refit": refit.record}
    features: SplitFeatures = {}
    if refit.selection is not None:
        details["selection"] = refit.selection
    elif dataset.multi_label:  # the final model's thresholds, on its validation features
        if dataset.splits.get("val"):
            _, features, _ = extract_splits(
                replace(job, dataset=only_val(dataset), plain=None), final, desc="validation"
            )
        val_x, val_y = features.get("val", (None, None))
        details["selection"] = heldout_selection(
            head, val_x, val_y, num_labels=len(dataset.classes), n_train=len(train_samples)
        )
    return Fitted(
        backbone=final,
        head=head,
        history=outcome.history,
        best_epoch=outcome.best_epoch,
        monitor=outcome.monitor,
        dataset=dataset,
        extraction={"computed": 0, "cached": 0},
        interrupted=outcome.interrupted or refit.interrupted,
        cost=cost,
        epoch_seconds=outcome.epoch_seconds,
        features=features,
        details=details,
        heldout_logits=refit.heldout_logits,
        heldout_y=refit.heldout_y,
    )
