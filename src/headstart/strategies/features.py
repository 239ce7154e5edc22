"""``features``: the frozen backbone runs once per image; a head trains on cached features.

The cheap path, and on a CPU the default (docs/why.md, stories 4 and 7): a second experiment
on the same data costs no forward pass at all. ``aug_views=K`` adds augmentation at a fixed
price: K augmented views of every training image are run through the backbone once and cached
like plain features (keyed by the augmentation's fingerprint, the seed and the view index), and
each epoch the head sees one view per image. Validation and test features are never augmented.
``layer`` pools features from an earlier stage, for data unlike the pretraining's.

The head is fitted by :func:`headstart.heads.fit_head`: its setting (the linear head's L2
strength, the MLP's epochs) is chosen on held-out data, then refitted on train + val unless
``refit`` is off. Augmented views join the fit of the images they come from, never the held-out
side, so the choice says whether they help on plain images.
"""

from __future__ import annotations

import numpy as np

from headstart import distributed
from headstart.augment import AugmentedView
from headstart.heads import HeadTrainingConfig, fit_head
from headstart.heads.weights import weight_vector
from headstart.strategies._common import Fitted, Job, extract_splits
from headstart.strategies._network import select_layer

__all__ = ["fit"]


def fit(job: Job) -> Fitted:
    """Train a head on cached (optionally augmented, optionally earlier-layer) features."""
    settings = job.settings
    backbone = job.backbone
    if settings.layer is not None:
        backbone = select_layer(backbone, settings.layer)
    dataset, split_xy, extraction = extract_splits(job, backbone)
    train_x, train_y = split_xy["train"]
    views: list[np.ndarray] = []
    train_paths = [s.path for s in dataset.splits["train"]]
    for index in range(1, settings.aug_views + 1):
        view = AugmentedView(settings.augment, settings.seed, index)
        result = job.extract(
            backbone,
            train_paths,
            desc=f"augmented view {index}/{settings.aug_views}",
            view=view,
        )
        by_path = dict(zip(result.paths, result.features, strict=True))
        # The plain pass already dropped unreadable files, so every view has every image.
        views.append(np.stack([by_path[p] for p in train_paths]).astype(np.float32, copy=False))
        extraction["computed"] += result.n_computed
        extraction["cached"] += result.n_cached
    val_x, val_y = split_xy.get("val", (None, None))
    # Under torchrun every rank has every feature now; the head is fitted once, on rank 0.
    trained = distributed.run_on_main(
        lambda: fit_head(
            settings.head,
            train_x,
            train_y,
            val_x,
            val_y,
            len(dataset.classes),
            head_config(job),
            C=settings.C,
            class_weight=weight_vector(settings.class_weight, dataset.classes),
            refit=settings.refit,
            hidden=settings.hidden,
            dropout=settings.dropout,
            quiet=job.quiet,
            train_views=views,
        )
    )
    details: dict[str, object] = {"selection": trained.selection}
    if settings.aug_views:
        details["aug_views"] = settings.aug_views
    if settings.layer is not None:
        details["layer"] = backbone.spec.get("layer_module")
    return Fitted(
        backbone=backbone,
        head=trained.head,
        history=[{**row, "phase": "head"} for row in trained.history],
        best_epoch=trained.best_epoch,
        monitor=trained.monitor,
        dataset=dataset,
        features=split_xy,
        extraction=extraction,
        interrupted=trained.interrupted,
        epoch_seconds=trained.epoch_seconds,
        details=details,
        heldout_logits=trained.heldout_logits,
        heldout_y=trained.heldout_y,
    )


def head_config(job: Job) -> HeadTrainingConfig:
    """Head training on cached features with the job's settings."""
    s = job.settings
    return HeadTrainingConfig(
        epochs=s.epochs,
        lr=s.lr,
        weight_decay=s.weight_decay,
        batch_size=s.batch_size,
        patience=s.patience,
        seed=s.seed,
        label_smoothing=s.label_smoothing,
        schedule=s.schedule,
        warmup_epochs=s.warmup_epochs,
        grad_clip=s.grad_clip,
    )
