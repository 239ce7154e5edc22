"""Model folders (``local-dir:``, ``hf-hub:``, the shipped ``headstart-tiny``), read as data.

A model folder is timm's layout: ``config.json`` (``architecture``, ``model_args``,
``pretrained_cfg``) next to ``model.safetensors``. timm's own loader trusts that config: it passes
it to ``create_model``, where location keys (``hf_hub_id``, ``url``, ``file``) can trigger a
download, and it may unpickle a ``pytorch_model.bin``. A folder can come from anyone, so this
loader reads config.json as plain data instead: the architecture must be a registered timm name,
only known keys with plain JSON values are used, the network is built with ``pretrained=False``,
and the tensors go through the safe loader. A headstart run folder has the same layout (plus a
``headstart`` section), so a trained run can serve as a backbone too: the one its head reads,
pooled at the stage it was trained on (``--layer``), not at the last stage. One of the backbone
families the registry dispatches to (``headstart.backbones.registry.Family``): the ``hf-hub``,
``local-dir`` and ``embedded`` sources all name a folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headstart.backbones import _timm, _torchvision
from headstart.backbones._base import (
    EMBEDDED_MODEL,
    Backbone,
    WeightsChoice,
    check_spec,
    offline_message,
)
from headstart.backbones._classifier import (
    CLASSIFIER_FILE,
    PretrainedClassifier,
    from_state,
    from_weights_file,
    has_weights_file,
    spec_classifier_names,
)
from headstart.backbones._timm import (
    SAFE_CFG_KEYS,
    build_feature_model,
    check_model_args,
    classifier_names,
    classifier_spec,
    feature_width,
    safe_pretrained_cfg,
)
from headstart.backbones._weights import (
    file_sha256,
    hf_cache_only,
    load_backbone_state,
    load_state_dict_file,
    offline,
    seeded_init,
    state_dict_sha256,
)
from headstart.backbones.layers import select_layer
from headstart.errors import BackboneNotFoundError, HeadstartError
from headstart.preprocess import Preprocess, resolve_preprocess

__all__ = [
    "EMBEDDED_DIR",
    "create",
    "folder_for",
    "list_cached",
    "list_weights",
    "preprocess_for",
    "pretrained_classifier",
    "read_config",
    "rebuild",
]

EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"
_CONFIG = "config.json"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# A headstart run folder stores a non-linear head under this prefix (headstart.estimator).
_HEADSTART_HEAD = "headstart_head"
_HF_HOST = "huggingface.co"


def folder_for(source: str, name: str, *, need_weights: bool) -> Path:
    """The folder a ``local-dir``, ``embedded`` or ``hf-hub`` name refers to.

    For ``hf-hub`` this downloads config.json (and, if ``need_weights``, the weights) into the
    huggingface cache; nothing from the repository is executed.
    """
    if source == "embedded":
        folder = EMBEDDED_DIR / name
        if not (folder / _CONFIG).is_file():
            raise BackboneNotFoundError(
                f"The shipped model '{EMBEDDED_MODEL}' is missing from this installation "
                f"({folder}); reinstall headstart, or use --model local-dir:PATH."
            )
        return folder
    if source == "local-dir":
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise BackboneNotFoundError(
                f"local-dir '{name}' is not a folder; pass a folder holding config.json and "
                "model.safetensors (timm's save / push_to_hub layout, or a headstart run)."
            )
        return folder
    if source == "hf-hub":
        return _hf_folder(name, need_weights=need_weights)
    raise BackboneNotFoundError(f"No model folder for source {source!r}.")  # pragma: no cover


def _hf_folder(repo: str, *, need_weights: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise BackboneNotFoundError(
            f"hf-hub name '{repo}' must be hf-hub:ORG/REPO (optionally @REVISION)."
        )
    cache_only = offline(_HF_HOST)

    def fetch(filename: str) -> Path:
        with hf_cache_only(cache_only):
            return Path(hf_hub_download(repo_id, filename, revision=revision or None))

    try:
        config = fetch(_CONFIG)
        if need_weights:
            try:
                fetch(_WEIGHT_FILES[0])
            except LocalEntryNotFoundError as missing:
                # Offline (or the hub unreachable), the cache is all there is, and older timm
                # uploads (and caches filled from them) hold the .bin alone. It is read as
                # tensors only (weights_file, then load_state_dict_file: weights_only=True),
                # after the safetensors file wherever both are cached.
                try:
                    fetch(_WEIGHT_FILES[1])
                except LocalEntryNotFoundError:
                    raise missing from None
            except EntryNotFoundError:  # no safetensors in the repo: the weights-only .bin
                fetch(_WEIGHT_FILES[1])
    except LocalEntryNotFoundError as exc:
        raise BackboneNotFoundError(offline_message(f"'hf-hub:{repo}'", exc)) from None
    except RepositoryNotFoundError:
        raise BackboneNotFoundError(
            f"Hugging Face repository '{repo_id}' does not exist or is private; check the "
            "name, or download it and use --model local-dir:PATH."
        ) from None
    except EntryNotFoundError:
        raise BackboneNotFoundError(
            f"Hugging Face repository '{repo_id}' has no timm config.json/model.safetensors; "
            "only timm-format repositories can be used."
        ) from None
    except OSError as exc:
        raise BackboneNotFoundError(offline_message(f"'hf-hub:{repo}'", exc)) from None
    return config.parent


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as a JSON object, or a one-line error (:func:`headstart.runs.read_config`)."""
    from headstart.runs import read_config as read

    return read(folder, model_folder=True)


class _Folder:
    """What a model folder's config says, validated: architecture, args, cfg, preprocessing."""

    def __init__(self, folder: Path) -> None:
        import timm

        self.folder = folder
        config = read_config(folder)
        path = folder / _CONFIG
        headstart = config.get("headstart") if isinstance(config.get("headstart"), dict) else None
        self.saved_spec: Mapping[str, Any] | None = None
        if "architecture" not in config and headstart and headstart.get("backbone"):
            # A headstart run over a torchvision backbone: its spec says how to rebuild it.
            spec = headstart["backbone"]
            if not isinstance(spec, Mapping):
                raise BackboneNotFoundError(f"{path}: headstart.backbone must be an object.")
            self.saved_spec = spec
        architecture = config.get("architecture")
        if self.saved_spec is None:
            if not isinstance(architecture, str) or not timm.is_model(architecture):
                raise BackboneNotFoundError(
                    f"{path}: architecture {architecture!r} is not a timm model name; only "
                    "architectures registered in timm can be built from a folder."
                )

        def fail(message: str) -> None:
            raise BackboneNotFoundError(f"{path}: {message}")

        self.architecture = str(architecture) if self.saved_spec is None else ""
        self.model_args = check_model_args(config.get("model_args") or {}, fail)
        raw_cfg = config.get("pretrained_cfg")
        if raw_cfg is None:  # timm's legacy single-dict layout keeps the keys at the top
            raw_cfg = {k: v for k, v in config.items() if k in SAFE_CFG_KEYS}
        if not isinstance(raw_cfg, Mapping):
            fail(f"pretrained_cfg must be an object, got {type(raw_cfg).__name__}.")
        self.cfg = safe_pretrained_cfg(raw_cfg)
        self.cfg.pop("architecture", None)
        if self.model_args.get("img_size") is not None and self.cfg.get("fixed_input_size"):
            size = self.model_args["img_size"]  # timm: the args decide a fixed input size
            size = [size, size] if isinstance(size, int) else list(size)
            self.cfg["input_size"] = [3, *size]
        self.saved_preprocess = headstart.get("preprocess") if headstart else None
        # The stage a run's head reads (its --layer), None for the last one or a timm folder.
        saved_backbone = headstart.get("backbone") if headstart else None
        self.layer = saved_backbone.get("layer") if isinstance(saved_backbone, Mapping) else None

    def preprocess(self, overrides: Mapping[str, Any] | None, label: str) -> Preprocess:
        if isinstance(self.saved_preprocess, Mapping):
            # A headstart run records its exact preprocessing (BGR, scale...), timm's cfg cannot.
            try:
                saved = Preprocess.from_dict(self.saved_preprocess)
            except HeadstartError as exc:
                raise BackboneNotFoundError(f"{self.folder / _CONFIG}: {exc}") from None
            return saved.with_overrides(overrides)
        return resolve_preprocess(self.cfg, overrides=overrides, source=f"{label} config.json")

    def weights_file(self) -> Path:
        for name in _WEIGHT_FILES:
            if (self.folder / name).is_file():
                return self.folder / name
        raise BackboneNotFoundError(
            f"'{self.folder}' has no {' or '.join(_WEIGHT_FILES)}; put the weights next to "
            "config.json, or pass --weights PATH.safetensors / --weights none."
        )


def _label(source_model: str, folder: Path) -> str:
    if source_model == EMBEDDED_MODEL:
        return f"embedded {EMBEDDED_MODEL}"
    if source_model.startswith(("hf-hub:", "hf_hub:")):
        return source_model
    return f"local-dir {folder}"


def preprocess_for(
    source: str, name: str, overrides: Mapping[str, Any] | None, *, model: str
) -> Preprocess:
    """A folder's preprocessing from its config.json alone (no weights read, no model built).

    For ``hf-hub:`` only config.json is fetched.
    """
    folder = folder_for(source, name, need_weights=False)
    info = _Folder(folder)
    return info.preprocess(overrides, _label(model, folder))


def create(
    source: str,
    name: str,
    choice: WeightsChoice,
    overrides: Mapping[str, Any] | None,
    *,
    model: str,
    weights: str | Path,
) -> Backbone:
    """The backbone of a model folder, with its own weights, random init or a given file."""
    folder = folder_for(source, name, need_weights=choice == "default")
    info = _Folder(folder)
    label = _label(model, folder)
    preprocess = info.preprocess(overrides, label)
    if info.saved_spec is not None:
        return _create_from_run(info, preprocess, choice, model=model, weights=weights)
    arch = info.architecture
    module = build_feature_model(arch, info.cfg, info.model_args, seeded=True)
    if choice == "none":
        weights_id = f"random:sha256:{state_dict_sha256(module.state_dict())}"
    else:
        path = info.weights_file() if choice == "default" else choice
        drop = [*classifier_names(info.cfg, arch), _HEADSTART_HEAD]
        load_backbone_state(module, load_state_dict_file(path), drop=drop, what=f"'{path}'")
        weights_id = f"sha256:{file_sha256(path)}"
    spec = {
        "family": "timm",
        "architecture": arch,
        "model_args": info.model_args,
        "model": model,
        "weights": str(weights),
        "weights_id": weights_id,
        "classifier": classifier_spec(info.cfg, arch),
        "pretrained_cfg": info.cfg,
    }
    backbone = Backbone(module.eval(), preprocess, feature_width(module), spec)
    return backbone if info.layer is None else select_layer(backbone, info.layer)


def _create_from_run(
    info: _Folder,
    preprocess: Preprocess,
    choice: WeightsChoice,
    *,
    model: str,
    weights: str | Path,
) -> Backbone:
    """A headstart run's torchvision backbone, rebuilt from its spec and loaded from its file."""
    spec = dict(info.saved_spec or {})
    if spec.get("family") != "torchvision":
        raise BackboneNotFoundError(
            f"{info.folder / _CONFIG} has no timm architecture and a {spec.get('family')!r} "
            "backbone spec; it was not written by headstart."
        )
    spec["weights_id"] = str(spec.get("weights_id") or "")
    with seeded_init(0):
        backbone = rebuild(check_spec(spec), preprocess)
    if choice == "none":
        weights_id = f"random:sha256:{state_dict_sha256(backbone.module.state_dict())}"
    else:
        path = info.weights_file() if choice == "default" else choice
        drop = [str(spec.get("classifier") or ""), _HEADSTART_HEAD]
        load_backbone_state(
            backbone.module, load_state_dict_file(path), drop=drop, what=f"'{path}'"
        )
        weights_id = f"sha256:{file_sha256(path)}"
    backbone.spec = {**spec, "model": model, "weights": str(weights), "weights_id": weights_id}
    return backbone


def rebuild(spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
    """A folder's backbone as saved: under the family it was built into, which rebuilds it.

    A folder holds a timm architecture, or for a headstart run a torchvision one, and its spec
    says so ("timm" or "torchvision"), so a saved run never needs the folder again.
    """
    family = _torchvision if spec.get("family") == "torchvision" else _timm
    return family.rebuild(spec, preprocess)


def pretrained_classifier(
    backbone: Backbone, source: str, name: str
) -> PretrainedClassifier | None:
    """The folder's ``pretrained_classifier.safetensors`` (or a timm folder's own head).

    Its class names come from ``headstart_pretraining.classes`` or ``label_names`` in
    config.json.
    """
    if has_weights_file(backbone.spec):
        return from_weights_file(backbone)
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
        path = folder / _WEIGHT_FILES[0]  # a timm folder saved with its head
    if not path.is_file():
        return None
    state = load_state_dict_file(path)
    names = spec_classifier_names(backbone.spec.get("classifier"))
    label = f"{backbone.spec.get('model')} pretraining classifier"
    return from_state(backbone, state, [*names, "fc"], labels, label)


def list_cached() -> list[str]:
    """The shipped backbone: the one folder always at hand (other folders are named by path)."""
    return [EMBEDDED_MODEL]


def list_weights(glob: str) -> list[tuple[str, str]]:
    """Nothing: model folders are named by their path or repository, not kept in a registry."""
    return []
