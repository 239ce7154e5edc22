"""The vocabulary every backbone family shares: names, weights choices, the backbone, messages.

This module is the leaf of ``headstart.backbones``: the families (``_timm``, ``_torchvision``,
``_keras``, ``_local``) and the registry that dispatches to them all import it, and it imports
none of them, so a family never has to import the registry that imports it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from headstart.backbones._weights import WEIGHT_SUFFIXES
from headstart.errors import BackboneNotFoundError, RunFolderError, WeightsError

if TYPE_CHECKING:
    import torch

    from headstart.preprocess import Preprocess

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL",
    "KERAS_SUFFIXES",
    "SOURCES",
    "Backbone",
    "WeightsChoice",
    "check_spec",
    "not_found",
    "offline_message",
    "parse_model_name",
    "parse_weights",
]

DEFAULT_MODEL = "convnext_tiny.in12k_ft_in1k"
"""Strong modern transfer backbone (ImageNet-12k pretraining, fine-tuned on ImageNet-1k; 28M
params), fine on a CPU."""

EMBEDDED_MODEL = "headstart-tiny"
"""Shipped inside the package, so headstart works with no network at all."""

SOURCES: tuple[str, ...] = ("timm", "hf-hub", "local-dir", "tv", "keras", "embedded")

WeightsChoice = Literal["default", "none"] | Path
"""``"default"`` (the pretrained weights), ``"none"`` (seeded random init) or a weights file."""

KERAS_SUFFIXES: tuple[str, ...] = (".h5", ".keras")
"""Keras' own files, read only for ``keras:`` models (headstart.backbones._keras)."""

_PREFIXES = {
    "timm": "timm",
    "hf-hub": "hf-hub",
    "hf_hub": "hf-hub",  # timm's historical spelling
    "local-dir": "local-dir",
    "tv": "tv",
    "torchvision": "tv",
    "keras": "keras",
}
_HINT = "Run `headstart backbones` to see the names."


@dataclass
class Backbone:
    """A pretrained network that maps preprocessed images to pooled features.

    Attributes:
        module: Maps a preprocessed ``[N, 3, H, W]`` batch to ``[N, num_features]`` features; it
            is returned in eval mode, because a frozen backbone must never update BatchNorm
            statistics (docs/why.md, story 2).
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
    if text.lower().endswith(KERAS_SUFFIXES):
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
    if isinstance(weights, str) and weights.strip().lower() in ("default", "none"):
        return "default" if weights.strip().lower() == "default" else "none"
    path = Path(weights).expanduser()
    suffixes = KERAS_SUFFIXES if source == "keras" else WEIGHT_SUFFIXES
    if path.suffix.lower() in KERAS_SUFFIXES and source != "keras":
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


def check_spec(spec: object) -> Mapping[str, Any]:
    """A saved backbone spec, checked for the keys every family's rebuild relies on.

    The spec comes from a run folder's config.json, which may have been edited or sent by a
    stranger, so it is validated as data before any family builds from it.

    Raises:
        RunFolderError: Not an object, or no architecture or weights_id.
    """
    if not isinstance(spec, Mapping):
        raise RunFolderError(
            f"Saved backbone spec must be a JSON object, got {type(spec).__name__}; the run "
            "folder's config.json is damaged."
        )
    architecture = spec.get("architecture")
    if not isinstance(architecture, str) or not architecture:
        raise RunFolderError(
            f"Saved backbone spec has no architecture (got {architecture!r}); the run folder's "
            "config.json is damaged."
        )
    if not isinstance(spec.get("weights_id"), str):
        raise RunFolderError("Saved backbone spec has no weights_id; config.json is damaged.")
    return spec


def not_found(kind: str, name: str, candidates: Iterable[str], *, prefix: str = "") -> str:
    """The one-line unknown-name message, with a did-you-mean from ``candidates``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    guess = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    return f"Unknown {kind} '{prefix}{name}'.{guess} {_HINT}"


def offline_message(what: str, exc: BaseException | None = None) -> str:
    """One line: the pretrained weights cannot be had, and what works without a network."""
    reason = f" ({type(exc).__name__})" if exc is not None else ""
    return (
        f"Cannot get the pretrained weights of {what}: no connection and not in the local "
        f"cache{reason}. Offline, use --model headstart-tiny (shipped), --model local-dir:PATH, "
        "--weights PATH.safetensors, or --weights none (random init)."
    )
