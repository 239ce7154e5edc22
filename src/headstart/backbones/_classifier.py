"""The pretraining classifier a backbone's weights came with, kept apart from the backbone.

A backbone is the network cut before its classifier, because the user's classes are not the
pretraining's. But that classifier is the cheapest sanity check there is (docs/why.md, story
1, the seed's "nematode"): run on a few of the user's images with the preprocessing training will
use, it should see varied, confident things; when every image looks like the same class to it,
or like nothing at all, the pixels are not what the weights were trained on. This module finds
that classifier where the weights have one: timm's and torchvision's pretrained heads (ImageNet
class names), a model folder that ships ``pretrained_classifier.safetensors`` (the shipped
``headstart-tiny``: its source classes), the classifier tensors inside a weights file, a Keras
classifier's final Dense (``keras:PATH.keras``) and the ImageNet top of a full Keras
applications weights file (``keras:NAME --weights FILE``). Each family finds its own (its
``pretrained_classifier``); this module holds what they share: the result, and the ``Linear``
built from a state dict's classifier tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.backbones._weights import load_state_dict_file

if TYPE_CHECKING:
    import torch

    from headstart.backbones._base import Backbone

__all__ = [
    "CLASSIFIER_FILE",
    "PretrainedClassifier",
    "spec_classifier_names",
    "from_state",
    "from_weights_file",
    "has_weights_file",
]

CLASSIFIER_FILE = "pretrained_classifier.safetensors"
"""A model folder's pretraining classifier (``fc.weight``, ``fc.bias`` or the cfg's classifier
name), whose class names are ``headstart_pretraining.classes`` or ``label_names`` in config.json."""


@dataclass
class PretrainedClassifier:
    """The pretraining head: the backbone's pooled features to the pretraining's logits.

    Attributes:
        module: A ``Linear`` over the backbone's features, in eval mode.
        classes: Name of each output, e.g. ImageNet's "goldfish, Carassius auratus".
        source: Where it came from, for messages ("timm resnet50.a1_in1k head (fc)").
    """

    module: torch.nn.Module
    classes: tuple[str, ...]
    source: str


def has_weights_file(spec: Mapping[str, Any]) -> bool:
    """Whether the backbone's weights came from the user's ``--weights`` file."""
    return str(spec.get("weights", "default")).lower() != "default"


def from_weights_file(backbone: Backbone) -> PretrainedClassifier | None:
    """The classifier tensors inside the user's ``--weights`` file, when it kept them."""
    weights = str(backbone.spec.get("weights", "default"))
    state = load_state_dict_file(Path(weights).expanduser())
    names = spec_classifier_names(backbone.spec.get("classifier"))
    return from_state(backbone, state, names, None, f"the classifier in '{weights}'")


def from_state(
    backbone: Backbone,
    state: Mapping[str, torch.Tensor],
    names: Sequence[str],
    labels: Any,
    source: str,
) -> PretrainedClassifier | None:
    """A Linear from ``{name}.weight`` / ``{name}.bias`` when their width fits the features."""
    import torch
    from torch import nn

    for name in names:
        weight, bias = state.get(f"{name}.weight"), state.get(f"{name}.bias")
        if weight is None or weight.ndim != 2 or weight.shape[1] != backbone.num_features:
            continue
        linear = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight.float())
            if bias is not None:
                linear.bias.copy_(bias.float())
        linear.eval().requires_grad_(False)
        n = int(weight.shape[0])
        if not (isinstance(labels, Sequence) and len(labels) == n):
            labels = _imagenet_names() if n == _IMAGENET_CLASSES else None
        if labels is not None:
            classes = tuple(str(c) for c in labels)
        else:
            classes = tuple(f"class {i}" for i in range(n))
        return PretrainedClassifier(linear, classes, f"{source} ({name})")
    return None


_IMAGENET_CLASSES = 1000


def _imagenet_names() -> list[str]:
    """ImageNet-1k's class descriptions in the usual index order (timm ships them)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(info.num_classes())]


def spec_classifier_names(value: Any) -> list[str]:
    """The classifier module names a spec's ``classifier`` gives (a list for two-head models)."""
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, str)]
    return []
