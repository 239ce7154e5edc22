"""torchvision backbones (``tv:NAME[.WEIGHTS]``): the classifier cut off, weights read safely.

torchvision's own builders unpickle the downloaded checkpoint without restriction, so a
tampered file in the hub cache would run code. Here the checkpoint is downloaded with
torchvision's URL and hash check, then read by headstart's weights-only loader and loaded into
an architecture built with ``weights=None``: the same network, without the unpickling. One of
the backbone families the registry dispatches to (``headstart.backbones.registry.Family``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.backbones._base import Backbone, WeightsChoice, not_found, offline_message
from headstart.backbones._classifier import (
    PretrainedClassifier,
    from_state,
    from_weights_file,
    has_weights_file,
    spec_classifier_names,
)
from headstart.backbones._weights import (
    file_sha256,
    load_backbone_state,
    load_state_dict_file,
    offline,
    seeded_init,
    state_dict_sha256,
)
from headstart.errors import BackboneNotFoundError, RunFolderError, WeightsError
from headstart.preprocess import Preprocess, preprocess_from_torchvision

if TYPE_CHECKING:
    import torch
    from torchvision.models import WeightsEnum

__all__ = [
    "create",
    "list_cached",
    "list_weights",
    "preprocess_for",
    "pretrained_classifier",
    "rebuild",
    "resolve_name",
]

# Auxiliary training heads whose checkpoint keys are dropped along with the classifier.
_AUX_HEADS = {"inception_v3": ("AuxLogits",), "googlenet": ("aux1", "aux2")}
# DenseNet checkpoints predate the ban on "." in module names ("norm.1" is now "norm1"); this is
# torchvision's own rename (torchvision/models/densenet.py, _load_state_dict).
_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def resolve_name(name: str) -> tuple[str, WeightsEnum]:
    """(architecture, weights member) for ``resnet50`` or ``resnet50.IMAGENET1K_V2``."""
    from torchvision import models

    arch, _, member = name.partition(".")
    known = models.list_models(module=models)
    if arch not in known:
        raise BackboneNotFoundError(not_found("torchvision model", arch, known, prefix="tv:"))
    enum = models.get_model_weights(arch)
    if not member or member == "DEFAULT":
        return arch, enum.DEFAULT
    try:
        return arch, enum[member]
    except KeyError:
        names = ", ".join(f"tv:{arch}.{m.name}" for m in enum)
        raise BackboneNotFoundError(
            f"Unknown torchvision weights '{member}' for {arch}; available: {names}."
        ) from None


def preprocess_for(
    source: str, name: str, overrides: Mapping[str, Any] | None, *, model: str
) -> Preprocess:
    """The preprocessing of a torchvision name, from its weights enum (no download)."""
    _, member = resolve_name(name)
    return preprocess_from_torchvision(member, overrides=overrides)


def _model_args(arch: str, member: WeightsEnum) -> dict[str, Any]:
    """Construction arguments the pretrained weights imply (torchvision's builders set them)."""
    if arch in ("inception_v3", "googlenet"):
        # With weights, torchvision converts ImageNet-normalised input to the weights' own
        # normalisation inside the model; the auxiliary heads are training-only.
        return {"aux_logits": False, "transform_input": True}
    if arch.startswith("vit_"):
        return {"image_size": int(member.meta["min_size"][0])}
    if arch.startswith("maxvit"):
        return {"input_size": [int(v) for v in member.meta["min_size"]]}
    return {}


def _build(arch: str, model_args: Mapping[str, Any], *, init: bool) -> torch.nn.Module:
    from torchvision import models

    kwargs: dict[str, Any] = dict(model_args)
    if arch in ("inception_v3", "googlenet"):
        kwargs["init_weights"] = init  # explicit, or torchvision warns about a future change
    if "input_size" in kwargs:
        kwargs["input_size"] = tuple(kwargs["input_size"])
    if init:
        with seeded_init(0):
            return models.get_model(arch, weights=None, **kwargs)
    return models.get_model(arch, weights=None, **kwargs)


def _cut_classifier(arch: str, model: torch.nn.Module) -> tuple[str, int]:
    """Replace the final classifier by the identity; return its dotted name and feature width."""
    from torch import nn

    if arch.startswith("squeezenet"):
        # A final 1x1 conv classifier: keep global-average-pooled 512-d features of .features
        # (the model's forward flattens after the classifier).
        conv = model.get_submodule("classifier.1")
        assert isinstance(conv, nn.Conv2d)  # torchvision's layout, not user input
        model.classifier = nn.AdaptiveAvgPool2d((1, 1))
        return "classifier", int(conv.in_channels)
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:  # pragma: no cover - every torchvision classifier ends in a Linear
        raise RuntimeError(f"no Linear classifier found in torchvision {arch}")
    name, linear = last
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return name, int(linear.in_features)


def _adapt_state(arch: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not arch.startswith("densenet"):
        return state
    out = {}
    for key, value in state.items():
        match = _DENSENET_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def create(
    source: str,
    name: str,
    choice: WeightsChoice,
    overrides: Mapping[str, Any] | None,
    *,
    model: str,
    weights: str | Path,
) -> Backbone:
    """A torchvision backbone with pretrained, random or file weights."""
    arch, member = resolve_name(name)
    preprocess = preprocess_from_torchvision(member, overrides=overrides)
    model_args = _model_args(arch, member)
    module = _build(arch, model_args, init=choice == "none")
    classifier, width = _cut_classifier(arch, module)
    drop = [classifier, *_AUX_HEADS.get(arch, ())]
    if choice == "none":
        weights_id = f"random:sha256:{state_dict_sha256(module.state_dict())}"
    else:
        if choice == "default":
            path = _download(member, f"tv:{arch}.{member.name}")
            what = f"tv:{arch}.{member.name}"
            weights_id = f"tv:{type(member).__name__}.{member.name}"
        else:
            path, what = choice, f"'{choice}'"
            weights_id = f"sha256:{file_sha256(choice)}"
        state = _adapt_state(arch, load_state_dict_file(path))
        load_backbone_state(module, state, drop=drop, what=what)
    spec = {
        "family": "torchvision",
        "architecture": arch,
        "model_args": model_args,
        "model": model,
        "weights": str(weights),
        "weights_id": weights_id,
        "classifier": classifier,
    }
    return Backbone(module.eval(), preprocess, width, spec)


def _download(member: WeightsEnum, label: str) -> Path:
    """The weights' checkpoint in torch's hub cache, downloaded (hash-checked) if missing."""
    from urllib.parse import urlparse

    import torch.hub

    url = member.url
    filename = Path(urlparse(url).path).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if cached.is_file():
        return cached
    if offline(urlparse(url).hostname or ""):
        raise BackboneNotFoundError(offline_message(label))
    match = torch.hub.HASH_REGEX.search(filename)
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), match.group(1) if match else None)
    except OSError as exc:
        raise BackboneNotFoundError(offline_message(label, exc)) from None
    except RuntimeError as exc:  # hash mismatch: a corrupted or substituted download
        raise WeightsError(
            f"Download of {label} failed its hash check ({exc}); try again later."
        ) from None
    return cached


def rebuild(spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
    """The architecture of a saved torchvision backbone, default-initialised, never downloading."""
    from torchvision import models

    arch = str(spec["architecture"])
    known = models.list_models(module=models)
    if arch not in known:
        raise BackboneNotFoundError(
            not_found("torchvision model", arch, known, prefix="tv:")
            + " The run was saved with a different torchvision version."
        )
    args = spec.get("model_args") or {}
    allowed = {"aux_logits", "transform_input", "image_size", "input_size"}
    if not isinstance(args, Mapping) or not set(args) <= allowed:
        raise RunFolderError(
            f"Saved torchvision model_args {args!r} are invalid; only {sorted(allowed)} are "
            "written by headstart."
        )
    for key, value in args.items():
        plain = isinstance(value, (bool, int)) or (
            isinstance(value, list) and all(isinstance(v, int) for v in value)
        )
        if not plain:
            raise RunFolderError(f"Saved torchvision model_args[{key!r}]={value!r} is invalid.")
    module = _build(arch, args, init=False)
    classifier, width = _cut_classifier(arch, module)
    if spec.get("classifier") not in (None, classifier):
        raise RunFolderError(
            f"Saved backbone says the classifier of {arch} is {spec.get('classifier')!r}, but "
            f"this torchvision's is {classifier!r}; the run needs its torchvision version."
        )
    return Backbone(module.eval(), preprocess, width, dict(spec))


def pretrained_classifier(
    backbone: Backbone, source: str, name: str
) -> PretrainedClassifier | None:
    """The torchvision model's pretrained head, with the weights enum's category names."""
    if has_weights_file(backbone.spec):
        return from_weights_file(backbone)
    arch, member = resolve_name(name)
    path = _download(member, f"tv:{arch}.{member.name}")  # cached: the backbone's own
    state = load_state_dict_file(path)
    labels = member.meta.get("categories")
    names = spec_classifier_names(backbone.spec.get("classifier"))
    return from_state(backbone, state, names, labels, f"torchvision {arch}.{member.name} head")


def list_cached() -> list[str]:
    """torchvision weights whose checkpoint is in torch's hub cache (``tv:ARCH.WEIGHTS``): the
    torchvision models that work offline. Reads the cache folder and the weights enums only."""
    from urllib.parse import urlparse

    import torch.hub

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if not present:
        return []  # without importing torchvision's model zoo: seconds on a busy machine
    from torchvision import models

    return [
        f"tv:{arch}.{member.name}"
        for arch in models.list_models(module=models)
        for member in models.get_model_weights(arch)
        if Path(urlparse(member.url).path).name in present
    ]


def list_weights(glob: str) -> list[tuple[str, str]]:
    """torchvision's weights (``tv:ARCH.WEIGHTS``) whose names or architectures match ``glob``."""
    from torchvision import models

    rows: list[tuple[str, str]] = []
    for arch in models.list_models(module=models):
        for member in models.get_model_weights(arch):
            name = f"tv:{arch}.{member.name}"
            if fnmatch.fnmatch(name.lower(), glob.lower()) or fnmatch.fnmatch(arch, glob):
                acc = member.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
                rows.append((name, f"torchvision weights, ImageNet acc@1 {acc}"))
    return rows
