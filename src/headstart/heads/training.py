"""Training a head on cached features: AdamW, cross-entropy, early stopping on validation loss.

The weights kept are those of the epoch with the lowest validation loss, not the last epoch, as
Keras' ``ModelCheckpoint(save_best_only=True)`` users expect. Everything random (initialisation,
shuffling, dropout) draws from one seeded generator inside ``torch.random.fork_rng``, so the same
seed and data give the same head, bit for bit on the CPU, without touching the caller's RNG state.
That determinism is also how an interrupted head training resumes: from cached features it is
seconds of work, so it is simply run again and ends with the same head.

Ctrl-C (KeyboardInterrupt) after the first epoch stops training cleanly with the best head so far.
With augmented views of the training features (``train_views``), each epoch shows the head one
view of every image, rotating through the views, so K cached views give K epochs of augmentation
for the price of K forward passes.

With ``class_weight`` each image's loss is weighted by its class (:mod:`headstart.heads.weights`),
in training and in the validation loss that chooses the epoch alike: the epoch kept is the best
for the objective trained, the balanced risk, not for the unweighted one it departs from.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from headstart.errors import HeadstartError, InvalidParameterError
from headstart.heads.modules import MLPHead, create_head, fold_standardization, standardization
from headstart.heads.weights import ClassWeight, class_weights, weighted_cross_entropy
from headstart.progress import Progress
from headstart.threads import work_threads

__all__ = [
    "SCHEDULES",
    "HeadTrainingConfig",
    "Schedule",
    "TrainedHead",
    "create_standardized_head",
    "finalize_head",
    "lr_factor",
    "standardized_from",
    "train_head",
]

SCHEDULES: tuple[str, ...] = ("constant", "cosine", "onecycle")
Schedule = Literal["constant", "cosine", "onecycle"]


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """The learning rate multiplier at optimizer step ``step`` (0-based) of ``total``.

    - "constant": 1, after an optional linear warm-up.
    - "cosine": linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``.
    - "onecycle": rises from 1/25 to 1 over the first 30% (or ``warmup`` steps when given), then
      cosine decay to 1/10000 (fastai's and PyTorch's OneCycleLR shape).

    A pure function of the step, so a resumed run needs only the step count to be on schedule.
    """
    total = max(1, total)
    if schedule == "onecycle":
        rise = warmup if warmup > 0 else max(1, int(0.3 * total))
        if step < rise:
            return 1 / 25 + (1 - 1 / 25) * step / rise
        progress = min(1.0, (step - rise) / max(1, total - rise))
        low = 1e-4
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "constant":
        return 1.0
    raise InvalidParameterError(
        f"Unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}."
    )


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
    schedule: Schedule = "constant"
    warmup_epochs: float = 0.0
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "batch_size": self.batch_size >= 1,
            "patience": self.patience >= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "schedule": self.schedule in SCHEDULES,
            "warmup_epochs": 0 <= self.warmup_epochs < self.epochs,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise InvalidParameterError(
                    f"Invalid {name}={getattr(self, name)!r} for head training."
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainedHead:
    """The head with its best weights (taking raw backbone features) and how it got there."""

    head: nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    monitor: str = "val_loss"
    interrupted: bool = False
    epoch_seconds: list[float] = field(default_factory=list)


def _as_tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(
        np.asarray(y, dtype=np.int64)
    )


def _evaluate(
    head: nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[float, float]:
    head.eval()
    with torch.no_grad():
        logits = head(x)
        loss = float(weighted_cross_entropy(logits, y, weights))
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
    train_views: Sequence[np.ndarray] = (),
    keep_last: bool = False,
    class_weight: ClassWeight = None,
) -> TrainedHead:
    """Train a head of ``kind`` on features; return it with its best weights and history.

    Features are standardized with the training set's statistics (a linear probe on raw pooled
    features converges slowly and depends on the backbone's feature scale); the standardization is
    folded into the linear layer, or kept as buffers in the MLP, so the result takes raw features.
    Without validation data the training loss is monitored instead.

    Args:
        train_views: Features of augmented views of the training images, each shaped like
            ``train_x`` (same images, same order). Epoch ``e`` shows image ``i`` as view
            ``(e + i) % (1 + len(train_views))``, the plain features being view 0, so every epoch
            mixes views and every image cycles through all of them.
        keep_last: Keep the last epoch's weights, not the best monitored ones: a refit for a
            number of epochs chosen beforehand has nothing to monitor.
        class_weight: ``"balanced"`` (counted on ``train_y``) or one weight per class index;
            None: unweighted.
    """
    config = config or HeadTrainingConfig()
    if len(train_x) == 0:
        raise HeadstartError("No training features: the train split is empty.")
    for view in train_views:
        if view.shape != train_x.shape:
            raise HeadstartError(
                f"Augmented view features have shape {view.shape}, the plain ones "
                f"{train_x.shape}; they must be the same images in the same order."
            )
    xt, yt = _as_tensors(train_x, train_y)
    views = [xt, *(_as_tensors(v, train_y)[0] for v in train_views)]
    has_val = val_x is not None and val_y is not None and len(val_x) > 0
    xv, yv = _as_tensors(val_x, val_y) if has_val else (xt, yt)  # type: ignore[arg-type]
    shift, scale = standardization(xt)

    # Mini-batch products are small: they run with the thread count fastest for their size
    # (one, but for very wide batches; :mod:`headstart.threads`), restored afterwards.
    width = hidden if kind == "mlp" else num_classes
    step_work = min(config.batch_size, len(xt)) * xt.shape[1] * max(width, num_classes)
    with torch.random.fork_rng(devices=[]), work_threads(step_work):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        head = create_head(kind, xt.shape[1], num_classes, hidden=hidden, dropout=dropout)
        if isinstance(head, MLPHead):
            head.shift.copy_(shift)
            head.scale.copy_(scale)
            model: nn.Module = head
        else:
            model = _Standardized(head, shift, scale)
        weights = class_weights(class_weight, train_y, num_classes)
        result = _fit(
            model,
            views,
            yt,
            xv,
            yv,
            config,
            generator,
            quiet=quiet,
            keep_last=keep_last,
            weights=weights,
        )
    if isinstance(head, nn.Linear):
        fold_standardization(head, shift, scale)
    result.head = head
    result.monitor = "last" if keep_last else ("val_loss" if has_val else "loss")
    return result


def create_standardized_head(
    kind: str,
    train_x: np.ndarray,
    num_classes: int,
    *,
    hidden: int = 512,
    dropout: float = 0.2,
    seed: int = 0,
) -> nn.Module:
    """A seeded head that standardizes raw features with ``train_x``'s statistics first.

    What :func:`train_head` trains, for strategies that train the head on the fly rather than on
    cached features; :func:`finalize_head` turns it into the head that is saved.
    """
    shift, scale = standardization(train_x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = create_head(kind, train_x.shape[1], num_classes, hidden=hidden, dropout=dropout)
    if isinstance(head, MLPHead):
        head.shift.copy_(shift)
        head.scale.copy_(scale)
        return head
    return _Standardized(head, shift, scale)


def finalize_head(module: nn.Module) -> nn.Module:
    """The saved form of a :func:`create_standardized_head` head: it takes raw features.

    A linear head gets the standardization folded into its weights, so it stays a plain
    classifier layer (and the run folder a timm model); an MLP keeps it as buffers.
    """
    if isinstance(module, _Standardized):
        inner = module.inner
        assert isinstance(inner, nn.Linear)  # only linear heads are wrapped
        fold_standardization(inner, module.shift, module.scale)
        return inner
    return module


def standardized_from(head: nn.Module, train_x: np.ndarray) -> nn.Module:
    """A fitted head (taking raw features) in the form :func:`create_standardized_head` makes.

    The inverse of :func:`finalize_head` for a linear head: the standardization with
    ``train_x``'s statistics is unfolded from its weights, so that further gradient steps work on
    standardized features (well conditioned) and the function computed is unchanged. An MLP
    head keeps its standardization as buffers already.
    """
    if not isinstance(head, nn.Linear):
        return head
    shift, scale = standardization(train_x)
    inner = nn.utils.skip_init(nn.Linear, head.in_features, head.out_features)
    with torch.no_grad():
        inner.weight.copy_(head.weight / scale)
        inner.bias.copy_(head.bias + head.weight @ shift)
    return _Standardized(inner, shift, scale)


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
    views: list[torch.Tensor],
    yt: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    config: HeadTrainingConfig,
    generator: torch.Generator,
    *,
    quiet: bool,
    keep_last: bool = False,
    weights: torch.Tensor | None = None,
) -> TrainedHead:
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    n = len(yt)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = round(config.warmup_epochs * steps_per_epoch)
    stacked = torch.stack(views) if len(views) > 1 else None
    rows = torch.arange(n)
    history: list[dict[str, float]] = []
    best_loss = math.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    waited = 0
    step = 0
    interrupted = False
    seconds: list[float] = []
    with Progress(config.epochs, "training head", unit="epoch", quiet=quiet) as progress:
        try:
            for epoch in range(1, config.epochs + 1):
                began = time.monotonic()
                model.train()
                xt = views[0] if stacked is None else stacked[(epoch - 1 + rows) % len(views), rows]
                order = torch.randperm(n, generator=generator)
                total_loss, total_correct = 0.0, 0
                for start in range(0, n, config.batch_size):
                    idx = order[start : start + config.batch_size]
                    factor = lr_factor(config.schedule, step, total_steps, warmup)
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * factor
                    logits = model(xt[idx])
                    loss = weighted_cross_entropy(
                        logits, yt[idx], weights, label_smoothing=config.label_smoothing
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    optimizer.step()
                    step += 1
                    total_loss += loss.item() * len(idx)
                    total_correct += int((logits.argmax(1) == yt[idx]).sum())
                val_loss, val_acc = _evaluate(model, xv, yv, weights)
                history.append(
                    {
                        "epoch": epoch,
                        "loss": total_loss / n,
                        "accuracy": total_correct / n,
                        "val_loss": val_loss,
                        "val_accuracy": val_acc,
                    }
                )
                seconds.append(time.monotonic() - began)
                progress.update(1)
                if val_loss < best_loss or keep_last:
                    best_loss, best_epoch, waited = val_loss, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    waited += 1
                    if waited >= config.patience:
                        break
        except KeyboardInterrupt:
            if not history:
                raise
            interrupted = True
    model.load_state_dict(best_state)
    model.eval()
    return TrainedHead(
        head=model,
        history=history,
        best_epoch=best_epoch,
        interrupted=interrupted,
        epoch_seconds=seconds,
    )
