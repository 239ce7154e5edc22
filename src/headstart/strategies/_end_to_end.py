"""What the three end-to-end strategies (augment, finetune, scratch) share.

Each builds its own network and parameter groups; the rest is the same sequence: the training
images with their augmentation, validation on images, the cost estimate a CPU user is owed before a
long run, and the training loop with its checkpoints. One place for it keeps the three in step.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from headstart import distributed
from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.errors import InvalidParameterError
from headstart.heads.weights import class_weights, weight_vector
from headstart.strategies._common import Job, targets
from headstart.strategies._cost import CostEstimate, estimate_cost
from headstart.strategies._data import TrainImages
from headstart.strategies._loop import (
    LoopOutcome,
    LoopStart,
    Validator,
    images_validator,
    resolve_amp,
    train_network,
)
from headstart.strategies._network import Network

__all__ = ["loss_weights", "run_network", "train_images", "validation_images"]


def train_images(
    job: Job, backbone: Backbone, paths: Sequence[Path], labels: Iterable[int]
) -> TrainImages:
    """The training images, augmented with the job's settings, batched as the loop wants them.

    Under torchrun, this rank's share of each global batch (``batch_size`` over all ranks).

    Raises:
        HeadstartError: A global batch smaller than the number of ranks: some rank would have
            no image in any step.
    """
    settings = job.settings
    world = distributed.world()
    if settings.batch_size < world.size:
        raise InvalidParameterError(
            f"--batch-size {settings.batch_size} is the global batch, split across the "
            f"{world.size} processes torchrun started; give at least {world.size} (one image "
            "per process), or start fewer processes."
        )
    return TrainImages(
        list(paths),
        [int(y) if np.ndim(y) == 0 else np.asarray(y).tolist() for y in labels],  # 0/1 a label
        backbone.preprocess,
        settings.augment,
        seed=settings.seed,
        batch_size=settings.batch_size,
        num_workers=job.num_workers,
        rank=world.rank,
        world_size=world.size,
    )


def loss_weights(job: Job, dataset: Dataset) -> torch.Tensor | None:
    """The class weights of the run's loss (None: unweighted); ``balanced`` counts the training
    split, the images the loss is over."""
    labels = [s.label for s in dataset.splits.get("train", [])]
    vector = weight_vector(job.settings.class_weight, dataset.classes)
    return class_weights(vector, np.asarray(labels, np.int64), len(dataset.classes))


def validation_images(
    job: Job, backbone: Backbone, dataset: Dataset, device: torch.device
) -> Validator | None:
    """Validation through the whole network, on the val images; None when there are none."""
    samples = dataset.splits.get("val")
    if not samples:
        return None
    labels = targets(samples, len(dataset.classes) if dataset.multi_label else None)
    return images_validator(
        [s.path for s in samples],
        labels.tolist(),  # a class each, or 0/1 a label each
        backbone.preprocess,
        batch_size=job.extract_batch_size,
        num_workers=job.num_workers,
        device=device,
        amp=resolve_amp(job.settings.amp, device),
        weights=loss_weights(job, dataset),
    )


def run_network(
    job: Job,
    network: Network,
    groups: list[dict[str, Any]],
    train: TrainImages,
    validate: Validator | None,
    *,
    label: str,
    backbone: Backbone,
    dataset: Dataset,
    device: torch.device,
    backward: bool,
    val_images: int,
    uncached_images: int,
    start: LoopStart | None = None,
) -> tuple[LoopOutcome, CostEstimate | None]:
    """Say what the run will cost (on a CPU), train, and bring the network back to the CPU."""
    cost = None
    if device.type == "cpu" and not job.quiet:
        cost = estimate_cost(
            network,
            train,
            label=label,
            device=device,
            epochs=job.settings.epochs,
            backward=backward,
            val_images=val_images,
            uncached_images=uncached_images,
            groups=groups,
            checkpoints=job.checkpoint_dir is not None,
        )
        job.say(cost.message())
        if job.settings.refit and validate is not None:
            job.say(
                f"{label}: then a refit on train + val for the epochs validation chooses, up to "
                "about as long again (--refit none skips it)"
            )
    outcome = train_network(
        network,
        groups,
        train,
        validate,
        job.settings,
        device=device,
        label=label,
        fingerprint=job.fingerprint(backbone, dataset),
        earlier_fingerprints=job.earlier_fingerprints(backbone, dataset),
        checkpoint_dir=job.checkpoint_dir,
        resume=job.resume,
        start=start,
        quiet=job.quiet,
        stream=job.out,
        class_weight=loss_weights(job, dataset),
    )
    network.to("cpu")
    return outcome, cost
