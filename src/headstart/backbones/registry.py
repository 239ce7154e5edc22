"""Backbones by name: one parser for model names, one factory, and the offline rebuild.

A backbone is a pretrained network cut before its classifier, together with the preprocessing
its weights expect. Names are the ones users already know (timm's ``resnet50.a1_in1k``,
``hf-hub:``/``local-dir:`` prefixes, ``tv:NAME`` for torchvision, ``keras:NAME`` for Keras
applications, and the shipped ``headstart-tiny``), parsed in :func:`parse_model_name` only. The
per-family work lives in the private ``_timm``, ``_torchvision``, ``_keras`` and ``_local``
modules, imported when needed so that the CLI starts without loading the model zoos (or Keras).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from headstart.errors import BackboneNotFoundError, RunFolderError, WeightsError

if TYPE_CHECKING:
    import torch

    from headstart.preprocess import Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL",
    "SOURCES",
    "Backbone",
    "WeightsChoice",
    "create_backbone",
    "list_backbones",
    "not_found",
    "parse_model_name",
    "parse_weights",
    "rebuild_backbone",
    "resolve_model_preprocess",
]

DEFAULT_MODEL = "convnext_tiny.in12k_ft_in1k"
"""Strong modern transfer backbone (ImageNet-22k pretraining, 28M params), fine on a CPU."""

EMBEDDED_MODEL = "headstart-tiny"
"""Shipped inside the package, so headstart works with no network at all."""

SOURCES: tuple[str, ...] = ("timm", "hf-hub", "local-dir", "tv", "keras", "embedded")

WeightsChoice = Literal["default", "none"] | Path
"""``"default"`` (the pretrained weights), ``"none"`` (seeded random init) or a weights file."""

_PREFIXES = {
    "timm": "timm",
    "hf-hub": "hf-hub",
    "hf_hub": "hf-hub",  # timm's historical spelling
    "local-dir": "local-dir",
    "tv": "tv",
    "torchvision": "tv",
    "keras": "keras",
}
# Keras' own files, read only for keras: models (headstart.backbones._keras).
_KERAS_SUFFIXES = (".h5", ".keras")
_HINT = "Run `headstart backbones` to see the names."


@dataclass
class Backbone:
    """A pretrained network that maps preprocessed images to pooled features.

    Attributes:
        module: Maps a preprocessed ``[N, 3, H, W]`` batch to ``[N, num_features]`` features; it
            is returned in eval mode, because a frozen backbone must never update BatchNorm
            statistics (shared/USERS.md story 2).
        preprocess: The preprocessing its weights expect.
        num_features: Width of the features.
        spec: JSON-able description :func:`rebuild_backbone` rebuilds the architecture from,
            offline: ``family`` ("timm" | "torchvision"), ``architecture``, ``model_args``,
            ``model`` and ``weights`` (as the user gave them), ``weights_id``, ``classifier``
            (dotted name of the classifier removed from the full model, e.g. "fc", "head.fc",
            "classifier.6"), and for timm ``pretrained_cfg`` (preprocessing and architecture keys
            only, never a download location).
    """

    module: torch.nn.Module
    preprocess: Preprocess
    num_features: int
    spec: dict[str, Any]

    @property
    def weights_id(self) -> str:
        """Identity of the weights for cache keys: a hub name, or a sha256 of the tensors/file."""
        return str(self.spec["weights_id"])


def parse_model_name(name: str) -> tuple[str, str]:
    """Split a model name into (source, name), the one place names are interpreted.

    Recognised: ``hf-hub:ORG/REPO[@REV]``, ``local-dir:PATH``, ``tv:NAME[.WEIGHTS]``,
    ``keras:NAME`` (a ``keras.applications`` name) or ``keras:PATH.keras`` (a saved Keras
    classifier, the one prefix that takes a file, as the file is the model), an optional
    ``timm:`` prefix, ``headstart-tiny``, and otherwise a timm name (``resnet50.a1_in1k``). A bare
    path is rejected rather than guessed at: if ``./resnet50`` were looked up in the timm registry
    when the folder is missing (or the reverse), a typo would silently load different weights
    than the user meant, so a folder must be named ``local-dir:PATH``.

    Args:
        name: The model name as the user wrote it.

    Returns:
        (source, name) with source one of "timm", "hf-hub", "local-dir", "tv", "keras",
        "embedded", and
        name without its prefix.

    Raises:
        BackboneNotFoundError: An empty name, an unknown prefix, or a bare path.
    """
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise BackboneNotFoundError(
            f"Model name is empty (got {name!r}); pass e.g. --model {DEFAULT_MODEL}. {_HINT}"
        )
    if text == EMBEDDED_MODEL:
        return "embedded", text
    prefix, sep, rest = text.partition(":")
    if sep and len(prefix) > 1:  # "C:\\..." is a Windows drive, not a prefix
        source = _PREFIXES.get(prefix.lower())
        if source is None:
            raise BackboneNotFoundError(
                f"Unknown model source '{prefix}:' in {text!r}; use one of timm:, hf-hub:, "
                f"local-dir:, tv:, keras:, or a plain timm name. {_HINT}"
            )
        rest = rest.strip()
        if not rest:
            raise BackboneNotFoundError(f"Model name {text!r} names nothing after '{prefix}:'.")
        if source in ("timm", "tv") and _looks_like_path(rest):
            raise BackboneNotFoundError(
                f"{text!r} is not a {source} model name; for a folder use local-dir:{rest}."
            )
        return source, rest
    if text.lower().endswith(_KERAS_SUFFIXES):
        raise BackboneNotFoundError(
            f"Model {text!r} looks like a Keras file; write --model keras:{text} for a saved "
            "Keras classifier, or --model keras:NAME --weights FILE for an application's weights."
        )
    if _looks_like_path(text):
        raise BackboneNotFoundError(
            f"Model {text!r} looks like a path; write --model local-dir:{text} for a folder "
            "with config.json + model.safetensors, or pass a weights file with --weights."
        )
    return "timm", text


def _looks_like_path(text: str) -> bool:
    return (
        "/" in text
        or "\\" in text
        or text.startswith(("~", "."))
        or text.lower().endswith(
            (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".json", ".onnx", ".h5", ".keras")
        )
    )


def parse_weights(weights: str | Path, *, source: str = "timm") -> WeightsChoice:
    """Interpret ``--weights``: "default", "none", or a path to an existing weights file.

    The two keywords win over files of the same name, so a stray file called ``none`` can never
    turn a random init into a load. Keras' ``.h5``/``.keras`` files are weights only for a
    ``keras:`` model: no other architecture could read them.

    Raises:
        WeightsError: Neither keyword and not an existing weights file for ``source``.
    """
    from headstart.backbones._weights import WEIGHT_SUFFIXES

    if isinstance(weights, str) and weights.strip().lower() in ("default", "none"):
        return "default" if weights.strip().lower() == "default" else "none"
    path = Path(weights).expanduser()
    suffixes = _KERAS_SUFFIXES if source == "keras" else WEIGHT_SUFFIXES
    if path.suffix.lower() in _KERAS_SUFFIXES and source != "keras":
        raise WeightsError(
            f"--weights {str(weights)!r} is a Keras file; it fits a --model keras:NAME "
            "(e.g. keras:ResNet50), not a timm or torchvision model."
        )
    if path.suffix.lower() not in suffixes or not path.is_file():
        raise WeightsError(
            f"--weights {str(weights)!r} is not 'default', 'none' or an existing weights file "
            f"({', '.join(suffixes)}); pass one of those."
        )
    return path


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
    if source == "keras":
        from headstart.backbones import _keras

        return _keras.create(name, choice, preprocess_overrides, model=model, weights=weights)
    if source == "timm":
        from headstart.backbones import _timm

        return _timm.create(name, choice, preprocess_overrides, model=model, weights=weights)
    if source == "tv":
        from headstart.backbones import _torchvision

        return _torchvision.create(name, choice, preprocess_overrides, model=model, weights=weights)
    from headstart.backbones import _local

    folder = _local.folder_for(source, name, need_weights=choice == "default")
    return _local.create(folder, choice, preprocess_overrides, model=model, weights=weights)


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
    if source == "keras":
        from headstart.backbones import _keras

        return _keras.preprocess_for(name, overrides)
    if source == "timm":
        from headstart.backbones import _timm

        return _timm.preprocess_for(name, overrides)
    if source == "tv":
        from headstart.backbones import _torchvision

        return _torchvision.preprocess_for(name, overrides)
    from headstart.backbones import _local

    folder = _local.folder_for(source, name, need_weights=False)
    return _local.preprocess_for(folder, overrides, model=model)


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
    if not isinstance(spec, Mapping):
        raise RunFolderError(
            f"Saved backbone spec must be a JSON object, got {type(spec).__name__}; the run "
            "folder's config.json is damaged."
        )
    family = spec.get("family")
    architecture = spec.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise RunFolderError(
            f"Saved backbone spec has no architecture (got {architecture!r}); the run folder's "
            "config.json is damaged."
        )
    if not isinstance(spec.get("weights_id"), str):
        raise RunFolderError("Saved backbone spec has no weights_id; config.json is damaged.")
    if family == "timm":
        from headstart.backbones import _timm

        return _timm.rebuild(spec, preprocess)
    if family == "torchvision":
        from headstart.backbones import _torchvision

        return _torchvision.rebuild(spec, preprocess)
    if family == "keras":
        from headstart.backbones import _keras

        return _keras.rebuild(spec, preprocess)
    raise RunFolderError(
        f"Saved backbone family {family!r} is unknown; expected 'timm', 'torchvision' or "
        "'keras'. "
        "The run folder was edited or written by a newer headstart."
    )


def list_backbones(pattern: str | None = None) -> list[tuple[str, str]]:
    """(name, one-line description) of the shipped, default and recommended backbones.

    Args:
        pattern: If given, instead list the timm and torchvision pretrained weights whose names
            match it (shell wildcards; a pattern without wildcards matches as a substring), so a
            user can find a name without leaving the CLI. Read from the registries, no download.
    """
    if not pattern:
        return list(_RECOMMENDED)
    import fnmatch

    import timm
    from timm.models import get_pretrained_cfg
    from torchvision import models

    glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
    rows: list[tuple[str, str]] = []
    for name in timm.list_pretrained():
        if fnmatch.fnmatch(name.lower(), glob.lower()):
            cfg = get_pretrained_cfg(name)
            size = "x".join(str(v) for v in cfg.input_size[1:]) if cfg else "?"
            rows.append((name, f"timm pretrained weights, {size} input"))
    for arch in models.list_models(module=models):
        for member in models.get_model_weights(arch):
            name = f"tv:{arch}.{member.name}"
            if fnmatch.fnmatch(name.lower(), glob.lower()) or fnmatch.fnmatch(arch, glob):
                acc = member.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
                rows.append((name, f"torchvision weights, ImageNet acc@1 {acc}"))
    return rows


_RECOMMENDED: tuple[tuple[str, str], ...] = (
    (EMBEDDED_MODEL, "shipped inside headstart: tiny, offline, for trying things out"),
    (
        DEFAULT_MODEL,
        "default: ConvNeXt-T pretrained on ImageNet-22k, 28M params, strong transfer on a CPU",
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


# ---------------------------------------------------------------------- shared helpers
def not_found(kind: str, name: str, candidates: Iterable[str], *, prefix: str = "") -> str:
    """The one-line unknown-name message, with a did-you-mean from ``candidates``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    guess = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    return f"Unknown {kind} '{prefix}{name}'.{guess} {_HINT}"
