"""Backbones by name: one factory, one offline rebuild, one table of families behind them.

A backbone is a pretrained network cut before its classifier, together with the preprocessing
its weights expect. Names are the ones users already know (timm's ``resnet50.a1_in1k``,
``hf-hub:``/``local-dir:`` prefixes, ``tv:NAME`` for torchvision, ``keras:NAME`` for Keras
applications, and the shipped ``headstart-tiny``), parsed in
:func:`~headstart.backbones._base.parse_model_name` only. The per-family work lives in the
private ``_timm``, ``_torchvision``, ``_keras`` and ``_local`` modules, each providing the same
functions (:class:`Family`); this module picks one through :data:`_FAMILIES` and imports it only
then, so that the CLI starts without loading the model zoos (or Keras). Adding a family is one
module, a row in the tables below, and its prefix in ``parse_model_name``: no code here changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from headstart.backbones._base import (
    DEFAULT_MODEL,
    EMBEDDED_MODEL,
    Backbone,
    WeightsChoice,
    check_spec,
    parse_model_name,
    parse_weights,
)
from headstart.errors import HeadstartError, RunFolderError

if TYPE_CHECKING:
    from headstart.backbones._classifier import PretrainedClassifier
    from headstart.preprocess import Preprocess

__all__ = [
    "Family",
    "create_backbone",
    "list_backbones",
    "list_cached_backbones",
    "load_pretrained_classifier",
    "rebuild_backbone",
    "resolve_model_preprocess",
]


class Family(Protocol):
    """What every backbone family module provides, so the registry needs no per-family code.

    ``source`` and ``name`` are :func:`parse_model_name`'s split of the user's ``model``; a family
    that serves several sources (model folders: ``hf-hub``, ``local-dir``, ``embedded``) tells
    them apart by ``source``.
    """

    def create(
        self,
        source: str,
        name: str,
        choice: WeightsChoice,
        overrides: Mapping[str, Any] | None,
        *,
        model: str,
        weights: str | Path,
    ) -> Backbone:
        """The backbone with pretrained, random or file weights, in eval mode."""

    def preprocess_for(
        self, source: str, name: str, overrides: Mapping[str, Any] | None, *, model: str
    ) -> Preprocess:
        """The preprocessing the weights expect, without building the model or its weights."""

    def rebuild(self, spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
        """A saved spec's architecture, unloaded, never downloading (the spec is checked)."""

    def pretrained_classifier(
        self, backbone: Backbone, source: str, name: str
    ) -> PretrainedClassifier | None:
        """The classifier the weights were pretrained with, or None; never downloads."""

    def list_weights(self, glob: str) -> list[tuple[str, str]]:
        """(name, description) of the family's known weights matching a shell pattern."""

    def list_cached(self) -> list[str]:
        """Model names whose pretrained weights are already on this machine (work offline)."""


_FAMILIES: dict[str, str] = {
    "timm": "headstart.backbones._timm",
    "torchvision": "headstart.backbones._torchvision",
    "keras": "headstart.backbones._keras",
    "folder": "headstart.backbones._local",
}
"""Each family's module, imported on first use: the one place a new family is added."""

_SOURCE_FAMILY: dict[str, str] = {
    "timm": "timm",
    "tv": "torchvision",
    "keras": "keras",
    "hf-hub": "folder",
    "local-dir": "folder",
    "embedded": "folder",
}
"""The family that serves each source :func:`parse_model_name` returns."""

_SAVED_FAMILIES = ("timm", "torchvision", "keras")
"""The ``family`` a saved spec may name: a folder's backbone is saved as the family it built."""

if TYPE_CHECKING:  # mypy checks that every family module provides the Family functions
    from headstart.backbones import _keras, _local, _timm, _torchvision

    _CHECKED: tuple[Family, ...] = (_timm, _torchvision, _keras, _local)


def _family(family: str) -> Family:
    return cast(Family, importlib.import_module(_FAMILIES[family]))


def _source_family(source: str) -> Family:
    return _family(_SOURCE_FAMILY[source])


def create_backbone(
    model: str = DEFAULT_MODEL,
    *,
    weights: str | Path = "default",
    preprocess_overrides: Mapping[str, Any] | None = None,
) -> Backbone:
    """Build a backbone and its preprocessing from a model name.

    Args:
        model: A name :func:`parse_model_name` accepts.
        weights: "default" for the pretrained weights (a download on first use, from the hub's
            cache afterwards), "none" for a random init seeded with 0 (reproducible), or a
            ``.safetensors`` / weights-only ``.pth`` file for the architecture.
        preprocess_overrides: Explicit preprocessing changes (see
            :func:`headstart.preprocess.resolve_preprocess`); each one is recorded and warned
            about.

    Returns:
        The backbone in eval mode.

    Raises:
        BackboneNotFoundError: Unknown name, or pretrained weights that cannot be had offline.
        WeightsError: A weights file that is missing, damaged or for another architecture.
        UnsafeWeightsError: A weights file that would need unpickling of arbitrary objects.
    """
    source, name = parse_model_name(model)
    choice = parse_weights(weights, source=source)
    family = _source_family(source)
    return family.create(source, name, choice, preprocess_overrides, model=model, weights=weights)


def resolve_model_preprocess(
    model: str,
    weights: str | Path = "default",
    overrides: Mapping[str, Any] | None = None,
) -> Preprocess:
    """The preprocessing of a model name, without building the model or downloading weights.

    Reads timm's pretrained_cfg registry, the torchvision weights enum, or a local folder's
    config.json (for ``hf-hub:`` only config.json is fetched), so ``headstart preprocess`` can
    show and apply a model's preprocessing on a machine that has never downloaded it.

    Raises:
        BackboneNotFoundError: Unknown name (or an hf-hub config that cannot be had offline).
        WeightsError: ``weights`` is neither keyword nor an existing file.
    """
    source, name = parse_model_name(model)
    parse_weights(weights, source=source)  # a typo in --weights fails here, not in training
    return _source_family(source).preprocess_for(source, name, overrides, model=model)


def rebuild_backbone(spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
    """Rebuild a saved backbone's architecture, random-initialised, for loading a run.

    Never downloads and never asks for pretrained weights: the run folder's own tensors are
    loaded into ``.module`` by the caller. The spec comes from a file that may have been edited
    or sent by a stranger, so it is validated as data (known family, known architecture, plain
    JSON arguments without download or path keys) before anything is built.

    Args:
        spec: ``Backbone.spec`` as saved.
        preprocess: The saved preprocessing, attached to the result as is.

    Raises:
        RunFolderError: The spec is malformed.
        BackboneNotFoundError: The architecture is unknown to the installed timm/torchvision.
    """
    family = check_spec(spec).get("family")
    if family not in _SAVED_FAMILIES:
        *others, last = (repr(name) for name in _SAVED_FAMILIES)
        raise RunFolderError(
            f"Saved backbone family {family!r} is unknown; expected {', '.join(others)} or "
            f"{last}. The run folder was edited or written by a newer headstart."
        )
    return _family(str(family)).rebuild(spec, preprocess)


def list_backbones(pattern: str | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) of the shipped, default and recommended backbones.

    Args:
        pattern: If given, instead list the timm and torchvision pretrained weights whose names
            match it (shell wildcards; a pattern without wildcards matches as a substring), so a
            user can find a name without leaving the CLI. Read from the registries, no download.
    """
    if not pattern:
        return list(_RECOMMENDED)
    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    return [row for family in _FAMILIES for row in _family(family).list_weights(glob)]


def list_cached_backbones() -> list[str]:
    """Model names whose pretrained weights are on this machine already, for every family: the
    shipped backbone, timm weights in the Hugging Face cache, torchvision's in torch's hub cache,
    Keras applications' in Keras' cache. What works without a network; nothing is downloaded."""
    return [name for family in _FAMILIES for name in _family(family).list_cached()]


def load_pretrained_classifier(backbone: Backbone) -> PretrainedClassifier | None:
    """The classifier the backbone's weights were pretrained with, or None when there is none.

    None for random weights, for an earlier stage's features (``layer``: the classifier never saw
    them), for weights without classifier tensors, and for heads that are not one linear layer
    over the pooled features (SqueezeNet's convolutional classifier). Never downloads: the
    weights are already in the cache, since the backbone was built from them. The family of the
    name the backbone was built from finds it (see
    :mod:`headstart.backbones._classifier` for why it is worth having).
    """
    spec = backbone.spec
    if spec.get("layer") is not None or str(spec.get("weights_id", "")).startswith("random:"):
        return None
    try:
        source, name = parse_model_name(str(spec.get("model", "")))
        return _source_family(source).pretrained_classifier(backbone, source, name)
    except (HeadstartError, OSError, KeyError, RuntimeError, ValueError):
        return None  # a sanity check that cannot run is skipped, never an error of its own


_RECOMMENDED: tuple[tuple[str, str], ...] = (
    (EMBEDDED_MODEL, "shipped inside headstart: tiny, offline, for trying things out"),
    (
        DEFAULT_MODEL,
        "default: ConvNeXt-T pretrained on ImageNet-12k, fine-tuned on ImageNet-1k, 28M params, "
        "strong transfer on a CPU",
    ),
    ("efficientnet_b0.ra_in1k", "EfficientNet-B0, 5M params: the fastest good choice on a CPU"),
    ("resnet50.a1_in1k", "ResNet-50 (timm A1 recipe): the classic baseline"),
    (
        "vit_small_patch14_dinov2.lvd142m",
        "DINOv2 ViT-S/14: self-supervised features that transfer well, 518 px input",
    ),
    (
        "vit_base_patch16_clip_224.openai",
        "CLIP ViT-B/16 image tower: broad features from image-text pretraining",
    ),
    ("convnext_base.fb_in22k_ft_in1k", "ConvNeXt-B: more accuracy for a GPU"),
    ("tv:resnet50", "torchvision ResNet-50 (IMAGENET1K_V2 weights)"),
    ("tv:resnet18", "torchvision ResNet-18: small and fast"),
    ("tv:vgg16", "torchvision VGG-16 (Keras VGG16 users: same architecture)"),
    ("tv:inception_v3", "torchvision Inception-v3, 299 px input"),
    ("tv:densenet161", "torchvision DenseNet-161"),
    ("tv:squeezenet1_0", "torchvision SqueezeNet 1.0: 1.2M params, 512 pooled features"),
    ("tv:alexnet", "torchvision AlexNet: historical baseline"),
    ("keras:ResNet50", "Keras applications ResNet50 (caffe preprocess_input), needs [keras]"),
    ("keras:InceptionV3", "Keras applications InceptionV3, 299 px, -1..1 input, needs [keras]"),
    ("keras:EfficientNetB0", "Keras applications EfficientNetB0, needs [keras]"),
    ("tv:efficientnet_b0", "torchvision EfficientNet-B0"),
)
