"""The pretraining classifier a backbone's weights came with, kept apart from the backbone.

A backbone is the network cut before its classifier, because the user's classes are not the
pretraining's. But that classifier is the cheapest sanity check there is (shared/USERS.md story
1, the seed's "nematode"): run on a few of the user's images with the preprocessing training will
use, it should see varied, confident things; when every image looks like the same class to it,
or like nothing at all, the pixels are not what the weights were trained on. This module finds
that classifier where the weights have one: timm's and torchvision's pretrained heads (ImageNet
class names), a model folder that ships ``pretrained_classifier.safetensors`` (the shipped
``headstart-tiny``: its source classes), the classifier tensors inside a weights file, a Keras
classifier's final Dense (``keras:PATH.keras``) and the ImageNet top of a full Keras
applications weights file (``keras:NAME --weights FILE``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.errors import HeadstartError

if TYPE_CHECKING:
    import torch

    from headstart.backbones.registry import Backbone

__all__ = ["CLASSIFIER_FILE", "PretrainedClassifier", "load_pretrained_classifier"]

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


def load_pretrained_classifier(backbone: Backbone) -> PretrainedClassifier | None:
    """The classifier the backbone's weights were pretrained with, or None when there is none.

    None for random weights, for an earlier stage's features (``layer``: the classifier never saw
    them), for weights without classifier tensors, and for heads that are not one linear layer
    over the pooled features (SqueezeNet's convolutional classifier). Never downloads: the
    weights are already in the cache, since the backbone was built from them.
    """
    spec = backbone.spec
    if spec.get("layer") is not None or str(spec.get("weights_id", "")).startswith("random:"):
        return None
    try:
        return _load(backbone)
    except (HeadstartError, OSError, KeyError, RuntimeError, ValueError):
        return None  # a sanity check that cannot run is skipped, never an error of its own


def _load(backbone: Backbone) -> PretrainedClassifier | None:
    spec = backbone.spec
    if spec.get("family") == "keras":
        return _from_keras(backbone)
    weights = str(spec.get("weights", "default"))
    names = _classifier_names(spec.get("classifier"))
    if weights.lower() != "default":
        from headstart.backbones._weights import load_state_dict_file

        state = load_state_dict_file(Path(weights).expanduser())
        return _from_state(backbone, state, names, None, f"the classifier in '{weights}'")
    model = str(spec.get("model", ""))
    from headstart.backbones.registry import parse_model_name

    source, name = parse_model_name(model)
    if source in ("embedded", "local-dir", "hf-hub"):
        return _from_folder(backbone, source, name, names)
    if spec.get("family") == "timm":
        return _from_timm(backbone, spec, names)
    if spec.get("family") == "torchvision":
        return _from_torchvision(backbone, name, names)
    return None


def _from_folder(
    backbone: Backbone, source: str, name: str, names: Sequence[str]
) -> PretrainedClassifier | None:
    from headstart.backbones._local import folder_for, read_config
    from headstart.backbones._weights import load_state_dict_file

    folder = folder_for(source, name, need_weights=False)
    config = read_config(folder)
    pretraining = config.get("headstart_pretraining")
    labels: Any = None
    if isinstance(pretraining, Mapping):
        labels = pretraining.get("classes")
    cfg = config.get("pretrained_cfg")
    if labels is None:
        labels = config.get("label_names") or (
            cfg.get("label_names") if isinstance(cfg, Mapping) else None
        )
    path = folder / CLASSIFIER_FILE
    if not path.is_file():
        path = folder / "model.safetensors"  # a timm folder saved with its head
    if not path.is_file():
        return None
    state = load_state_dict_file(path)
    label = f"{backbone.spec.get('model')} pretraining classifier"
    return _from_state(backbone, state, [*names, "fc"], labels, label)


def _from_timm(
    backbone: Backbone, spec: Mapping[str, Any], names: Sequence[str]
) -> PretrainedClassifier | None:
    import timm
    from timm.data import ImageNetInfo, infer_imagenet_subset

    from headstart.backbones._weights import hf_cache_only

    weights_id = str(spec.get("weights_id", ""))
    if not weights_id.startswith("timm:"):
        return None
    full = weights_id.removeprefix("timm:")
    with hf_cache_only(True):  # the backbone's own weights are in the cache
        model = timm.create_model(full, pretrained=True)
    labels: Any = None
    subset = infer_imagenet_subset(model)
    if subset:
        info = ImageNetInfo(subset)
        labels = [info.index_to_description(i) for i in range(info.num_classes())]
    return _from_state(backbone, model.state_dict(), names, labels, f"timm {full} classifier")


def _from_torchvision(
    backbone: Backbone, name: str, names: Sequence[str]
) -> PretrainedClassifier | None:
    from headstart.backbones import _torchvision
    from headstart.backbones._weights import load_state_dict_file

    arch, member = _torchvision.resolve_name(name)
    path = _torchvision._download(member, f"tv:{arch}.{member.name}")  # cached: the backbone's
    state = load_state_dict_file(path)
    labels = member.meta.get("categories")
    return _from_state(backbone, state, names, labels, f"torchvision {arch}.{member.name} head")


def _from_keras(backbone: Backbone) -> PretrainedClassifier | None:
    from headstart.backbones import _keras

    top = _keras.pretrained_top(backbone.module, backbone.spec)
    if top is None:
        return None
    state = {f"{top.name}.weight": top.weight}
    if top.bias is not None:
        state[f"{top.name}.bias"] = top.bias
    return _from_state(backbone, state, [top.name], top.labels, top.source)


def _from_state(
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


def _classifier_names(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if isinstance(v, str)]
    return []
