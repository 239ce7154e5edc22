"""A named corpus of hostile and malformed model files, one writer a kind.

Each kind writes its file(s) under a test's tmp folder and returns the ``headstart`` command line
that loads them through a public entry point: ``predict`` for a run folder (config.json +
model.safetensors + typicality.safetensors), ``features`` for a backbone (``--model
local-dir:``, ``hf-hub:``, ``keras:PATH``, a hub cache's default weights, ``--weights FILE``).
Payloads (pickles, Keras Lambda layers, registered custom objects) would create the case's
canary file if anything ran them; tests/test_hostile_models.py checks that none does and that
every command ends in a clean load or one ``error:`` line.
"""

from __future__ import annotations

import functools
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save, save_file

from tests._backbones import hf_cache_snapshot
from tests._fuzz import pack_safetensors, split_safetensors

__all__ = ["KINDS", "CANARY_ENV", "HostileModel", "Scene"]

DATA = Path(__file__).parent / "data" / "runs_v1"
IMAGE = DATA / "images" / "red_0.png"
CANARY_ENV = "HEADSTART_TEST_CANARY"
"""Keras payloads, saved once for all cases, find the canary they would create here."""

_FAST = ["--workers", "0", "-q", "--no-cache", "--device", "cpu"]


@dataclass(frozen=True)
class Scene:
    """Where a kind writes: its tmp folder, the canary a payload would create, and a
    monkeypatch for the environment of hub caches."""

    tmp: Path
    canary: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class HostileModel:
    """One kind, and what must become of it: ``loads`` (as data: nothing in it is code, and
    what it holds fits), or else refused in one ``error:`` line."""

    name: str
    description: str
    write: Callable[[Scene], list[str]]
    loads: bool = False


KINDS: dict[str, HostileModel] = {}


def _kind(
    name: str, description: str, *, loads: bool = False
) -> Callable[[Callable[[Scene], list[str]]], Any]:
    def add(write: Callable[[Scene], list[str]]) -> Callable[[Scene], list[str]]:
        assert name not in KINDS, name
        KINDS[name] = HostileModel(name, description, write, loads)
        return write

    return add


# ---------------------------------------------------------------------- command lines
def _features(model: str, weights: str | Path = "none") -> list[str]:
    return ["features", str(IMAGE), "--model", model, "--weights", str(weights), *_FAST]


def _predict(run: Path) -> list[str]:
    return ["predict", str(run), str(IMAGE)]


# ---------------------------------------------------------------------- payloads
class _System:
    """Unpickling calls ``os.system``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.canary}",))


class _Open:
    """Unpickling calls ``open(canary, "w")``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.canary), "w"))


class _Exec:
    """Unpickling calls ``exec`` on source that creates the canary."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.canary)!r}, 'w').close()",))


class _Eval:
    """Unpickling calls ``eval``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.canary)!r}, 'w').close()",))


class _Subprocess:
    """Unpickling calls ``subprocess.call``."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.call, (["touch", str(self.canary)],))


def _raw_pickle(path: Path, payload: object, protocol: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"conv1.weight": payload}, protocol=protocol))
    return path


@functools.cache
def _resnet_state() -> dict[str, torch.Tensor]:
    """test_resnet's backbone tensors: a file that fits ``--model test_resnet``."""
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=0).state_dict()


def _resnet_safetensors() -> bytes:
    return save(_resnet_state())


def _timm_folder(folder: Path, weights: bytes | None = None) -> Path:
    """A timm model folder: config.json of test_resnet and its weights."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architecture": "test_resnet",
        "num_classes": 0,
        "pretrained_cfg": {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.25] * 3},
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(
        _resnet_safetensors() if weights is None else weights
    )
    return folder


def _run(scene: Scene, name: str = "run", seed: str = "linear") -> Path:
    run = scene.tmp / name
    shutil.copytree(DATA / seed, run)
    return run


def _edit_run(run: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    return run


# ---------------------------------------------------------------------- pickles
@_kind("pth-pickle-os-system", "a raw pickle whose REDUCE calls os.system, as --weights .pth")
def _(s: Scene) -> list[str]:
    return _features("test_resnet", _raw_pickle(s.tmp / "evil.pth", _System(s.canary)))


@_kind("pt-pickle-open", "a raw pickle whose REDUCE opens a file for writing, as .pt")
def _(s: Scene) -> list[str]:
    return _features("test_resnet", _raw_pickle(s.tmp / "evil.pt", _Open(s.canary)))


@_kind("bin-pickle-exec", "a raw pickle whose REDUCE calls exec, as .bin")
def _(s: Scene) -> list[str]:
    return _features("test_resnet", _raw_pickle(s.tmp / "evil.bin", _Exec(s.canary)))


@_kind("ckpt-pickle-eval", "a raw pickle whose REDUCE calls eval, as .ckpt")
def _(s: Scene) -> list[str]:
    return _features("test_resnet", _raw_pickle(s.tmp / "evil.ckpt", _Eval(s.canary)))


@_kind("pth-pickle-stack-global-subprocess", "protocol 4 (STACK_GLOBAL) calling subprocess.call")
def _(s: Scene) -> list[str]:
    path = _raw_pickle(s.tmp / "evil.pth", _Subprocess(s.canary), protocol=4)
    return _features("test_resnet", path)


@_kind("pth-pickle-inst-opcode", "protocol 0 INST opcode building os.system(...) by name")
def _(s: Scene) -> list[str]:
    path = s.tmp / "evil.pth"
    path.write_bytes(f"(S'touch {s.canary}'\nios\nsystem\n.".encode())
    return _features("test_resnet", path)


@_kind("pth-zip-data-pkl-payload", "a torch.save zip whose data.pkl holds an os.system REDUCE")
def _(s: Scene) -> list[str]:
    torch.save({"conv1.weight": _System(s.canary)}, s.tmp / "evil.pth")
    return _features("test_resnet", s.tmp / "evil.pth")


@_kind("pth-zip-nested-payload", "the payload nested in state_dict/model beside real tensors")
def _(s: Scene) -> list[str]:
    state = {"state_dict": {"model": {**_resnet_state(), "evil": _Open(s.canary)}}, "epoch": 3}
    torch.save(state, s.tmp / "evil.pt")
    return _features("test_resnet", s.tmp / "evil.pt")


@_kind(
    "pth-zip-extra-pickle-member",
    "a valid checkpoint zip with an extra member that is a payload",
    loads=True,  # torch reads data.pkl and the tensors' records, nothing else
)
def _(s: Scene) -> list[str]:
    good = io.BytesIO()
    torch.save(_resnet_state(), good)
    path = s.tmp / "extra.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        root = src.namelist()[0].split("/")[0]
        dst.writestr(f"{root}/evil.pkl", pickle.dumps(_System(s.canary)))
    return _features("test_resnet", path)


@_kind("pth-full-module-pickled", "torch.save of a whole nn.Module (a class to import)")
def _(s: Scene) -> list[str]:
    torch.save(torch.nn.Linear(2, 2), s.tmp / "module.pth")
    return _features("test_resnet", s.tmp / "module.pth")


@_kind("pth-legacy-format-payload", "the legacy (non-zip) torch format with an os.system REDUCE")
def _(s: Scene) -> list[str]:
    path = s.tmp / "legacy.pth"
    torch.save({"w": _System(s.canary)}, path, _use_new_zipfile_serialization=False)
    return _features("test_resnet", path)


@_kind("pth-zip-storage-shorter-than-declared", "a tensor's storage record cut to 4 bytes")
def _(s: Scene) -> list[str]:
    good = io.BytesIO()
    torch.save({"w": torch.ones(64, 64)}, good)
    path = s.tmp / "short.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[:4] if "/data/" in info.filename else data)
    return _features("test_resnet", path)


@_kind("model-folder-bin-payload", "a local-dir folder whose only weights are a pickle payload")
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    (folder / "model.safetensors").unlink()
    _raw_pickle(folder / "pytorch_model.bin", _System(s.canary))
    return _features(f"local-dir:{folder}", "default")


@_kind("model-folder-safetensors-is-pickle", "model.safetensors that is really a pickle payload")
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    _raw_pickle(folder / "model.safetensors", _System(s.canary))
    return _features(f"local-dir:{folder}", "default")


def _timm_snapshot(s: Scene, repo: str) -> Path:
    """The Hugging Face cache snapshot folder of ``repo``, under the scene's tmp folder."""
    from huggingface_hub import constants

    s.monkeypatch.setattr(constants, "HF_HUB_CACHE", str(s.tmp / "hf"))
    return hf_cache_snapshot(s.tmp / "hf", repo)


@_kind("timm-hub-cache-bin-payload", "timm's cached default weights replaced by a pickle payload")
def _(s: Scene) -> list[str]:
    snapshot = _timm_snapshot(s, "timm/test_resnet.r160_in1k")
    _raw_pickle(snapshot / "pytorch_model.bin", _System(s.canary))
    return _features("test_resnet.r160_in1k", "default")


@_kind("timm-hub-cache-safetensors-past-eof", "timm's cached safetensors with offsets past EOF")
def _(s: Scene) -> list[str]:
    snapshot = _timm_snapshot(s, "timm/test_resnet.r160_in1k")
    (snapshot / "model.safetensors").write_bytes(_lie(_resnet_safetensors(), offsets=[0, 2**40]))
    return _features("test_resnet.r160_in1k", "default")


@_kind("torchvision-cache-payload", "torchvision's cached checkpoint replaced by a payload")
def _(s: Scene) -> list[str]:
    from torchvision.models import SqueezeNet1_1_Weights

    s.monkeypatch.setenv("TORCH_HOME", str(s.tmp / "torch"))
    folder = s.tmp / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    cached = folder / Path(SqueezeNet1_1_Weights.IMAGENET1K_V1.url).name
    torch.save({"features.0.weight": _System(s.canary)}, cached)
    return _features("tv:squeezenet1_1", "default")


@_kind("hf-cache-folder-bin-payload", "an hf-hub: repo in the HF cache with a pickle .bin only")
def _(s: Scene) -> list[str]:
    snapshot = _timm_snapshot(s, "evil/model")
    _timm_folder(snapshot)
    (snapshot / "model.safetensors").unlink()
    _raw_pickle(snapshot / "pytorch_model.bin", _System(s.canary))
    return _features("hf-hub:evil/model", "default")


@_kind(
    "hf-cache-config-symlink-outside", "an hf-hub: snapshot whose config.json links to /etc/passwd"
)
def _(s: Scene) -> list[str]:
    snapshot = _timm_snapshot(s, "evil/model")
    _timm_folder(snapshot)
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to("/etc/passwd")
    return _features("hf-hub:evil/model", "default")


@_kind("run-weights-pickle", "a run folder whose model.safetensors is a pickle payload")
def _(s: Scene) -> list[str]:
    run = _run(s)
    _raw_pickle(run / "model.safetensors", _System(s.canary))
    return _predict(run)


@_kind("run-typicality-pickle", "a run's typicality.safetensors that is a pickle payload")
def _(s: Scene) -> list[str]:
    run = _run(s)
    _edit_run(run, lambda c: c["headstart"].update(unknowns={"file": "typicality.safetensors"}))
    _raw_pickle(run / "typicality.safetensors", _System(s.canary))
    return _predict(run)


# ---------------------------------------------------------------------- Keras
def _touch_canary(x: Any) -> Any:
    """What a hostile Keras layer runs: creates the canary named in the environment."""
    open(os.environ[CANARY_ENV], "w").close()
    return x


@functools.cache
def _keras_files() -> dict[str, bytes]:
    """Hostile Keras models, saved once by Keras itself (building them runs their payloads, so
    the canary points elsewhere meanwhile)."""
    import tempfile

    from headstart.backbones._keras import import_keras

    keras = import_keras()
    layers = keras.layers
    files: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        previous = os.environ.get(CANARY_ENV)
        os.environ[CANARY_ENV] = str(folder / "built")

        def lam() -> Any:
            return layers.Lambda(lambda t: _touch_canary(t), name="evil")

        @keras.saving.register_keras_serializable(package="hostile")
        class Touch(layers.Layer):  # a registered custom class: safe_mode lets it through
            def call(self, x: Any) -> Any:
                return _touch_canary(x)

        class TouchPlain(layers.Layer):  # registered by its plain name, no package
            def call(self, x: Any) -> Any:
                return _touch_canary(x)

        keras.saving.get_custom_objects()["TouchPlain"] = TouchPlain

        @keras.saving.register_keras_serializable(package="hostile")
        def touch_activation(x: Any) -> Any:
            return _touch_canary(x)

        def conv_base(inputs: Any) -> Any:
            x = layers.Conv2D(4, 3, name="conv1_conv")(inputs)
            return layers.GlobalAveragePooling2D(name="avg_pool")(x)

        def functional(middle: Callable[[Any], Any]) -> Any:
            inputs = keras.Input((16, 16, 3))
            x = middle(conv_base(inputs))
            return keras.Model(inputs, layers.Dense(2, name="predictions")(x), name="resnet50")

        inner_in = keras.Input((4,))
        inner = keras.Model(inner_in, lam()(inner_in), name="inner")
        models = {
            "sequential-lambda": keras.Sequential(
                [
                    keras.Input((16, 16, 3)),
                    layers.Conv2D(4, 3, name="conv1_conv"),
                    layers.GlobalAveragePooling2D(name="avg_pool"),
                    lam(),
                    layers.Dense(2, name="predictions"),
                ],
                name="resnet50",
            ),
            "functional-lambda": functional(lambda x: lam()(x)),
            "nested-lambda": functional(lambda x: inner(x)),
            "custom-layer": functional(lambda x: Touch(name="touch")(x)),
            "plain-custom-layer": functional(lambda x: TouchPlain(name="touch")(x)),
            "registered-activation": functional(
                lambda x: layers.Dense(4, activation=touch_activation)(x)
            ),
            "plain": functional(lambda x: x),
        }
        for name, model in models.items():
            model.save(folder / f"{name}.keras")
            files[f"{name}.keras"] = (folder / f"{name}.keras").read_bytes()
            if name in ("sequential-lambda", "nested-lambda", "custom-layer", "plain-custom-layer"):
                from keras.src.legacy.saving import legacy_h5_format

                legacy_h5_format.save_model_to_hdf5(model, folder / f"{name}.h5")
                files[f"{name}.h5"] = (folder / f"{name}.h5").read_bytes()
        if previous is None:
            del os.environ[CANARY_ENV]
        else:
            os.environ[CANARY_ENV] = previous
    return files


def _keras_file(s: Scene, name: str) -> Path:
    data = _keras_files()[name]
    s.monkeypatch.setenv(CANARY_ENV, str(s.canary))
    path = s.tmp / name
    path.write_bytes(data)
    return path


def _archive_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _edited_archive(s: Scene, edit: Callable[[dict[str, bytes]], None]) -> Path:
    members = _archive_members(_keras_files()["plain.keras"])
    edit(members)
    s.monkeypatch.setenv(CANARY_ENV, str(s.canary))
    return _write_archive(s.tmp / "edited.keras", members)


def _edit_keras_config(members: dict[str, bytes], edit: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()


def _dense_layer(config: dict[str, Any]) -> dict[str, Any]:
    return next(la for la in config["config"]["layers"] if la["class_name"] == "Dense")


for _name, _what in [
    ("sequential-lambda.keras", "a Sequential .keras with a Lambda layer"),
    ("functional-lambda.keras", "a Functional .keras with a Lambda layer"),
    ("nested-lambda.keras", "a Lambda inside a model nested in a Functional .keras"),
    ("custom-layer.keras", "a .keras with a registered custom layer class (package>name)"),
    ("registered-activation.keras", "a .keras whose Dense activation is a registered function"),
    ("sequential-lambda.h5", "a full-model legacy .h5 Sequential with a Lambda layer"),
    ("nested-lambda.h5", "a Lambda inside a nested model in a legacy .h5"),
    ("custom-layer.h5", "a legacy .h5 with a registered custom layer class"),
    ("plain-custom-layer.h5", "a legacy .h5 naming a custom object registered without a package"),
]:

    def _keras_user_model(s: Scene, _name: str = _name) -> list[str]:
        return _features(f"keras:{_keras_file(s, _name)}", "default")

    _kind(f"keras-{_name.replace('.', '-')}", _what)(_keras_user_model)


@_kind(
    "keras-lambda-h5-as-application-weights", "a Lambda .h5 given as keras:MobileNetV2's weights"
)
def _(s: Scene) -> list[str]:
    return _features("keras:MobileNetV2", _keras_file(s, "sequential-lambda.h5"))


@_kind("keras-class-from-module-os", "a .keras layer naming its class's module as 'os'")
def _(s: Scene) -> list[str]:
    def edit(members: dict[str, bytes]) -> None:
        _edit_keras_config(members, lambda c: _dense_layer(c).update(module="os"))

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


@_kind("keras-activation-builtins-exec", "a Dense activation that is builtins.exec by reference")
def _(s: Scene) -> list[str]:
    evil = {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": "exec",
    }

    def edit(members: dict[str, bytes]) -> None:
        _edit_keras_config(members, lambda c: _dense_layer(c)["config"].update(activation=evil))

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


@_kind("keras-config-is-pickle", "a .keras archive whose config.json is a pickle payload")
def _(s: Scene) -> list[str]:
    def edit(members: dict[str, bytes]) -> None:
        members["config.json"] = pickle.dumps(_System(s.canary))

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


@_kind("keras-assets-pickle", "a .keras archive carrying a pickle payload under assets/")
def _(s: Scene) -> list[str]:
    def edit(members: dict[str, bytes]) -> None:
        members["assets/evil.pkl"] = pickle.dumps(_System(s.canary))

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


@_kind("keras-weights-npz-object-array", "a .keras whose weights are an .npz of pickled objects")
def _(s: Scene) -> list[str]:
    import numpy as np

    def edit(members: dict[str, bytes]) -> None:
        del members["model.weights.h5"]
        buf = io.BytesIO()
        evil = np.empty(1, dtype=object)
        evil[0] = _System(s.canary)
        np.savez(buf, **{"layers/conv1_conv/vars/0": evil})
        members["model.weights.npz"] = buf.getvalue()

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


@_kind("keras-without-config", "a .keras archive with no config.json")
def _(s: Scene) -> list[str]:
    return _features(f"keras:{_edited_archive(s, lambda m: m.pop('config.json'))}", "default")


@_kind("keras-config-deeply-nested", "a .keras config.json nested 100,000 lists deep")
def _(s: Scene) -> list[str]:
    def edit(members: dict[str, bytes]) -> None:
        members["config.json"] = b"[" * 100_000 + b"]" * 100_000

    return _features(f"keras:{_edited_archive(s, edit)}", "default")


def _deflate_bomb(size: int) -> bytes:
    """A raw deflate stream of ``size`` spaces, built from one flushed block repeated: a
    kilobyte per 2**20 spaces, without compressing ``size`` bytes. (Its zip entry's CRC is left
    wrong: a reader finds that out only after inflating it all, the harm this kind checks for.)"""
    chunk = 2**20
    assert size % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b" " * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * (size // chunk) + b"\x03\x00"  # an empty final block ends the stream


@functools.cache
def _bomb_member(size: int) -> bytes:
    return _deflate_bomb(size)


def _zip_with_raw_member(path: Path, members: dict[str, bytes], name: str, size: int) -> Path:
    """A zip of ``members`` plus ``name``: ``size`` spaces stored as a deflate bomb."""
    data = _bomb_member(size)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.CRC, info.compress_size, info.file_size = 0, len(data), size
        info.header_offset = archive.fp.tell()  # type: ignore[union-attr]
        archive.fp.write(info.FileHeader())  # type: ignore[union-attr]
        archive.fp.write(data)  # type: ignore[union-attr]
        archive.start_dir = archive.fp.tell()  # type: ignore[union-attr]
        archive.filelist.append(info)
        archive.NameToInfo[info.filename] = info
    return path


@_kind("keras-config-zip-bomb", "a .keras whose config.json inflates to 2 GiB from 2 MiB")
def _(s: Scene) -> list[str]:
    members = _archive_members(_keras_files()["plain.keras"])
    del members["config.json"]
    path = _zip_with_raw_member(s.tmp / "bomb.keras", members, "config.json", 2**31)
    return _features(f"keras:{path}", "default")


@_kind("keras-h5-config-is-pickle", "a legacy .h5 whose model_config attribute is a pickle")
def _(s: Scene) -> list[str]:
    import h5py
    import numpy as np

    path = _keras_file(s, "sequential-lambda.h5")
    with h5py.File(path, "a") as f:
        f.attrs["model_config"] = np.void(pickle.dumps(_System(s.canary)))
    return _features(f"keras:{path}", "default")


@_kind("keras-h5-that-is-a-pickle", "a .h5 model file holding a pickle payload, not HDF5")
def _(s: Scene) -> list[str]:
    path = _raw_pickle(s.tmp / "evil.h5", _System(s.canary))
    return _features(f"keras:{path}", "default")


@_kind("run-keras-config-lambda", "a run folder whose saved Keras backbone config has a Lambda")
def _(s: Scene) -> list[str]:
    lambda_config = {
        "class_name": "Functional",
        "config": {"layers": [{"class_name": "Lambda", "config": {"function": "x"}}]},
    }
    spec = {"family": "keras", "architecture": "model", "weights_id": "sha256:0"}

    def edit(config: dict[str, Any]) -> None:
        config["headstart"]["backbone"] = {**spec, "keras_config": lambda_config}

    return _predict(_edit_run(_run(s), edit))


# ---------------------------------------------------------------------- lying safetensors
def _lie(blob: bytes, name: str = "", **fields: Any) -> bytes:
    """``blob`` with one tensor's header entry changed (``offsets`` sets data_offsets)."""
    header, data = split_safetensors(blob)
    name = name or next(k for k in header if k != "__metadata__")  # the first tensor
    for key, value in fields.items():
        header[name]["data_offsets" if key == "offsets" else key] = value
    return pack_safetensors(header, data)


def _weights_kind(
    name: str, description: str, make: Callable[[bytes], bytes], *, loads: bool = False
) -> None:
    def write(s: Scene) -> list[str]:
        path = s.tmp / "lying.safetensors"
        path.write_bytes(make(_resnet_safetensors()))
        return _features("test_resnet", path)

    _kind(name, description, loads=loads)(write)


def _tensor_names(blob: bytes) -> list[str]:
    return [k for k in split_safetensors(blob)[0] if k != "__metadata__"]


def _first_offsets(blob: bytes) -> list[int]:
    return split_safetensors(blob)[0][_tensor_names(blob)[0]]["data_offsets"]


def _second(blob: bytes) -> str:
    return _tensor_names(blob)[1]


_weights_kind(
    "safetensors-offsets-past-eof",
    "a tensor's data_offsets end 2**40 bytes past the file",
    lambda b: _lie(b, offsets=[0, 2**40]),
)
_weights_kind(
    "safetensors-overlapping-offsets",
    "two tensors claim the same bytes",
    lambda b: _lie(b, name=_second(b), offsets=_first_offsets(b)),
)
_weights_kind(
    "safetensors-negative-offsets",
    "data_offsets that are negative",
    lambda b: _lie(b, offsets=[-64, 64]),
)
_weights_kind(
    "safetensors-header-length-huge",
    "a header length of 2**63 bytes",
    lambda b: struct.pack("<Q", 2**63) + b[8:],
)
_weights_kind(
    "safetensors-header-length-past-eof",
    "a header length one byte longer than the file",
    lambda b: struct.pack("<Q", len(b) + 1) + b[8:],
)
_weights_kind(
    "safetensors-header-not-json",
    "a header of bytes that are not JSON",
    lambda b: struct.pack("<Q", 16) + b"{not json}\x00\xff\xfe\x80\x81" + b[24:],
)
_weights_kind(
    "safetensors-unknown-dtype",
    "a dtype safetensors does not know",
    lambda b: _lie(b, dtype="X9"),
)
_weights_kind(
    "safetensors-shape-times-dtype-not-bytes",
    "a shape whose size in bytes is not its data_offsets' span",
    lambda b: _lie(b, shape=[128, 3, 3, 3]),
)
_weights_kind(
    "safetensors-enormous-shape",
    "a declared shape of 2**40 elements over a few bytes",
    lambda b: _lie(b, shape=[2**40]),
)
_weights_kind(
    "safetensors-enormous-shape-and-offsets",
    "2**40 float32 elements with offsets to match, past the end of the file",
    lambda b: _lie(b, shape=[2**40], offsets=[0, 4 * 2**40]),
)
_weights_kind(
    "safetensors-shape-overflows-u64",
    "a shape whose element count overflows 64 bits",
    lambda b: _lie(b, shape=[2**32, 2**32, 2**32]),
)
_weights_kind(
    "safetensors-metadata-not-strings",
    "__metadata__ holding a number and a nested object",
    lambda b: pack_safetensors(
        {**split_safetensors(b)[0], "__metadata__": {"a": 1, "b": {"c": []}}},
        split_safetensors(b)[1],
    ),
)
_weights_kind("safetensors-empty-file", "a zero-byte .safetensors", lambda b: b"")
_weights_kind(
    "safetensors-header-without-data",
    "a header listing every tensor, and no data after it",
    lambda b: pack_safetensors(split_safetensors(b)[0], b""),
)
_weights_kind(
    "safetensors-tensors-of-another-model",
    "valid tensors with other names and shapes",
    lambda b: save({"fc.weight": torch.zeros(3, 4)}),
)
_weights_kind(
    "safetensors-weights-as-int64",
    "every float tensor stored as int64 of the right shape",
    lambda b: save(
        {k: v.long() if v.is_floating_point() else v for k, v in _resnet_state().items()}
    ),
    loads=True,  # tensors of the right shapes: loading converts them
)


def _run_weights_kind(
    name: str,
    description: str,
    edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> None:
    def write(s: Scene) -> list[str]:
        from safetensors.torch import load_file

        run = _run(s)
        tensors = edit(load_file(run / "model.safetensors"))
        save_file(tensors, run / "model.safetensors", metadata={"format": "pt"})
        return _predict(run)

    _kind(name, description)(write)


_run_weights_kind(
    "run-weights-nan-inf",
    "a run whose weights are NaN and infinite",
    lambda t: {
        k: (torch.full_like(v, float("nan")) if i % 2 else torch.full_like(v, float("inf")))
        if v.is_floating_point()
        else v
        for i, (k, v) in enumerate(t.items())
    },
)
_run_weights_kind(
    "run-weights-missing-head",
    "a run whose head tensors are missing",
    lambda t: {k: v for k, v in t.items() if not k.startswith("fc.")},
)
_run_weights_kind(
    "run-weights-extra-tensors",
    "a run with tensors no layer has",
    lambda t: {**t, "evil.weight": torch.zeros(3), "fc.extra": torch.zeros(1)},
)
_run_weights_kind(
    "run-weights-wrong-head-shape",
    "a run whose head is 7 x 5 where the config says 3 x 96",
    lambda t: {**t, "fc.weight": torch.zeros(7, 5), "fc.bias": torch.zeros(7)},
)


@_kind("run-weights-lying-header", "a run whose model.safetensors has a tensor past EOF")
def _(s: Scene) -> list[str]:
    run = _run(s)
    blob = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(_lie(blob, name="fc.weight", offsets=[0, 2**40]))
    return _predict(run)


# ---------------------------------------------------------------------- links and odd files
@_kind("run-config-symlink-to-etc-passwd", "a run's config.json is a link to /etc/passwd")
def _(s: Scene) -> list[str]:
    run = _run(s)
    (run / "config.json").unlink()
    (run / "config.json").symlink_to("/etc/passwd")
    return _predict(run)


@_kind("run-weights-symlink-to-etc-passwd", "a run's model.safetensors links to /etc/passwd")
def _(s: Scene) -> list[str]:
    run = _run(s)
    (run / "model.safetensors").unlink()
    (run / "model.safetensors").symlink_to("/etc/passwd")
    return _predict(run)


@_kind("run-weights-symlink-to-dev-zero", "a run's model.safetensors links to /dev/zero")
def _(s: Scene) -> list[str]:
    run = _run(s)
    (run / "model.safetensors").unlink()
    (run / "model.safetensors").symlink_to("/dev/zero")
    return _predict(run)


@_kind(
    "model-folder-weights-symlink-outside",
    "a local-dir's weights link to a file elsewhere",
    loads=True,  # as Hugging Face's cache links its blobs
)
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    elsewhere = s.tmp / "elsewhere" / "weights.safetensors"
    elsewhere.parent.mkdir()
    (folder / "model.safetensors").rename(elsewhere)
    (folder / "model.safetensors").symlink_to(elsewhere)  # as Hugging Face's cache links blobs
    return _features(f"local-dir:{folder}", "default")


@_kind("weights-symlink-loop", "--weights a link that points to itself through another link")
def _(s: Scene) -> list[str]:
    (s.tmp / "a.safetensors").symlink_to(s.tmp / "b.safetensors")
    (s.tmp / "b.safetensors").symlink_to(s.tmp / "a.safetensors")
    return _features("test_resnet", s.tmp / "a.safetensors")


@_kind("weights-fifo", "--weights a named pipe (reading it would block)")
def _(s: Scene) -> list[str]:
    os.mkfifo(s.tmp / "pipe.safetensors")
    return _features("test_resnet", s.tmp / "pipe.safetensors")


@_kind("model-folder-weights-is-a-directory", "a local-dir whose model.safetensors is a folder")
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    return _features(f"local-dir:{folder}", "default")


@_kind("run-config-is-a-directory", "a run whose config.json is a folder")
def _(s: Scene) -> list[str]:
    run = _run(s)
    (run / "config.json").unlink()
    (run / "config.json").mkdir()
    return _predict(run)


@_kind("run-weights-empty", "a run whose model.safetensors has zero bytes")
def _(s: Scene) -> list[str]:
    run = _run(s)
    (run / "model.safetensors").write_bytes(b"")
    return _predict(run)


@_kind("run-folder-is-a-file", "a run folder that is a file")
def _(s: Scene) -> list[str]:
    (s.tmp / "run").write_bytes(_resnet_safetensors())
    return _predict(s.tmp / "run")


# ---------------------------------------------------------------------- config.json
def _config_kind(name: str, description: str, edit: Callable[[dict[str, Any]], None]) -> None:
    def write(s: Scene) -> list[str]:
        return _predict(_edit_run(_run(s), edit))

    _kind(name, description)(write)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        node = config
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


_config_kind(
    "run-config-classes-not-a-list",
    "classes a string, head kind a list: wrong types",
    lambda c: (c["headstart"].update(classes="red"), c["headstart"]["head"].update(kind=[1])),
)
_config_kind(
    "run-config-head-huge-numbers",
    "a head of 10**30 inputs",
    _set("headstart.head.in_features", 10**30),
)
_config_kind(
    "run-config-enormous-input-size",
    "preprocessing to a 10**6 x 10**6 input",
    _set("headstart.preprocess.input_size", [10**6, 10**6]),
)
_config_kind(
    "run-config-million-classes",
    "a million class names",
    _set("headstart.classes", [f"c{i}" for i in range(10**6)]),
)
_config_kind(
    "run-config-nan-infinity",
    "NaN and Infinity literals for the preprocessing mean and std",
    lambda c: c["headstart"]["preprocess"].update(mean=[float("nan")] * 3, std=[float("inf")] * 3),
)
_config_kind(
    "run-config-future-format",
    "format_version 99",
    _set("headstart.format_version", 99),
)
_config_kind(
    "run-config-architecture-os-system",
    "a backbone architecture of 'os.system'",
    _set("headstart.backbone.architecture", "os.system"),
)
_config_kind(
    "run-config-torchvision-unknown-architecture",
    "a torchvision backbone named '__import__'",
    lambda c: c["headstart"]["backbone"].update(family="torchvision", architecture="__import__"),
)
_config_kind(
    "run-config-layer-dunder-path",
    "a --layer of '__class__.__init__.__globals__'",
    _set("headstart.backbone.layer", "__class__.__init__.__globals__"),
)
_config_kind(
    "run-config-model-args-checkpoint",
    "model_args that would load a checkpoint and download weights",
    _set("headstart.backbone.model_args", {"checkpoint_path": "/etc/passwd", "pretrained": True}),
)


def _raw_config_kind(
    name: str, description: str, content: Callable[[], bytes], *, loads: bool = False
) -> None:
    def write(s: Scene) -> list[str]:
        run = _run(s)
        (run / "config.json").write_bytes(content())
        return _predict(run)

    _kind(name, description, loads=loads)(write)


_raw_config_kind(
    "run-config-deeply-nested",
    "a config.json nested 100,000 lists deep",
    lambda: b"[" * 100_000 + b"]" * 100_000,
)
_raw_config_kind(
    "run-config-not-utf8", "a config.json in Latin-1 bytes", lambda: b'{"headstart": "\xe9\xff"}'
)
_raw_config_kind("run-config-json-array", "a config.json holding a list", lambda: b"[1, 2, 3]")
_raw_config_kind("run-config-empty", "a zero-byte config.json", lambda: b"")
_raw_config_kind(
    "run-config-padded-to-64-mib",
    "a valid config.json padded with 64 MiB of whitespace",
    lambda: (DATA / "linear" / "config.json").read_bytes() + b" " * 2**26,
    loads=True,
)


@_kind("model-folder-architecture-os-system", "a local-dir config naming architecture os.system")
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    (folder / "config.json").write_text(json.dumps({"architecture": "os.system"}))
    return _features(f"local-dir:{folder}", "default")


@_kind(
    "model-folder-location-keys",
    "a local-dir config pointing url/file/hf_hub_id at a payload",
    loads=True,  # the keys are ignored, never fetched
)
def _(s: Scene) -> list[str]:
    folder = _timm_folder(s.tmp / "m")
    evil = _raw_pickle(s.tmp / "evil.pth", _System(s.canary))
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"].update(
        url="https://evil.example/w.pth", file=str(evil), hf_hub_id="evil/repo"
    )
    (folder / "config.json").write_text(json.dumps(config))
    return _features(f"local-dir:{folder}", "default")
