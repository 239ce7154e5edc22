"""Saying what a strategy will cost before it starts (shared/USERS.md story 7).

A strategy that runs the backbone on every image of every epoch can take hours on a CPU where
cached features take seconds. Before such a strategy starts on a CPU, a few real batches are timed
(on a copy of the network, so timing changes nothing) and the estimate is printed next to what the
cached-features path would cost, so the user can stop and choose.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from headstart.strategies._data import TrainImages
from headstart.strategies._network import Network

__all__ = ["CostEstimate", "estimate_cost"]


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
            f"{self.label}: ~{_duration(self.epoch_seconds)}/epoch, ~{_duration(total)} for "
            f"{self.epochs} epochs (less if early stopping ends it); the cached-features path "
            f"would take ~{_duration(self.features_seconds)}"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 0.1):.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _timed(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up: allocator, kernel selection, lazy init
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats


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
    head_epochs: int = 100,
    batch: int = 16,
) -> CostEstimate:
    """Time a few batches and extrapolate to an epoch.

    Args:
        network: The network as it will train (copied; the original is not touched).
        train: The training images (a few plain ones are decoded here).
        label: The strategy's name, for the message.
        device: Where training will run.
        epochs: Epochs the strategy will run at most.
        backward: Whether gradients flow through the backbone (fine-tuning, scratch).
        val_images: Images validated through the backbone every epoch (0 when validation uses
            cached features).
        uncached_images: Images the cached-features path would still have to extract.
        head_epochs: Epochs a head on cached features trains at most.
        batch: Images per timed batch.
    """
    began = time.perf_counter()
    x, y = train.first_batch(min(batch, len(train)))
    count = max(1, len(x))
    decode = (time.perf_counter() - began) / count
    decode_share = decode / train.workers if train.workers > 0 else decode
    with torch.random.fork_rng(devices=[]):
        model = copy.deepcopy(network).to(device)
        if device.type != "mps":
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        x, y = x.to(device), y.to(device)

        def step() -> None:
            model.train()
            loss = F.cross_entropy(model(x), y)
            if backward or loss.requires_grad:
                loss.backward()
            model.zero_grad(set_to_none=True)

        def forward() -> None:
            model.eval()
            with torch.inference_mode():
                model(x)

        train_step = _timed(step, 2) / count
        forward_step = _timed(forward, 2) / count
        head = _head_epoch_seconds(network.head, len(train), x.shape[0], model, x)

    def per_image(compute: float) -> float:
        # Workers decode while the model computes; without workers the two add up.
        return max(compute, decode_share) if train.workers > 0 else compute + decode

    epoch = len(train) * per_image(train_step) + val_images * per_image(forward_step)
    features = uncached_images * per_image(forward_step) + head * head_epochs
    return CostEstimate(label, epoch, epochs, features)


def _head_epoch_seconds(
    head: nn.Module, n_train: int, count: int, model: Network, x: torch.Tensor
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

    return _timed(step, 5) * math.ceil(n_train / 64)
