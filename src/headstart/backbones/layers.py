"""A backbone that gives the pooled features of an earlier stage (``--layer``).

A backbone concern, not a strategy's: a headstart run trained on ``layer3`` features is, as a
``local-dir:`` backbone, the network that gives ``layer3`` features (what its head reads), so the
model folder loader needs this as much as training does. Features come from timm's
``forward_intermediates``, global-average-pooled.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from headstart.backbones._base import Backbone
from headstart.errors import InvalidParameterError

__all__ = ["LayerPooled", "inner_module", "select_layer"]


class LayerPooled(nn.Module):
    """Global-average-pooled features of one intermediate stage of a timm model."""

    def __init__(self, model: nn.Module, index: int) -> None:
        super().__init__()
        self.model = model
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_intermediates(  # type: ignore[operator]
            x, indices=[self.index], intermediates_only=True, stop_early=True
        )
        fmap: torch.Tensor = maps[-1]
        if fmap.ndim == 4:
            return fmap.mean(dim=(2, 3))
        if fmap.ndim == 3:  # tokens (N, L, C)
            return fmap.mean(dim=1)
        return fmap.flatten(1)


def inner_module(module: nn.Module) -> nn.Module:
    """The backbone network itself, under a :class:`LayerPooled` wrapper if there is one.

    Its state dict is what a run folder saves, with the architecture's own key names.
    """
    return module.model if isinstance(module, LayerPooled) else module


def select_layer(backbone: Backbone, layer: int | str) -> Backbone:
    """The same backbone giving pooled features of stage ``layer`` instead of the last one.

    Earlier stages hold more generic features (edges, textures), which transfer better to data
    unlike the pretraining's. ``layer`` indexes timm's
    ``feature_info`` (negative from the end) or names one of its modules. The choice goes into
    ``spec["layer"]``, hence into the feature cache namespace and the saved model.

    Raises:
        HeadstartError: Not a timm backbone, or no such stage.
    """
    module = inner_module(backbone.module)
    info = getattr(module, "feature_info", None)
    if backbone.spec.get("family") != "timm" or not hasattr(module, "forward_intermediates"):
        raise InvalidParameterError(
            f"--layer needs a timm backbone with forward_intermediates; "
            f"{backbone.spec.get('model')!r} has none. Use --layer with a timm model."
        )
    entries = list(info) if info is not None else []
    names = [str(e["module"]) for e in entries]
    index: int | None = None
    if isinstance(layer, int) or (isinstance(layer, str) and layer.lstrip("-").isdigit()):
        i = int(layer)
        index = i + len(entries) if i < 0 else i
        if not 0 <= index < len(entries):
            index = None
    elif layer in names:
        index = names.index(layer)
    if index is None:
        choices = ", ".join(f"{i} ({n})" for i, n in enumerate(names))
        raise InvalidParameterError(
            f"Unknown layer {layer!r} for {backbone.spec.get('architecture')}; choose a stage "
            f"index or name: {choices}."
        )
    spec = {**backbone.spec, "layer": index, "layer_module": names[index]}
    width = int(entries[index]["num_chs"])
    return replace(
        backbone, module=LayerPooled(module, index).eval(), num_features=width, spec=spec
    )
