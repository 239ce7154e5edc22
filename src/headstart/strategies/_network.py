"""The backbone and head as one network, with frozen parts that stay frozen.

The classic transfer-learning bug (docs/why.md, story 2) is a backbone marked untrainable but
left in training mode: its BatchNorm layers then normalise with each batch's statistics (and keep
updating their running ones), so the head learns on features scaled differently from those it is
validated on. :class:`Network` overrides ``train()``: after every ``model.train()`` the frozen
part of the backbone, every Dropout in it included, is put back in inference mode, and with the
``frozen`` BatchNorm policy so is every BatchNorm layer, whose affine weights still train.

Stages (for ``--unfreeze N`` and per-depth learning rates) come from timm's own grouping,
``model.group_matcher(coarse=True)``, the one ``param_groups_layer_decay`` uses: the stem, each
stage (ResNet's ``layer1``...), each ViT block, and the final norm. torchvision models have no
matcher; for them a stage is a block of the network's sequential containers, in order. Keras
backbones say their own stages (``headstart_stages``: the blocks their layer names give).
``--layer`` features (:mod:`headstart.backbones.layers`) are re-exported here for the strategies.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from headstart.backbones.layers import LayerPooled, inner_module, select_layer
from headstart.errors import InvalidParameterError

__all__ = [
    "LayerPooled",
    "Network",
    "backbone_stages",
    "has_batchnorm",
    "inner_module",
    "param_groups",
    "select_layer",
]


class Network(nn.Module):
    """``head(backbone(x))``, training only what it was told to.

    Args:
        backbone: Maps images to pooled features.
        head: Maps features to logits.
        trainable: Names of the backbone parameters that train; all others get
            ``requires_grad=False`` and their modules stay in inference mode.
        bn: "frozen": every BatchNorm layer of the backbone uses (and keeps) its running
            statistics; "train": those inside trainable modules use batch statistics.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        trainable: Collection[str] = (),
        bn: str = "frozen",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.bn = bn
        names = set(trainable)
        unknown = names - {n for n, _ in backbone.named_parameters()}
        if unknown:
            raise ValueError(f"not backbone parameters: {sorted(unknown)[:3]}")
        for name, param in backbone.named_parameters():
            param.requires_grad_(name in names)
        self.backbone_trains = bool(names)
        self._train_roots = _trainable_roots(backbone, names)

    def train(self, mode: bool = True) -> Network:
        super().train(mode)
        if mode:
            self.backbone.eval()
            for name in self._train_roots:
                self.backbone.get_submodule(name).train()
            if self.bn == "frozen":
                for module in self.backbone.modules():
                    if _is_batchnorm(module):
                        module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone_trains:
            return self.head(self.backbone(x))
        with torch.no_grad():  # frozen: no graph through the backbone, a fraction of the memory
            features = self.backbone(x)
        return self.head(features)


def _trainable_roots(module: nn.Module, trainable: set[str]) -> list[str]:
    """The largest submodules whose parameters all train (they, and only they, go to train())."""
    if not trainable:
        return []
    roots: list[str] = []
    for name, sub in module.named_modules():
        if any(name == r or name.startswith(f"{r}.") for r in roots if r) or "" in roots:
            continue
        params = [f"{name}.{n}" if name else n for n, _ in sub.named_parameters()]
        if params and all(p in trainable for p in params):
            roots.append(name)
    return roots


def _is_batchnorm(module: nn.Module) -> bool:
    """torch's BatchNorm, or the torch face of a Keras one (headstart.backbones._keras)."""
    return isinstance(module, _BatchNorm) or getattr(module, "is_batchnorm", False) is True


def has_batchnorm(module: nn.Module) -> bool:
    return any(_is_batchnorm(m) for m in module.modules())


# ------------------------------------------------------------------------------ stages
def backbone_stages(module: nn.Module) -> list[list[str]]:
    """Parameter names per stage, from the input (stem) to the output (top).

    timm models say themselves how they group into stages (``group_matcher(coarse=True)``,
    with parameters outside every stage, such as a final norm, grouped at the top). For other
    models, the top-level modules are stages, and sequential containers are opened up so that,
    e.g., torchvision's ResNet gives one stage per residual block.
    """
    inner = inner_module(module)
    prefix = "model." if inner is not module else ""
    matcher = getattr(inner, "group_matcher", None)
    own_stages = getattr(inner, "headstart_stages", None)
    if callable(own_stages):  # a Keras backbone groups its layers by block itself
        stages = [[f"{prefix}{n}" for n in stage] for stage in own_stages()]
    elif callable(matcher):
        from timm.models._manipulate import group_parameters

        groups = group_parameters(inner, matcher(coarse=True))
        stages = [[f"{prefix}{n}" for n in groups[k]] for k in sorted(groups)]
    else:
        stages = [[f"{prefix}{n}" for n in stage] for stage in _module_stages(inner, "", 0)]
    return [s for s in stages if s]


def _module_stages(module: nn.Module, prefix: str, depth: int) -> list[list[str]]:
    stages: list[list[str]] = []
    own = [f"{prefix}{n}" for n, _ in module.named_parameters(recurse=False)]
    if own:
        stages.append(own)
    total = sum(p.numel() for p in module.parameters())
    for name, child in module.named_children():
        child_params = [f"{prefix}{name}.{n}" for n, _ in child.named_parameters()]
        if not child_params:
            continue
        holders = [c for c in child.children() if any(True for _ in c.parameters())]
        container = isinstance(child, (nn.Sequential, nn.ModuleList))
        dominant = sum(p.numel() for p in child.parameters()) > 0.75 * total
        if depth < 2 and len(holders) >= 2 and (container or dominant):
            stages.extend(_module_stages(child, f"{prefix}{name}.", depth + 1))
        else:
            stages.append(child_params)
    return stages


def param_groups(
    network: Network,
    stages: Sequence[Sequence[str]],
    *,
    weight_decay: float,
    layer_decay: float,
) -> list[dict[str, Any]]:
    """AdamW parameter groups with discriminative learning rates, as timm's layer decay.

    The head learns at the full rate (``lr_scale`` 1), the top trainable stage at
    ``layer_decay``, the one below at ``layer_decay**2``, and so on, so the generic low-level
    filters move least. Biases and norm weights (1-D parameters) get no weight decay.

    Args:
        stages: Trainable backbone parameter names per stage, bottom to top.
    """
    named = dict(network.backbone.named_parameters())
    scaled: list[tuple[str, float, list[tuple[str, nn.Parameter]]]] = [
        ("head", 1.0, [(f"head.{n}", p) for n, p in network.head.named_parameters()])
    ]
    for depth, stage in enumerate(reversed(stages), start=1):
        params = [(n, named[n]) for n in stage if named[n].requires_grad]
        if params:
            scaled.append((f"top-{depth}", layer_decay**depth, params))
    groups: list[dict[str, Any]] = []
    for name, scale, params in scaled:
        decay = [p for n, p in params if p.ndim > 1]
        no_decay = [p for n, p in params if p.ndim <= 1]
        for suffix, chosen, wd in (("", decay, weight_decay), (".no_decay", no_decay, 0.0)):
            if chosen:
                groups.append(
                    {"params": chosen, "weight_decay": wd, "lr_scale": scale, "name": name + suffix}
                )
    return groups


def unfrozen_stages(stages: list[list[str]], unfreeze: int | str) -> list[list[str]]:
    """The top ``unfreeze`` stages (all of them for "all")."""
    if unfreeze == "all":
        return stages
    count = int(unfreeze)
    if count < 1:
        raise InvalidParameterError(
            f"--unfreeze {count} trains no backbone stage; use 1 or more (this backbone has "
            f"{len(stages)}), 'all', or --strategy features/augment for a frozen backbone."
        )
    return stages[-count:]
