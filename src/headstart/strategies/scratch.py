"""``scratch``: the same architecture from random initialisation, everything trained: the baseline.

What transfer learning is measured against. It uses the settings that suit training from
scratch: a high learning rate with a one-cycle schedule, weight decay, augmentation, every layer
trainable and BatchNorm learning its statistics from the data. The preprocessing stays the
weights' own, so the comparison with the pretrained strategies changes one thing only.
"""

from __future__ import annotations

from headstart import distributed
from headstart.heads import create_head
from headstart.strategies._common import Fitted, Job, trained_backbone
from headstart.strategies._end_to_end import run_network, train_images, validation_images
from headstart.strategies._network import Network, param_groups
from headstart.strategies.finetune import warn_small_batchnorm_batches

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
    train = train_images(
        job, backbone, [s.path for s in train_samples], [s.label for s in train_samples]
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
    for param in backbone.module.parameters():
        param.requires_grad_(False)
    failures = {
        path: why for part in distributed.all_gather(train.failures) for path, why in part.items()
    }
    if failures:
        dataset = dataset.without(failures)
    return Fitted(
        backbone=trained_backbone(backbone),
        head=network.head.eval(),
        history=outcome.history,
        best_epoch=outcome.best_epoch,
        monitor=outcome.monitor,
        dataset=dataset,
        extraction={"computed": 0, "cached": 0},
        interrupted=outcome.interrupted,
        cost=cost,
        epoch_seconds=outcome.epoch_seconds,
    )
