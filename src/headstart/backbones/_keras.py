"""Keras applications (``keras:ResNet50``) and a user's own ``.keras`` model, as torch backbones.

Keras 3 runs on torch (``KERAS_BACKEND=torch``), where every Keras model is already a torch
module; :class:`KerasFeatures` wraps one so that the rest of headstart sees an ordinary backbone:

* it takes headstart's NCHW batch and hands Keras the NHWC one its layers expect;
* it calls the model with ``training=`` taken from torch's ``train()``/``eval()``, layer by layer,
  because torch's mode flag alone does not reach Keras layers: without this a "frozen" Keras
  ResNet50 would keep updating its BatchNorm statistics (docs/why.md, story 2);
* it holds every Keras variable once, under a stable name (``conv1_bn.moving_mean``): trainable
  ones as parameters and the rest (BatchNorm statistics, counters) as buffers, so an optimiser
  never touches them and a run folder saves them as plain safetensors.

Keras files are data here. ``.weights.h5`` and the legacy ``..._notop.h5`` files Keras
applications download hold arrays only and are read into an architecture headstart builds itself;
a ``.keras`` archive or a full-model ``.h5`` also holds a model config, which is checked by
:func:`check_config` (no Lambda layer, no custom or non-Keras class) *before* Keras sees it, and
then deserialised with Keras' own ``safe_mode=True`` as a second line of defence.
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from headstart.backbones._base import (
    KERAS_SUFFIXES,
    Backbone,
    WeightsChoice,
    not_found,
    parse_model_name,
)
from headstart.backbones._classifier import PretrainedClassifier, from_state
from headstart.backbones._weights import file_sha256, state_dict_sha256
from headstart.errors import (
    BackboneNotFoundError,
    HeadstartError,
    RunFolderError,
    UnsafeWeightsError,
    WeightsError,
)
from headstart.preprocess import KERAS_MODE_VALUES, Preprocess, resolve_preprocess

__all__ = [
    "FAMILIES",
    "KerasFamily",
    "KerasFeatures",
    "KerasTop",
    "check_config",
    "create",
    "import_keras",
    "list_cached",
    "list_weights",
    "preprocess_for",
    "pretrained_classifier",
    "pretrained_top",
    "rebuild",
]

KerasMode = Literal["caffe", "tf", "torch", "raw"]
_INSTALL = "pip install 'headstart[keras]'"


@dataclass(frozen=True)
class KerasFamily:
    """One ``keras.applications`` constructor and what its weights expect.

    Attributes:
        mode: Its ``preprocess_input``: "caffe", "tf" or "torch" as in
            ``keras.applications.imagenet_utils``, or "raw" for the models that take 0..255 RGB
            and normalise inside (EfficientNet, ConvNeXt, EfficientNetV2, MobileNetV3).
        size: The input size its ImageNet weights were trained at.
        notop: The file name of its ``include_top=False`` ImageNet weights in Keras' cache.
    """

    mode: KerasMode
    size: int
    notop: str


def _tf_kernels(stem: str) -> str:
    return f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5"


FAMILIES: dict[str, KerasFamily] = {
    "VGG16": KerasFamily("caffe", 224, _tf_kernels("vgg16")),
    "VGG19": KerasFamily("caffe", 224, _tf_kernels("vgg19")),
    "ResNet50": KerasFamily("caffe", 224, _tf_kernels("resnet50")),
    "ResNet101": KerasFamily("caffe", 224, _tf_kernels("resnet101")),
    "ResNet152": KerasFamily("caffe", 224, _tf_kernels("resnet152")),
    "ResNet50V2": KerasFamily("tf", 224, _tf_kernels("resnet50v2")),
    "ResNet101V2": KerasFamily("tf", 224, _tf_kernels("resnet101v2")),
    "ResNet152V2": KerasFamily("tf", 224, _tf_kernels("resnet152v2")),
    "InceptionV3": KerasFamily("tf", 299, _tf_kernels("inception_v3")),
    "Xception": KerasFamily("tf", 299, _tf_kernels("xception")),
    "MobileNetV2": KerasFamily(
        "tf", 224, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    ),
    "DenseNet121": KerasFamily("torch", 224, _tf_kernels("densenet121")),
    "DenseNet169": KerasFamily("torch", 224, _tf_kernels("densenet169")),
    "DenseNet201": KerasFamily("torch", 224, _tf_kernels("densenet201")),
    "EfficientNetB0": KerasFamily("raw", 224, "efficientnetb0_notop.h5"),
    "EfficientNetB1": KerasFamily("raw", 240, "efficientnetb1_notop.h5"),
    "EfficientNetB2": KerasFamily("raw", 260, "efficientnetb2_notop.h5"),
    "EfficientNetB3": KerasFamily("raw", 300, "efficientnetb3_notop.h5"),
    "ConvNeXtTiny": KerasFamily("raw", 224, "convnext_tiny_notop.h5"),
    "ConvNeXtSmall": KerasFamily("raw", 224, "convnext_small_notop.h5"),
    "ConvNeXtBase": KerasFamily("raw", 224, "convnext_base_notop.h5"),
}
"""The applications headstart builds, by the name ``keras.applications`` gives them."""

# preprocess_input of each mode, in Preprocess' fields: Keras' three modes from headstart's one
# table, and "raw", the identity preprocess_input of EfficientNet and ConvNeXt.
_MODE_VALUES: dict[str, Mapping[str, Any]] = {
    **KERAS_MODE_VALUES,
    "raw": {"scale": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "channel_order": "RGB"},
}


# ---------------------------------------------------------------------- importing Keras
def import_keras() -> Any:
    """Import Keras on its torch backend, or say in one line why it cannot be.

    The backend is chosen once per process, when Keras is first imported, so it is set here (and
    only here: users of timm models never pay for importing Keras).

    Raises:
        BackboneNotFoundError: Keras is not installed, or was imported with another backend.
    """
    loaded = sys.modules.get("keras")
    if loaded is None:
        os.environ["KERAS_BACKEND"] = "torch"
    try:
        import keras
    except ImportError:
        raise BackboneNotFoundError(
            f"keras: models need Keras 3 and h5py; install them with {_INSTALL}."
        ) from None
    backend = keras.backend.backend()
    if backend != "torch":
        raise BackboneNotFoundError(
            f"Keras was already imported with the {backend!r} backend; headstart needs it on "
            "torch. Set KERAS_BACKEND=torch before importing keras, or import headstart first."
        )
    return keras


@contextmanager
def _fresh_names(keras: Any) -> Iterator[None]:
    """Build with the layer names of a fresh Keras session, whatever was built before.

    Keras numbers unnamed layers per process ("conv2d_94"), so a second build of InceptionV3
    would name its variables differently from the first; the names are the keys of the saved
    state dict, so they must not depend on what else the process built.
    """
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", None)
    try:
        with keras.device("cpu"):
            yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


@contextmanager
def _seeded(keras: Any, seed: int = 0) -> Iterator[None]:
    """Seed Keras' initialisers for one build, restoring every generator it touches."""
    import random

    import numpy as np

    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        keras.utils.set_random_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# ---------------------------------------------------------------------- the torch module
def _module_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", text) or "_"


class _LayerState(nn.Module):
    """The variables of one Keras layer, as this torch module's parameters and buffers.

    It is the torch face of the layer: ``train()``/``eval()`` on it decides the ``training``
    flag that layer gets, so headstart's freezing policy reaches Keras' BatchNormalization.
    """

    def __init__(self, keras_name: str, is_batchnorm: bool) -> None:
        super().__init__()
        self.keras_name = keras_name
        self.is_batchnorm = is_batchnorm


class _RoutedCall:
    """``layer.call`` with ``training`` also requiring the layer's torch module to train.

    An object rather than a closure, so that ``copy.deepcopy`` of the backbone gives a copy
    whose layers follow the copy's modules, not the original's.
    """

    def __init__(self, layer: Any, state: _LayerState) -> None:
        self.layer = layer
        self.state = state
        self.call = type(layer).call

    def __call__(self, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        return self.call(
            self.layer, *args, training=bool(training) and self.state.training, **kwargs
        )


class KerasFeatures(nn.Module):
    """A Keras model mapping NCHW images to pooled ``[N, C]`` features, as a torch module.

    Args:
        model: The Keras model, built on the torch backend, ending in pooled features.
    """

    keras_model: Any

    def __init__(self, model: Any) -> None:
        super().__init__()
        # Not a submodule: its variables are registered once, below, under stable names.
        object.__setattr__(self, "keras_model", model)
        self.channels_last = _channels_last(model)
        self.variables: dict[str, Any] = {}
        layers = [model, *model._flatten_layers(include_self=False, recursive=True)]
        taken: set[str] = set()
        for layer in layers:
            own = [*layer._trainable_variables, *layer._non_trainable_variables]
            own += [sg.state for sg in getattr(layer, "_seed_generators", [])]
            own = [v for v in own if not any(v is seen for seen in self.variables.values())]
            name = _module_name(layer.name)
            if name in taken or hasattr(self, name):  # e.g. a layer named "training"
                name = _module_name(f"layer_{layer.path}")
            taken.add(name)
            is_bn = type(layer).__name__ == "BatchNormalization"
            state = _LayerState(layer.name, is_bn)
            for variable in own:
                key = _module_name(variable.name)
                tensor = variable.value
                if variable.trainable:
                    state.register_parameter(key, tensor)
                else:
                    state.register_buffer(key, tensor.detach())
                    variable._value = state.get_buffer(key)
                self.variables[f"{name}.{key}"] = variable
            if own or self._accepts_training(layer):
                self.add_module(name, state)
                self._route_training(layer, state)

    @staticmethod
    def _accepts_training(layer: Any) -> bool:
        return bool(getattr(layer, "_call_has_training_arg", False)) and not hasattr(
            layer, "layers"
        )

    def _route_training(self, layer: Any, state: _LayerState) -> None:
        """Give ``layer`` the training flag of its own torch module, not only the model's."""
        if self._accepts_training(layer):
            layer.call = _RoutedCall(layer, state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keras = sys.modules["keras"]
        if self.channels_last:
            x = x.permute(0, 2, 3, 1)
        # Each layer then trains only if its own module does (_RoutedCall), so a frozen part
        # stays in inference mode while the top trains.
        training = any(module.training for module in self.modules())
        with keras.device(_keras_device(x.device)):
            out: torch.Tensor = self.keras_model(x, training=training)
        if out.ndim == 4:  # a user's model cut at a feature map: pool it as the applications do
            out = out.mean(dim=(1, 2) if self.channels_last else (2, 3))
        return out

    def _apply(self, fn: Any, recurse: bool = True) -> KerasFeatures:
        super()._apply(fn, recurse)
        # Buffers are replaced by new tensors (parameters are updated in place): point Keras'
        # variables at the moved ones.
        for key, variable in self.variables.items():
            owner, _, name = key.rpartition(".")
            module = self.get_submodule(owner)
            if name in module._buffers:
                variable._value = module._buffers[name]
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> KerasFeatures:
        """A copy with its own Keras layers and variables, in the same modes, on the same device.

        Keras models deep-copy by saving and reloading themselves, which would give layers
        that ignore this module's tensors; cloning the architecture and loading the state keeps
        copy and original independent and alike.
        """
        keras = import_keras()
        with _fresh_names(keras):
            clone = keras.models.clone_model(self.keras_model)
        new = KerasFeatures(clone)
        new.load_state_dict(self.state_dict(), strict=True)
        first = next(iter(self.state_dict().values()), None)
        if first is not None:
            new.to(first.device)
        modes = {name: module.training for name, module in self.named_modules()}
        for name, module in new.named_modules():
            module.training = modes.get(name, self.training)
        grads = {name: p.requires_grad for name, p in self.named_parameters()}
        for name, param in new.named_parameters():
            param.requires_grad_(grads.get(name, True))
        memo[id(self)] = new
        return new

    def headstart_stages(self) -> list[list[str]]:
        """Trainable parameter names per stage, from the input to the output.

        Keras applications name their layers by block ("conv3_block2_1_conv",
        "block_5_expand", "convnext_tiny_stage_2_block_0_..."), so consecutive layers of one
        block form a stage, as timm's stages do; an unnamed layer is a stage of its own.
        """
        stages: list[tuple[str, list[str]]] = []
        for name, module in self.named_children():
            params = [f"{name}.{n}" for n, _ in module.named_parameters()]
            if not params:
                continue
            block = _block_of(str(getattr(module, "keras_name", name)))
            if stages and stages[-1][0] == block:
                stages[-1][1].extend(params)
            else:
                stages.append((block, params))
        return [params for _, params in stages]


_BLOCK = re.compile(r"^(.*?(?:stage_\d+|block_?\d+|^conv\d+(?=_)|^stem|^mixed\d+|^expanded_conv))")


def _block_of(layer_name: str) -> str:
    """The block a layer belongs to; a layer's own BatchNorm/activation joins the layer."""
    match = _BLOCK.match(layer_name)
    if match:
        return match.group(1)
    name = re.sub(r"^bn_", "", layer_name)
    return re.sub(r"_(bn|relu|act)$", "", name, flags=re.IGNORECASE)


def _channels_last(model: Any) -> bool:
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is not None and len(shape) == 4 and shape[1] == 3 and shape[-1] != 3:
        return False
    return True


def _keras_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type


# ---------------------------------------------------------------------- preprocessing
def _family(name: str) -> KerasFamily:
    family = FAMILIES.get(name)
    if family is None:
        raise BackboneNotFoundError(not_found("Keras application", name, FAMILIES, prefix="keras:"))
    return family


def _family_preprocess(
    name: str,
    overrides: Mapping[str, Any] | None,
    *,
    source: str | None = None,
    size: tuple[int, int] | None = None,
) -> Preprocess:
    """The family's ``preprocess_input`` at its default size, with headstart's resize and crop.

    The Keras weights come with no eval transform; ``crop_pct=1`` resizes the shorter side to the
    input size and crops the centre, the closest to Keras' ``load_img(target_size=...)`` that
    keeps the aspect ratio (``--resize squash`` gives Keras' exact squash).
    """
    family = _family(name)
    values = _MODE_VALUES[family.mode]
    cfg = {
        "input_size": size or (family.size, family.size),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": values["mean"],
        "std": values["std"],
    }
    label = source or f"keras.applications {name} preprocess_input ({family.mode})"
    base = resolve_preprocess(cfg, source=label)
    # Scale and channel order are not timm cfg keys: set them as the weights' own values.
    from dataclasses import replace

    base = replace(base, scale=values["scale"], channel_order=values["channel_order"])
    return base.with_overrides(overrides)


def preprocess_for(
    source: str, name: str, overrides: Mapping[str, Any] | None, *, model: str
) -> Preprocess:
    """The preprocessing of ``keras:NAME`` (an application, or a ``.keras`` file's base)."""
    if _is_path(name):
        return _user_model(Path(name).expanduser())[1].with_overrides(overrides)
    return _family_preprocess(name, overrides)


# ---------------------------------------------------------------------- hostile configs
_SAFE_MODULE = re.compile(r"^keras(\.|$)")


def check_config(config: Any, where: str) -> None:
    """Refuse a Keras model config that would deserialise code, before Keras reads it.

    A Lambda layer carries Python bytecode, and a custom class (a ``package>Name`` registered
    name, a name registered in this process, or a ``module`` outside Keras) means importing or
    running code the file names. Neither is data, so neither is loaded, whatever Keras' own safe
    mode would have done: a legacy ``.h5`` naming a registered class ran it before
    (tests/_hostile_models.py, ``keras-custom-layer-h5``).

    Raises:
        UnsafeWeightsError: The config names a Lambda layer, a function, or a custom or
            non-Keras class.
    """

    def refuse(what: str) -> None:
        raise UnsafeWeightsError(
            f"Refusing to load '{where}': its model config {what}, which would run code when "
            "loaded. Rebuild the model from Keras layers only, or save just its weights "
            "(model.save_weights('model.weights.h5')) and pass --weights."
        )

    custom = _custom_object_names()
    stack = [config]  # a stack, not recursion: a config nested deeper than Python's limit
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))  # in order: the first offence is the one named
            continue
        if not isinstance(node, dict):
            continue
        class_name = node.get("class_name")
        if isinstance(class_name, str):
            if class_name in ("Lambda", "__lambda__", "function", "__function__"):
                refuse(f"has a {class_name} ({node.get('name') or 'unnamed'})")
            module = node.get("module")
            if module is not None and not (isinstance(module, str) and _SAFE_MODULE.match(module)):
                refuse(f"names class {class_name!r} from module {module!r}")
            # "package>Name" is a registered custom object: legacy .h5 files name it in
            # class_name, .keras archives in registered_name. A plain name registered in this
            # process (keras.saving.get_custom_objects()) is one too. Either is code Keras would
            # find and run, whatever safe mode says.
            for name in (class_name, node.get("registered_name")):
                if isinstance(name, str) and (">" in name or name in custom):
                    refuse(f"names the custom object {name!r}")
        stack.extend(reversed(list(node.values())))


def _custom_object_names() -> frozenset[str]:
    """Names of the custom objects registered in this process, which Keras would resolve a
    class name to before its own classes."""
    try:
        from keras.saving import get_custom_objects
    except ImportError:  # pragma: no cover - every caller has imported Keras
        return frozenset()
    return frozenset(get_custom_objects())


_MAX_CONFIG_BYTES = 64 * 2**20
"""The largest model config read: the biggest Keras application's is about a megabyte, and a
config.json of a few kilobytes that inflates to gigabytes (a zip bomb) must not be read whole."""


def _archive_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size <= _MAX_CONFIG_BYTES:
                with archive.open(info) as member:  # reads at most the size declared
                    return json.loads(member.read())
    except (
        zipfile.BadZipFile,
        KeyError,
        OSError,
        UnicodeDecodeError,
        ValueError,
        RecursionError,  # nested deeper than Python's limit
    ) as exc:
        raise WeightsError(
            f"Cannot read '{path}' as a .keras archive ({_first_line(exc)}); save it again "
            "with model.save('model.keras')."
        ) from None
    raise WeightsError(
        f"Refusing to read '{path}': its config.json declares {info.file_size:,} bytes (from "
        f"{info.compress_size:,} stored), over the {_MAX_CONFIG_BYTES:,} a model config needs; "
        "the archive is damaged or a decompression bomb."
    )


def _h5_config(path: Path) -> Any | None:
    """The model config of a full-model legacy ``.h5``, or None for a weights-only file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise WeightsError(
            f"Cannot read '{path}' as HDF5 ({_first_line(exc)}); the file is damaged or not "
            "a Keras .h5 file."
        ) from None
    if raw is None:
        return None
    try:
        if not isinstance(raw, (str, bytes)):  # an HDF5 opaque or numeric attribute
            raise ValueError(f"an HDF5 {type(raw).__name__}, not JSON text")
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise WeightsError(
            f"'{path}' has an unreadable model_config ({_first_line(exc)}); save the model "
            "again with model.save('model.keras')."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


# ---------------------------------------------------------------------- user models
def _is_path(name: str) -> bool:
    return name.lower().endswith(KERAS_SUFFIXES) or "/" in name or "\\" in name


def _load_full_model(keras: Any, path: Path) -> Any:
    """A user's ``.keras`` / full-model ``.h5``, config checked first, then safe_mode=True."""
    if not path.is_file():
        raise BackboneNotFoundError(
            f"Keras model file '{path}' does not exist; pass keras:PATH.keras (a model saved "
            "with model.save) or a keras.applications name such as keras:ResNet50."
        )
    suffix = path.suffix.lower()
    if suffix == ".keras":
        config = _archive_config(path)
    elif suffix == ".h5":
        config = _h5_config(path)
        if config is None:
            raise BackboneNotFoundError(
                f"'{path}' holds weights only, no model; pass the architecture as "
                "--model keras:NAME (e.g. keras:ResNet50) and the file as --weights."
            )
    else:
        raise BackboneNotFoundError(
            f"keras:{path} is neither a .keras nor an .h5 file; pass keras:PATH.keras."
        )
    check_config(config, str(path))
    try:
        with _fresh_names(keras), warnings.catch_warnings():
            # Keras warns and goes on when weights are missing ("Affected layers will retain
            # their freshly-initialized weights"): a half-random model is no model to use.
            warnings.simplefilter("error", UserWarning)
            return keras.saving.load_model(path, compile=False, safe_mode=True)
    except HeadstartError:
        raise
    except Exception as exc:  # Keras raises many types for a config it cannot rebuild
        raise WeightsError(
            f"Keras cannot load '{path}' in safe mode ({type(exc).__name__}: "
            f"{_first_line(exc)}); save the model with Keras layers only."
        ) from None


def _top_dense(model: Any) -> Any | None:
    """The model's final Dense layer (its classifier), or None when it has none."""
    layers = model._flatten_layers(include_self=False, recursive=False)
    dense = [layer for layer in layers if type(layer).__name__ == "Dense"]
    return dense[-1] if dense else None


def _cut_below_top(keras: Any, model: Any, where: str) -> Any:
    """The model up to the input of its final Dense layer: the features its classifier saw."""
    top = _top_dense(model)
    if top is None:
        raise BackboneNotFoundError(
            f"'{where}' has no Dense classifier to cut below; save the classifier you trained "
            "(e.g. base + GlobalAveragePooling2D + Dense)."
        )
    features = top.input
    if isinstance(features, list):
        features = features[0]
    if len(features.shape) not in (2, 4):
        raise BackboneNotFoundError(
            f"'{where}': the input of its last Dense layer has shape {tuple(features.shape)}; "
            "expected pooled features (N, C) or a feature map (N, H, W, C)."
        )
    inputs = model.inputs
    return keras.Model(inputs, features, name=f"{model.name}_features")


def _user_model(path: Path) -> tuple[Any, Preprocess, dict[str, Any]]:
    """(feature model, preprocessing, model config) of a user's own Keras classifier."""
    keras = import_keras()
    model = _load_full_model(keras, path)
    features = _cut_below_top(keras, model, str(path))
    config = keras.saving.serialize_keras_object(features)
    family = _guess_family(model)
    shape = tuple(features.inputs[0].shape)
    size = (shape[1], shape[2]) if _channels_last(features) else (shape[2], shape[3])
    preprocess = _family_preprocess(
        family,
        None,
        source=f"{path.name}: {family} base, its preprocess_input",
        size=size if all(isinstance(v, int) for v in size) else None,
    )
    return features, preprocess, config


def _guess_family(model: Any) -> str:
    """The application a user's model was built on, from its layer names, for preprocessing.

    A classifier trained on ``keras.applications.X`` keeps X's layer names (nested or not);
    its preprocessing is X's ``preprocess_input``. A model on none of them cannot be guessed.
    """
    names = {layer.name for layer in model._flatten_layers(include_self=False, recursive=True)}
    nested = {name.lower() for name in names}
    for family in FAMILIES:
        if family.lower() in nested or family.lower().replace("v", "_v") in nested:
            return family
    signatures = {
        "conv5_block3_out": "ResNet50",
        "post_relu": "ResNet50V2",
        "block5_conv4": "VGG19",
        "block5_conv3": "VGG16",
        "mixed10": "InceptionV3",
        "block14_sepconv2_act": "Xception",
        "out_relu": "MobileNetV2",
        "relu": "DenseNet121",
        "top_activation": "EfficientNetB0",
        "convnext_tiny_head_layernorm": "ConvNeXtTiny",
    }
    for layer_name, family in signatures.items():
        if layer_name in names:
            return family
    raise BackboneNotFoundError(
        "The Keras model is not built on a keras.applications base headstart knows, so its "
        f"preprocessing cannot be resolved; bases: {', '.join(FAMILIES)}."
    )


# ---------------------------------------------------------------------- building
def _build_application(keras: Any, name: str, *, seeded: bool, top: bool = False) -> Any:
    """The application without weights: pooled features, or with ``top`` its ImageNet classifier.

    The two builds name their shared layers alike (a fresh session each), so weights move
    between them layer by layer.
    """
    constructor = getattr(keras.applications, name)
    args: dict[str, Any] = (
        {"include_top": True} if top else {"include_top": False, "pooling": "avg"}
    )
    with _fresh_names(keras):
        if seeded:
            with _seeded(keras):
                return constructor(weights=None, **args)
        return constructor(weights=None, **args)


def _load_application_weights(keras: Any, name: str, net: Any, path: Path) -> None:
    """Load ``path`` into the pooled-features application ``net``, with or without its top.

    Keras' legacy ``.h5`` loader matches layers by position, so the full ImageNet file
    (``resnet50_weights_tf_dim_ordering_tf_kernels.h5``, classifier included) does not fit the
    network without its top. A file that does not fit and holds more arrays than ``net`` is
    loaded into the application with its top instead, and the layers both share are copied over:
    the same arrays, put where Keras itself would put them.
    """
    what = f"'{path}'"
    try:
        _load_weights(net, path, what)
    except WeightsError:
        if _array_count(path) <= len(net.weights):
            raise
        full = _build_application(keras, name, seeded=True, top=True)
        try:
            _load_weights(full, path, what)
        except WeightsError:
            raise WeightsError(
                f"Keras weights {what} fit neither keras:{name} without its top nor with its "
                "ImageNet top (1000 classes); pass weights saved from this architecture."
            ) from None
        _copy_shared_layers(full, net)


def _weighted_layers(model: Any) -> list[Any]:
    return [layer for layer in model._flatten_layers(include_self=False) if layer.weights]


def _copy_shared_layers(source: Any, target: Any) -> None:
    """Every weighted layer of ``target`` gets the weights of ``source``'s layer in its place."""
    theirs = _weighted_layers(source)
    ours = _weighted_layers(target)
    names = [layer.name for layer in ours]
    if names != [layer.name for layer in theirs[: len(ours)]]:
        raise WeightsError(
            f"{target.name} with and without its top disagree on their layers; this Keras "
            "version builds them differently. Pass weights saved with include_top=False."
        )
    for mine, other in zip(ours, theirs[: len(ours)], strict=True):
        for variable, value in zip(mine.weights, other.weights, strict=True):
            variable.assign(value.value)


def _array_count(path: Path) -> int:
    """How many arrays a Keras weights file (or a ``.keras`` archive) holds; 0 if unreadable."""
    import h5py

    count = 0

    def visit(_: str, item: Any) -> None:
        nonlocal count
        count += isinstance(item, h5py.Dataset)

    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as member:
                with h5py.File(member, "r") as f:
                    f.visititems(visit)
        else:
            with h5py.File(path, "r") as f:
                f.visititems(visit)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return 0
    return count


def _load_weights(model: Any, path: Path, what: str) -> None:
    """Keras' own loader for arrays: ``.weights.h5``, a legacy ``.h5`` or a ``.keras``'s weights.

    None of these paths deserialises a model config, so they read data only; a full-model
    legacy ``.h5`` is still checked first, so a hostile file is refused rather than half-used.
    """
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        raise WeightsError(
            f"Keras weights {what} must be a .weights.h5, a Keras applications .h5 or a .keras "
            f"file, got {path.suffix!r}."
        )
    if suffix == ".keras":
        check_config(_archive_config(path), str(path))
    elif not path.name.lower().endswith(".weights.h5"):
        config = _h5_config(path)
        if config is not None:
            check_config(config, str(path))
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError/KeyError/OSError for a mismatch
        raise WeightsError(
            f"Keras weights {what} do not fit {model.name} ({type(exc).__name__}: "
            f"{_first_line(exc)}); pass weights saved from this architecture with "
            "include_top=False."
        ) from None


def _default_weights(keras: Any, name: str) -> Path:
    family = _family(name)
    from keras.src.backend.config import keras_home

    cached = Path(keras_home()) / "models" / family.notop
    if cached.is_file():
        return cached
    raise BackboneNotFoundError(
        f"The ImageNet weights of keras:{name} are not in Keras' cache ({cached}), and headstart "
        f"does not download them; get {family.notop} (keras.applications.{name}(weights="
        "'imagenet', include_top=False) downloads it) and pass --weights PATH, or --weights none."
    )


def create(
    source: str,
    name: str,
    choice: WeightsChoice,
    overrides: Mapping[str, Any] | None,
    *,
    model: str,
    weights: str | Path,
) -> Backbone:
    """``keras:NAME`` with cached, random or file weights, or ``keras:PATH.keras`` cut below top."""
    keras = import_keras()
    if _is_path(name):
        return _create_user(keras, Path(name).expanduser(), choice, overrides, model, weights)
    family_preprocess = _family_preprocess(name, overrides)
    net = _build_application(keras, name, seeded=choice == "none")
    if choice == "none":
        module = KerasFeatures(net)
        weights_id = f"random:sha256:{state_dict_sha256(module.state_dict())}"
    else:
        path = _default_weights(keras, name) if choice == "default" else Path(choice)
        _load_application_weights(keras, name, net, path)
        module = KerasFeatures(net)
        weights_id = f"sha256:{file_sha256(path)}"
    spec = {
        "family": "keras",
        "architecture": name,
        "model_args": {},
        "model": model,
        "weights": str(weights),
        "weights_id": weights_id,
        "classifier": None,
        "keras_version": keras.__version__,
    }
    return Backbone(module.eval(), family_preprocess, _width(module), spec)


def _create_user(
    keras: Any,
    path: Path,
    choice: WeightsChoice,
    overrides: Mapping[str, Any] | None,
    model: str,
    weights: str | Path,
) -> Backbone:
    if choice != "default":
        raise WeightsError(
            f"keras:{path} brings its own weights; drop --weights {weights} (or use "
            "--model keras:NAME with --weights for an application's architecture)."
        )
    features, preprocess, config = _user_model(path)
    module = KerasFeatures(features)
    spec = {
        "family": "keras",
        "architecture": "model",
        "model_args": {},
        "model": model,
        "weights": str(weights),
        "weights_id": f"sha256:{file_sha256(path)}",
        "classifier": None,
        "keras_version": keras.__version__,
        "keras_config": config,
    }
    return Backbone(module.eval(), preprocess.with_overrides(overrides), _width(module), spec)


def _width(module: KerasFeatures) -> int:
    shape = module.keras_model.outputs[0].shape
    width = shape[-1] if module.channels_last else shape[1]
    if width is None:
        raise BackboneNotFoundError("The Keras model's feature width is not fixed.")
    return int(width)


def rebuild(spec: Mapping[str, Any], preprocess: Preprocess) -> Backbone:
    """A saved Keras backbone's architecture, unloaded, from its spec: never a file, never code.

    An application is rebuilt by its constructor; a user's model from the config saved in the
    spec, which is checked by :func:`check_config` and deserialised in safe mode, because a
    run folder's config.json may have been edited by anyone.
    """
    keras = import_keras()
    arch = str(spec["architecture"])
    if arch == "model":
        config = spec.get("keras_config")
        if not isinstance(config, Mapping):
            raise RunFolderError(
                "Saved Keras backbone has no keras_config; config.json is damaged."
            )
        check_config(config, "the run folder's config.json")
        try:
            with _fresh_names(keras):
                net = keras.saving.deserialize_keras_object(dict(config), safe_mode=True)
        except Exception as exc:
            raise RunFolderError(
                f"Saved Keras backbone config cannot be rebuilt ({type(exc).__name__}: "
                f"{_first_line(exc)}); the run needs Keras {spec.get('keras_version')}."
            ) from None
    else:
        if arch not in FAMILIES:
            raise RunFolderError(
                f"Saved Keras backbone {arch!r} is not a known application; config.json was "
                "edited or written by a newer headstart."
            )
        net = _build_application(keras, arch, seeded=False)
    module = KerasFeatures(net)
    return Backbone(module.eval(), preprocess, _width(module), dict(spec))


# ---------------------------------------------------------------------- pretraining classifier
@dataclass(frozen=True)
class KerasTop:
    """The Dense classifier a Keras backbone was cut from, as torch tensors.

    Attributes:
        name: The Dense layer's name ("predictions").
        weight: ``[classes, features]``, the transposed Keras kernel.
        bias: ``[classes]``, or None for a Dense without bias.
        labels: "class 0".."class K-1" for a user's classes; None for ImageNet's 1000.
        source: Where it came from, for messages.
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    labels: tuple[str, ...] | None
    source: str


def pretrained_top(module: nn.Module, spec: Mapping[str, Any]) -> KerasTop | None:
    """The classifier the backbone's Keras file holds above its features, or None.

    A user's ``keras:PATH.keras`` classifier: its final Dense, the layer the backbone was cut
    below (the file is read again as for the backbone: config checked, ``safe_mode=True``).
    ``keras:NAME --weights FILE``: the application's ImageNet classifier when the file holds one
    (the full download rather than ``_notop``), loaded by Keras into the application with its
    top. None when the file changed since the backbone was built, holds no classifier, or the
    classifier is not one plain Dense over the pooled features: that is what the
    pretrained-view check can run with the preprocessing training will use.
    """
    if not isinstance(module, KerasFeatures):
        return None
    keras = import_keras()
    arch = str(spec.get("architecture"))
    if arch == "model":
        path = Path(parse_model_name(str(spec.get("model")))[1]).expanduser()
        if not _same_file(path, spec):
            return None
        model = _load_full_model(keras, path)
        dense = _top_dense(model)
        source = f"the top layer of {path.name}"
    else:
        weights = str(spec.get("weights", "default"))
        if arch not in FAMILIES or weights.lower() in ("default", "none"):
            return None
        path = Path(weights).expanduser()
        if not _same_file(path, spec) or _array_count(path) <= len(module.keras_model.weights):
            return None  # a _notop file: no classifier in it
        full = _build_application(keras, arch, seeded=True, top=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Keras' notes on a file that does not fit
                _load_weights(full, path, f"'{path}'")
        except WeightsError:
            return None
        dense = _top_dense(full)
        if dense is None or not _on_pooled_features(dense):
            return None  # VGG's classifier sits on fc2, ConvNeXt's on a LayerNorm
        source = f"the keras.applications {arch} classifier in {path.name}"
    if dense is None or not _plain_classifier(dense, _width(module)):
        return None
    kernel = _tensor(dense.kernel)
    bias = _tensor(dense.bias) if dense.use_bias else None
    classes = int(kernel.shape[1])
    # A user's own classes have no names in the file; keras.applications call their ImageNet
    # top "predictions", which a full application saved as .keras keeps.
    imagenet = classes == 1000 and (arch != "model" or dense.name == "predictions")
    labels = None if imagenet else tuple(f"class {i}" for i in range(classes))
    return KerasTop(dense.name, kernel.T.contiguous(), bias, labels, source)


def _tensor(variable: Any) -> torch.Tensor:
    """A Keras variable's value as a float32 CPU tensor (on the torch backend it is one already)."""
    return torch.as_tensor(getattr(variable, "value", variable)).detach().float().cpu().clone()


def _same_file(path: Path, spec: Mapping[str, Any]) -> bool:
    """Whether ``path`` is still the file the backbone was built from."""
    return path.is_file() and f"sha256:{file_sha256(path)}" == spec.get("weights_id")


def _plain_classifier(dense: Any, width: int) -> bool:
    """One Dense over the ``width`` pooled features, logits or softmax: a classifier to ask."""
    shape = tuple(dense.input.shape)
    activation = getattr(dense.activation, "__name__", "")
    return (
        type(dense).__name__ == "Dense"
        and getattr(dense, "quantization_mode", None) is None
        and len(shape) == 2
        and shape[-1] == width
        and int(dense.units) >= 2
        and activation in ("linear", "softmax")
    )


def _on_pooled_features(dense: Any) -> bool:
    """Whether ``dense`` reads the global average pool itself (through Dropout at most)."""
    layer = dense
    while True:
        history = getattr(layer.input, "_keras_history", None)
        layer = history.operation if history is not None else None
        if type(layer).__name__ != "Dropout":
            return type(layer).__name__ == "GlobalAveragePooling2D"


def pretrained_classifier(
    backbone: Backbone, source: str, name: str
) -> PretrainedClassifier | None:
    """The Keras classifier above the backbone's features (:func:`pretrained_top`), as torch."""
    top = pretrained_top(backbone.module, backbone.spec)
    if top is None:
        return None
    state = {f"{top.name}.weight": top.weight}
    if top.bias is not None:
        state[f"{top.name}.bias"] = top.bias
    return from_state(backbone, state, [top.name], top.labels, top.source)


def list_weights(glob: str) -> list[tuple[str, str]]:
    """Nothing: ``headstart backbones PATTERN`` searches timm's and torchvision's registries."""
    return []


def list_cached() -> list[str]:
    """Keras applications whose ImageNet ``include_top=False`` weights are in Keras' cache
    (``keras:NAME``): the ones that work offline. Looks where Keras keeps them (``KERAS_HOME``,
    else ``~/.keras``, else ``/tmp/.keras`` as Keras falls back to) without importing Keras."""
    homes = [os.environ.get("KERAS_HOME"), str(Path("~/.keras").expanduser()), "/tmp/.keras"]
    folders = [Path(h) / "models" for h in homes if h]
    return [
        f"keras:{name}"
        for name, family in FAMILIES.items()
        if any((folder / family.notop).is_file() for folder in folders)
    ]
