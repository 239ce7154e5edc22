"""timm backbones: registry names, pretrained configs, and ``num_classes=0`` feature models.

One of the backbone families the registry dispatches to (``headstart.backbones.registry.Family``):
``create``, ``preprocess_for``, ``rebuild``, ``pretrained_classifier`` and ``list_weights``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from headstart.backbones._base import (
    EMBEDDED_MODEL,
    Backbone,
    WeightsChoice,
    not_found,
    offline_message,
)
from headstart.backbones._classifier import (
    PretrainedClassifier,
    from_state,
    from_weights_file,
    has_weights_file,
    spec_classifier_names,
)
from headstart.backbones._weights import (
    cached_weights_error,
    file_sha256,
    hf_cache_only,
    load_backbone_state,
    load_state_dict_file,
    offline,
    seeded_init,
    state_dict_sha256,
)
from headstart.errors import BackboneNotFoundError, RunFolderError
from headstart.preprocess import Preprocess, resolve_preprocess

__all__ = [
    "SAFE_CFG_KEYS",
    "build_feature_model",
    "check_model_args",
    "classifier_names",
    "classifier_spec",
    "create",
    "list_cached",
    "list_weights",
    "preprocess_for",
    "pretrained_classifier",
    "rebuild",
    "safe_pretrained_cfg",
]

# pretrained_cfg keys that describe preprocessing or the architecture. Everything else (url,
# file, hf_hub_id, hf_hub_filename, state_dict, source, custom_load, ...) is a weight location or
# loading instruction and is never passed on, so a config can never make timm fetch or unpickle.
SAFE_CFG_KEYS = frozenset(
    {
        "architecture",
        "tag",
        "input_size",
        "test_input_size",
        "min_input_size",
        "fixed_input_size",
        "interpolation",
        "crop_pct",
        "test_crop_pct",
        "crop_mode",
        "mean",
        "std",
        "num_classes",
        "pool_size",
        "test_pool_size",
        "first_conv",
        "classifier",
        "label_names",
        "license",
    }
)
_TUPLE_KEYS = ("input_size", "test_input_size", "min_input_size", "mean", "std", "pool_size")
# create_model arguments that load, locate or download weights, or change what the model returns.
# (Not a substring match: "drop_path_rate" and "pretrained_window_sizes" are ordinary arguments.)
_FORBIDDEN_ARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_strict",
        "checkpoint_path",
        "cache_dir",
        "features_only",
        "feature_cfg",
        "feature_cls",
        "out_indices",
        "scriptable",
        "exportable",
        "no_jit",
    }
)
_FORBIDDEN_ARG_SUFFIXES = ("_path", "_url", "_uri", "_file", "_dir", "_hub_id")
_HF_HOST = "huggingface.co"
# The files timm loads a hub checkpoint from: the safetensors file or its pickle, and open_clip's
# two names (timm.models._hub: load_state_dict_from_hf and its safe alternatives).
_HF_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)


def resolve_name(name: str) -> tuple[str, str, dict[str, Any]]:
    """(architecture, full name with tag, pretrained cfg) from the registry, no download."""
    import timm
    from timm.models import get_pretrained_cfg, split_model_name_tag

    arch, tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        # The shipped backbone first: a typo in the one name that works offline
        # ('headstrat-tiny') is the likeliest, and timm's registry would suggest a stranger.
        candidates = [EMBEDDED_MODEL, *timm.list_models(), *timm.list_pretrained()]
        raise BackboneNotFoundError(not_found("backbone", name, candidates))
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:
        tags = timm.list_pretrained(f"{arch}.*")
        raise BackboneNotFoundError(
            f"Unknown pretrained tag '{tag}' for {arch}; available: "
            f"{', '.join(tags[:6]) or 'none'}{', ...' if len(tags) > 6 else ''}. "
            f"Run `headstart backbones '{arch}.*'` to see them all."
        ) from None
    if cfg is None:
        return arch, arch, {}
    full = f"{arch}.{cfg.tag}" if cfg.tag else arch
    return arch, full, cfg.to_dict()


def preprocess_for(
    source: str, name: str, overrides: Mapping[str, Any] | None, *, model: str
) -> Preprocess:
    """The preprocessing of a timm registry name, from its pretrained_cfg alone."""
    _, full, cfg = resolve_name(name)
    return resolve_preprocess(cfg, overrides=overrides, source=_source(full, cfg))


def _source(full: str, cfg: Mapping[str, Any]) -> str:
    return f"timm pretrained_cfg {full}" if cfg else f"timm defaults ({full} has no config)"


def create(
    source: str,
    name: str,
    choice: WeightsChoice,
    overrides: Mapping[str, Any] | None,
    *,
    model: str,
    weights: str | Path,
) -> Backbone:
    """A timm registry backbone with pretrained, random or file weights."""
    import timm

    arch, full, cfg = resolve_name(name)
    preprocess = resolve_preprocess(cfg, overrides=overrides, source=_source(full, cfg))
    safe_cfg = safe_pretrained_cfg(cfg)
    if choice == "default":
        if not any(cfg.get(k) for k in ("hf_hub_id", "url", "file")):
            raise BackboneNotFoundError(
                f"timm model '{full}' has no pretrained weights; pass --weights none (random "
                "init), --weights PATH.safetensors, or pick a tagged name (`headstart backbones`)."
            )
        no_network = offline(_HF_HOST)
        if no_network and not _maybe_cached(cfg):
            # Said before the model is built: building a large one only to fail took seconds.
            raise BackboneNotFoundError(offline_message(f"'{full}'"))
        try:
            with hf_cache_only(no_network):
                module = timm.create_model(full, pretrained=True, num_classes=0)
        except OSError as exc:  # hub, urllib and cache misses are all OSErrors
            raise BackboneNotFoundError(offline_message(f"'{full}'", exc)) from None
        except Exception as exc:  # a cached file timm refused or could not load
            error = cached_weights_error(f"'{full}'", _cache_location(cfg), exc)
            if error is None:
                raise
            raise error from None
        weights_id = f"timm:{full}"
    else:
        module = build_feature_model(arch, safe_cfg, {}, seeded=True)
        if choice == "none":
            weights_id = f"random:sha256:{state_dict_sha256(module.state_dict())}"
        else:
            state = load_state_dict_file(choice)
            load_backbone_state(
                module, state, drop=classifier_names(safe_cfg, arch), what=f"'{choice}'"
            )
            weights_id = f"sha256:{file_sha256(choice)}"
    spec = {
        "family": "timm",
        "architecture": arch,
        "model_args": {},
        "model": model,
        "weights": str(weights),
        "weights_id": weights_id,
        "classifier": classifier_spec(safe_cfg, arch),
        "pretrained_cfg": safe_cfg,
    }
    return Backbone(module.eval(), preprocess, feature_width(module), spec)


def _cache_location(cfg: Mapping[str, Any]) -> str:
    """Where timm keeps these default weights: the Hugging Face cache's folder of the repo, or
    torch.hub's checkpoints folder for weights given by URL."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import constants

        repo = str(hub_id).split("@")[0].replace("/", "--")
        return f"{Path(constants.HF_HUB_CACHE) / f'models--{repo}'}"
    import torch.hub

    return str(Path(torch.hub.get_dir()) / "checkpoints")


def _maybe_cached(cfg: Mapping[str, Any]) -> bool:
    """False only when the weights are surely not in the local Hugging Face cache: a hub id
    with none of the files timm would load from it (its ``hf_hub_filename``, or one of
    :data:`_HF_WEIGHT_FILES`). Weights behind a URL may be elsewhere: True, and timm finds out."""
    repo = cfg.get("hf_hub_id")
    if not repo:
        return True
    from huggingface_hub import try_to_load_from_cache

    names = [cfg.get("hf_hub_filename"), *_HF_WEIGHT_FILES]
    return any(isinstance(try_to_load_from_cache(str(repo), name), str) for name in names if name)


def rebuild(spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
    """The architecture of a saved timm backbone, random-initialised, never downloading."""
    import timm

    arch = str(spec["architecture"])
    if not timm.is_model(arch):
        raise BackboneNotFoundError(
            not_found("timm architecture", arch, timm.list_models())
            + " The run was saved with a different timm version."
        )

    def fail(message: str) -> None:
        raise RunFolderError(f"Saved backbone spec is invalid: {message}")

    model_args = check_model_args(spec.get("model_args") or {}, fail)
    raw_cfg = spec.get("pretrained_cfg") or {}
    if not isinstance(raw_cfg, Mapping):
        fail(f"pretrained_cfg must be an object, got {type(raw_cfg).__name__}.")
    safe_cfg = safe_pretrained_cfg(raw_cfg)
    module = build_feature_model(arch, safe_cfg, model_args, seeded=False)
    new_spec = dict(spec)
    return Backbone(module.eval(), preprocess, feature_width(module), new_spec)


def build_feature_model(
    arch: str, safe_cfg: Mapping[str, Any], model_args: Mapping[str, Any], *, seeded: bool
) -> Any:
    """``timm.create_model(arch, pretrained=False, num_classes=0)`` with only safe cfg keys.

    The cfg is passed because timm derives construction arguments from it (e.g. ``img_size``
    for fixed-size models); with ``pretrained=False`` and no location keys nothing is fetched.
    """
    import timm

    cfg = {
        k: (tuple(v) if k in _TUPLE_KEYS and isinstance(v, list) else v)
        for k, v in safe_cfg.items()
    }
    cfg.setdefault("architecture", arch)
    kwargs: dict[str, Any] = dict(model_args)
    try:
        if seeded:
            with seeded_init(0):
                return timm.create_model(
                    arch, pretrained=False, num_classes=0, pretrained_cfg=cfg, **kwargs
                )
        return timm.create_model(
            arch, pretrained=False, num_classes=0, pretrained_cfg=cfg, **kwargs
        )
    except TypeError as exc:  # an unknown keyword in model_args or the cfg
        raise BackboneNotFoundError(
            f"Cannot build timm '{arch}' with the given arguments ({exc}); the config was "
            "written for a different timm version."
        ) from None


def feature_width(module: Any) -> int:
    """Width of the pooled pre-logits features a ``num_classes=0`` timm model returns."""
    width = getattr(module, "head_hidden_size", None) or module.num_features
    return int(width)


def safe_pretrained_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able preprocessing/architecture keys of a cfg; location keys are dropped."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in SAFE_CFG_KEYS and value is not None and _is_plain(value):
            out[key] = _jsonable(value)
    return out


def classifier_names(safe_cfg: Mapping[str, Any], arch: str) -> list[str]:
    """The classifier module name(s) of the full model, whose keys belong to the old task."""
    value = classifier_spec(safe_cfg, arch)
    if isinstance(value, str):
        return [value]
    return [v for v in value or [] if isinstance(v, str)]


def classifier_spec(safe_cfg: Mapping[str, Any], arch: str) -> str | list[str] | None:
    """``spec["classifier"]``: the cfg's classifier name (a list for distilled two-head models)."""
    value = safe_cfg.get("classifier")
    if value is None:
        # The registry knows the classifier of every architecture, e.g. "fc" or "head.fc".
        from timm.models import get_pretrained_cfg

        try:
            registered = get_pretrained_cfg(arch)
        except RuntimeError:
            registered = None
        value = registered.classifier if registered is not None else None
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value) if value is not None else None


def check_model_args(args: Any, fail: Any) -> dict[str, Any]:
    """Validate ``model_args`` from a file: plain JSON values, no loading or download keys."""
    if not isinstance(args, Mapping):
        fail(f"model_args must be an object, got {type(args).__name__}.")
    out: dict[str, Any] = {}
    for key, value in args.items():
        low = str(key).lower()
        if low == "num_classes":
            continue  # timm records the old task's classes; a backbone always has none (0)
        if low in _FORBIDDEN_ARGS or low.endswith(_FORBIDDEN_ARG_SUFFIXES):
            fail(f"model_args key {key!r} is not allowed (it loads or locates weights).")
        if not _is_plain(value):
            fail(f"model_args[{key!r}] must be a number, string, bool or list, got {value!r}.")
        if low == "in_chans" and value != 3:
            fail(f"model_args in_chans={value!r}; headstart feeds RGB images (3 channels).")
        out[str(key)] = _jsonable(value)
    return out


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def pretrained_classifier(
    backbone: Backbone, source: str, name: str
) -> PretrainedClassifier | None:
    """The timm model's pretrained head, with ImageNet's class names where timm knows them."""
    if has_weights_file(backbone.spec):
        return from_weights_file(backbone)
    import timm
    from timm.data import ImageNetInfo, infer_imagenet_subset

    weights_id = str(backbone.spec.get("weights_id", ""))
    if not weights_id.startswith("timm:"):
        return None
    full = weights_id.removeprefix("timm:")
    with hf_cache_only(True):  # the backbone's own weights are in the cache
        model = timm.create_model(full, pretrained=True)
    labels: Sequence[str] | None = None
    subset = infer_imagenet_subset(model)
    if subset:
        info = ImageNetInfo(subset)
        labels = [info.index_to_description(i) for i in range(info.num_classes())]
    names = spec_classifier_names(backbone.spec.get("classifier"))
    return from_state(backbone, model.state_dict(), names, labels, f"timm {full} classifier")


def list_weights(glob: str) -> list[tuple[str, str]]:
    """timm's pretrained weights whose names match ``glob``, read from its registry."""
    import timm
    from timm.models import get_pretrained_cfg

    rows: list[tuple[str, str]] = []
    for name in timm.list_pretrained():
        if fnmatch.fnmatch(name.lower(), glob.lower()):
            cfg = get_pretrained_cfg(name)
            size = "x".join(str(v) for v in cfg.input_size[1:]) if cfg else "?"
            rows.append((name, f"timm pretrained weights, {size} input"))
    return rows


def list_cached() -> list[str]:
    """timm weights in the local Hugging Face cache (``timm/NAME`` repositories holding a
    weights file): the timm models that work offline. Reads the cache folder only."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        repos = scan_cache_dir(constants.HF_HUB_CACHE).repos  # the hub's setting when called
    except Exception:  # no cache folder yet, or one the hub cannot read: nothing is cached
        return []
    names = []
    for repo in repos:
        if repo.repo_type != "model" or not repo.repo_id.startswith("timm/"):
            continue
        files = {f.file_name for revision in repo.revisions for f in revision.files}
        if files & set(_HF_WEIGHT_FILES):
            names.append(repo.repo_id.split("/", 1)[1])
    return sorted(names)
