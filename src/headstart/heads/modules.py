"""The heads that sit on a backbone's pooled features."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from headstart.errors import InvalidParameterError

__all__ = [
    "HEAD_KINDS",
    "MLPHead",
    "create_head",
    "fold_standardization",
    "fold_temperature",
    "standardization",
]

HEAD_KINDS = ("linear", "mlp")
HeadKind = Literal["linear", "mlp"]


class MLPHead(nn.Module):
    """Standardize -> Linear -> GELU -> Dropout -> Linear.

    The standardization is part of the head (buffers saved with it), so the head can be applied to
    raw backbone features anywhere, exactly as in training.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self, in_features: int, num_classes: int, hidden: int = 512, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(in_features))
        self.register_buffer("scale", torch.ones(in_features))
        self.fc1 = nn.Linear(in_features, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.shift) * self.scale
        return self.fc2(self.drop(self.act(self.fc1(x))))


def create_head(
    kind: str, in_features: int, num_classes: int, *, hidden: int = 512, dropout: float = 0.2
) -> nn.Module:
    """Build a head of ``kind`` ("linear" or "mlp")."""
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "mlp":
        return MLPHead(in_features, num_classes, hidden=hidden, dropout=dropout)
    raise InvalidParameterError(f"Unknown head {kind!r}; choose one of {', '.join(HEAD_KINDS)}.")


def head_config(kind: str, head: nn.Module) -> dict[str, Any]:
    """The JSON description needed to rebuild ``head`` before loading its weights."""
    if isinstance(head, MLPHead):
        return {
            "kind": "mlp",
            "in_features": head.fc1.in_features,
            "num_classes": head.fc2.out_features,
            "hidden": head.fc1.out_features,
            "dropout": head.drop.p,
        }
    if isinstance(head, nn.Linear):
        return {"kind": "linear", "in_features": head.in_features, "num_classes": head.out_features}
    raise TypeError(f"not a headstart head: {type(head).__name__}")


def head_from_config(cfg: dict[str, Any]) -> nn.Module:
    """The head a run's config describes, its weights still to be loaded.

    Raises:
        ValueError: a size is not a positive integer (a damaged config; torch would say only
            "negative dimension").
    """
    sizes = {key: int(cfg[key]) for key in ("in_features", "num_classes")}
    sizes["hidden"] = int(cfg.get("hidden", 512))
    for key, value in sizes.items():
        if value < 1:
            raise ValueError(f"head {key} must be a positive integer, got {value}")
    return create_head(
        str(cfg["kind"]),
        sizes["in_features"],
        sizes["num_classes"],
        hidden=sizes["hidden"],
        dropout=float(cfg.get("dropout", 0.2)),
    )


def standardization(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature shift and scale making ``x`` zero-mean, unit-variance (constant columns: 1).

    Every head trains on features standardized this way, with the statistics of its own
    training images; :func:`fold_standardization` puts them into a linear head for good.
    """
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return t.mean(0), 1.0 / (t.std(0, unbiased=False) + 1e-6)


def fold_standardization(linear: nn.Linear, shift: torch.Tensor, scale: torch.Tensor) -> None:
    """Rewrite ``linear`` so that linear(x) == old_linear((x - shift) * scale), in place.

    Training a linear head on standardized features converges far better, but the saved head must
    take raw features so that it is a plain classifier layer (and the run folder a timm model).
    """
    with torch.no_grad():
        weight = linear.weight * scale
        linear.bias.sub_(weight @ shift)
        linear.weight.copy_(weight)


def fold_temperature(head: nn.Module, temperature: float) -> None:
    """Divide ``head``'s logits by ``temperature`` for good, by rewriting its last layer in place.

    Calibration then travels with the weights: whatever runs the head (timm loading the run
    folder, an ONNX export) gets the calibrated probabilities.
    """
    last = head.fc2 if isinstance(head, MLPHead) else head
    if not isinstance(last, nn.Linear):
        raise TypeError(f"not a headstart head: {type(head).__name__}")
    with torch.no_grad():
        last.weight.div_(temperature)
        last.bias.div_(temperature)
