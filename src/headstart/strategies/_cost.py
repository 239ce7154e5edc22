"""Saying what a strategy will cost before it starts (docs/why.md, story 7).

A strategy that runs the backbone on every image of every epoch can take hours on a CPU where
cached features take seconds. Before such a strategy starts on a CPU, a few real batches are timed
(on a copy of the network, so timing changes nothing) and the estimate is printed next to what the
cached-features path would cost, so the user can stop and choose.

The timings (:class:`StepTimings`) and the model that turns them into an epoch
(:func:`epoch_seconds`) are apart, so the model is tested on given timings. A first model timed
the forward and backward pass of plain images and took decoding to overlap the network for free:
on the demo data with ``headstart-tiny`` it announced ~0.5 s/epoch where 1.1-1.3 s were measured
(issue 22). It left out what an epoch also does: the optimizer's step, the augmentation (it timed
plain images), the checkpoint written after every epoch, and above all that the decoding threads
and the network share the same cores: the network's kernels already use every core, so decoding
adds its CPU time divided by the cores, and overlaps nothing for free. Measured on 304 demo
images (192 training), ``finetune --epochs 3`` on a 2-core machine shared with other jobs (load
8-15): the first model announced 15 s/epoch where 31-62 s were measured, this one 21 s where
17-26 s were (``benchmarks/load.py --finetune-epochs 3`` prints the comparison).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save as safetensors_save
from torch import nn
from torch.nn import functional as F

from headstart._text import format_duration
from headstart.heads.weights import weighted_cross_entropy
from headstart.strategies._data import TrainImages
from headstart.strategies._network import Network
from headstart.threads import work_threads

__all__ = ["CostEstimate", "StepTimings", "epoch_seconds", "estimate_cost"]


@dataclass(frozen=True)
class CostEstimate:
    """Seconds per epoch of a strategy, and of the cached-features alternative in total."""

    label: str
    epoch_seconds: float
    epochs: int
    features_seconds: float

    def message(self) -> str:
        total = self.epoch_seconds * self.epochs
        return (
            f"{self.label}: ~{format_duration(self.epoch_seconds)}/epoch, "
            f"~{format_duration(total)} for {self.epochs} epochs (less if early stopping ends "
            "it); the cached-features path "
            f"would take ~{format_duration(self.features_seconds)}"
        )


@dataclass(frozen=True)
class StepTimings:
    """What one epoch is made of, as measured (seconds).

    Attributes:
        decode: Decoding and augmenting one training image, on one thread.
        train: The forward and backward pass of one image (at the timed batch size).
        optimizer: One optimizer step with its ``zero_grad`` (once per batch).
        forward: The inference forward pass of one image (validation).
        checkpoint: Writing the checkpoint of one epoch (0 when none is written).
    """

    decode: float
    train: float
    optimizer: float
    forward: float
    checkpoint: float = 0.0


def epoch_seconds(
    timings: StepTimings,
    *,
    train_images: int,
    batches: int,
    val_images: int,
    workers: int,
    cores: int,
) -> float:
    """Seconds one epoch takes: the training pass, the validation pass and the checkpoint.

    With decoding threads (``workers`` > 0), an image costs the network's time plus its decoding
    spread over the cores (the network's kernels already keep every core busy, so decoding
    only overlaps it by sharing them), and never less than the decoding threads alone need.
    Without, decoding and the network take turns. Validation decodes its images the same way
    (costed as training images: an upper bound where the augmentation is dear).
    """

    def per_image(compute: float) -> float:
        if workers <= 0:
            return compute + timings.decode
        shared = compute + timings.decode / max(1, cores)
        return max(shared, timings.decode / workers)

    return (
        train_images * per_image(timings.train)
        + batches * timings.optimizer
        + val_images * per_image(timings.forward)
        + timings.checkpoint
    )


def _timed(fn: Callable[[], None], repeats: int, clock: Callable[[], float]) -> float:
    fn()  # warm-up: allocator, kernel selection, lazy init
    began = clock()
    for _ in range(repeats):
        fn()
    return (clock() - began) / repeats


def estimate_cost(
    network: Network,
    train: TrainImages,
    *,
    label: str,
    device: torch.device,
    epochs: int,
    backward: bool,
    val_images: int,
    uncached_images: int,
    groups: list[dict[str, Any]] | None = None,
    checkpoints: bool = False,
    head_epochs: int = 100,
    batch: int = 16,
    clock: Callable[[], float] = time.perf_counter,
) -> CostEstimate:
    """Time a few batches and extrapolate to an epoch (:func:`epoch_seconds`).

    Args:
        network: The network as it will train (copied; the original is not touched).
        train: The training images (a few are decoded and augmented here, as training does).
        label: The strategy's name, for the message.
        device: Where training will run.
        epochs: Epochs the strategy will run at most.
        backward: Whether gradients flow through the backbone (fine-tuning, scratch).
        val_images: Images validated through the backbone every epoch (0 when validation uses
            cached features).
        uncached_images: Images the cached-features path would still have to extract.
        groups: The optimizer's parameter groups (of ``network``): their step is timed on
            copies. None: no optimizer step is counted.
        checkpoints: A checkpoint is written after every epoch: its serialisation is timed.
        head_epochs: Epochs a head on cached features trains at most.
        batch: Images per timed batch.
        clock: Seconds, injectable.
    """
    began = clock()
    x, y = train.first_batch(min(batch, len(train)))
    count = max(1, len(x))
    decode = (clock() - began) / count
    with torch.random.fork_rng(devices=[]):
        model = copy.deepcopy(network).to(device)
        if device.type != "mps":
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        x, y = x.to(device), y.to(device)
        optimizer = _copied_optimizer(network, model, groups)

        def step() -> None:
            model.train()
            loss = weighted_cross_entropy(model(x), y, None)  # or several labels an image
            if backward or loss.requires_grad:
                loss.backward()

        def update() -> None:
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=False)

        def forward() -> None:
            model.eval()
            with torch.inference_mode():
                model(x)

        train_step = _timed(step, 2, clock) / count
        optimizer_step = _timed(update, 2, clock) if optimizer is not None else 0.0
        model.zero_grad(set_to_none=True)
        forward_step = _timed(forward, 2, clock) / count
        saving = _checkpoint_seconds(model, optimizer, clock) if checkpoints else 0.0
        head = _head_epoch_seconds(network.head, len(train), x.shape[0], model, x, clock)
    timings = StepTimings(decode, train_step, optimizer_step, forward_step, saving)
    epoch = epoch_seconds(
        timings,
        train_images=len(train),
        batches=train.num_batches,
        val_images=val_images,
        workers=train.workers,
        cores=os.cpu_count() or 1,
    )
    extract = StepTimings(decode, 0.0, 0.0, forward_step)
    features = (
        epoch_seconds(
            extract,
            train_images=0,
            batches=0,
            val_images=uncached_images,
            workers=train.workers,
            cores=os.cpu_count() or 1,
        )
        + head * head_epochs
    )
    return CostEstimate(label, epoch, epochs, features)


def _copied_optimizer(
    network: Network, model: Network, groups: list[dict[str, Any]] | None
) -> torch.optim.Optimizer | None:
    """AdamW over ``model``'s copies of the parameters in ``groups`` (of ``network``)."""
    if not groups:
        return None
    names = {id(p): name for name, p in network.named_parameters()}
    copies = dict(model.named_parameters())
    copied = [
        {**g, "params": [copies[names[id(p)]] for p in g["params"] if id(p) in names]}
        for g in groups
    ]
    return torch.optim.AdamW([g for g in copied if g["params"]], lr=1e-12)


def _checkpoint_seconds(
    model: Network, optimizer: torch.optim.Optimizer | None, clock: Callable[[], float]
) -> float:
    """Serialising and hashing what a checkpoint holds (the weights, the optimizer's two moments
    per trainable weight), as :func:`headstart.checkpoint.save_checkpoint` does every epoch."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        for i, state in enumerate(optimizer.state.values()):
            for name, value in state.items():
                if isinstance(value, torch.Tensor) and value.ndim:
                    tensors[f"optimizer.{i}.{name}"] = value.detach().contiguous()
    began = clock()
    hashlib.sha256(safetensors_save({k: v.clone() for k, v in tensors.items()})).hexdigest()
    return clock() - began


def _head_epoch_seconds(
    head: nn.Module,
    n_train: int,
    count: int,
    model: Network,
    x: torch.Tensor,
    clock: Callable[[], float],
) -> float:
    """One epoch of head-only training on cached features (batches of 64)."""
    with torch.inference_mode():
        features = model.backbone(x).float()
    clone = copy.deepcopy(head).to(features.device)
    feats = features.repeat(math.ceil(64 / max(1, count)), 1)[:64].clone()
    labels = torch.zeros(len(feats), dtype=torch.long, device=feats.device)
    optimizer = torch.optim.AdamW(clone.parameters(), lr=1e-3)

    def step() -> None:
        loss = F.cross_entropy(clone(feats), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # With the threads head training runs with (one for such small products), not the
    # network's: two threads on a busy machine made this estimate 4x what the head costs.
    width = max((p.shape[0] for p in clone.parameters() if p.ndim == 2), default=1)
    with work_threads(len(feats) * feats.shape[1] * width):
        return _timed(step, 5, clock) * math.ceil(n_train / 64)
