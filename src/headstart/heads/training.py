"""Training a head on cached features: AdamW, cross-entropy, early stopping on validation loss.

The weights kept are those of the epoch with the lowest validation loss, not the last epoch, as
Keras' ``ModelCheckpoint(save_best_only=True)`` users expect. Everything random (initialisation,
shuffling, dropout) draws from one seeded generator inside ``torch.random.fork_rng``, so the same
seed and data give the same head, bit for bit on the CPU, without touching the caller's RNG state.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headstart.errors import HeadstartError
from headstart.heads.modules import MLPHead, create_head, fold_standardization
from headstart.progress import Progress

__all__ = ["HeadTrainingConfig", "TrainedHead", "train_head"]


@dataclass(frozen=True)
class HeadTrainingConfig:
    """Hyper-parameters of head training. The defaults need no tuning for a linear probe."""

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    patience: int = 10
    seed: int = 0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "batch_size": self.batch_size >= 1,
            "patience": self.patience >= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise HeadstartError(f"Invalid {name}={getattr(self, name)!r} for head training.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainedHead:
    """The head with its best weights (taking raw backbone features) and how it got there."""

    head: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    monitor: str = "val_loss"


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
        np.asarray(y, dtype=np.int64)
    )


def _evaluate(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    head.eval()
    with torch.no_grad():
        logits = head(x)
        loss = float(F.cross_entropy(logits, y))
        acc = float((logits.argmax(1) == y).float().mean())
    return loss, acc


def train_head(
    kind: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    config: HeadTrainingConfig | None = None,
    *,
    hidden: int = 512,
    dropout: float = 0.2,
    quiet: bool = False,
) -> TrainedHead:
    """Train a head of ``kind`` on features; return it with its best weights and history.

    Features are standardized with the training set's statistics (a linear probe on raw pooled
    features converges slowly and depends on the backbone's feature scale); the standardization is
    folded into the linear layer, or kept as buffers in the MLP, so the result takes raw features.
    Without validation data the training loss is monitored instead.
    """
    config = config or HeadTrainingConfig()
    if len(train_x) == 0:
        raise HeadstartError("No training features: the train split is empty.")
    xt, yt = _as_tensors(train_x, train_y)
    has_val = val_x is not None and val_y is not None and len(val_x) > 0
    xv, yv = _as_tensors(val_x, val_y) if has_val else (xt, yt)  # type: ignore[arg-type]
    shift = xt.mean(0)
    scale = 1.0 / (xt.std(0, unbiased=False) + 1e-6)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        head = create_head(kind, xt.shape[1], num_classes, hidden=hidden, dropout=dropout)
        if isinstance(head, MLPHead):
            head.shift.copy_(shift)
            head.scale.copy_(scale)
            model: nn.Module = head
        else:
            model = _Standardized(head, shift, scale)
        result = _fit(model, xt, yt, xv, yv, config, generator, quiet=quiet)
    if isinstance(head, nn.Linear):
        fold_standardization(head, shift, scale)
    result.head = head
    result.monitor = "val_loss" if has_val else "loss"
    return result


class _Standardized(nn.Module):
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, inner: nn.Module, shift: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - self.shift) * self.scale)


def _fit(
    model: nn.Module,
    xt: torch.Tensor,
    yt: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    config: HeadTrainingConfig,
    generator: torch.Generator,
    *,
    quiet: bool,
) -> TrainedHead:
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    n = len(xt)
    history: list[dict[str, float]] = []
    best_loss = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    waited = 0
    with Progress(config.epochs, "training head", unit="epoch", quiet=quiet) as progress:
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=generator)
            total_loss, total_correct = 0.0, 0
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                logits = model(xt[idx])
                loss = F.cross_entropy(logits, yt[idx], label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total_loss += loss.item() * len(idx)
                total_correct += int((logits.argmax(1) == yt[idx]).sum())
            val_loss, val_acc = _evaluate(model, xv, yv)
            history.append(
                {
                    "epoch": epoch,
                    "loss": total_loss / n,
                    "accuracy": total_correct / n,
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                }
            )
            progress.update(1)
            if val_loss < best_loss:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                waited += 1
                if waited >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return TrainedHead(head=model, history=history, best_epoch=best_epoch)
