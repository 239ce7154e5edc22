"""Fuzzed model files: a damaged or hostile weights file or Keras model is refused in one line.

``--weights FILE`` (``.safetensors``, ``.pth``) goes through ``load_state_dict_file``; a user's
Keras classifier (``keras:PATH.keras``, ``.h5``) through ``create_backbone``. Seeds are valid
files written here; mutations damage their bytes, or (for the Keras archive) change one value of
the model config in it, adding Lambda layers, custom classes and modules, or lying sizes. The
only allowed outcomes are tensors / a backbone, or a ``HeadstartError``; nothing is unpickled
beyond tensors or executed (the stores' own tests, tests/test_weights_safety.py, check the
hostile payloads one by one), and no case may hang or grow memory without bound.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save

from headstart.backbones import create_backbone, load_state_dict_file
from headstart.errors import HeadstartError
from tests._fuzz import bounded, mutated

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "conv.bias": torch.randn(4),
        "fc.weight": torch.randn(2, 4),
        "steps": torch.tensor(7),
    }


def _pth(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


WEIGHT_SEEDS = {
    ".safetensors": save(_state()),
    ".pth": _pth(_state()),
    ".pt": _pth({"state_dict": _state(), "epoch": 3}),
    ".bin": _pth({"model": {f"module.{k}": v for k, v in _state().items()}}),
}


@given(case=mutated(WEIGHT_SEEDS))
def test_fuzzed_weights_file_loads_as_tensors_or_is_one_weights_error(
    case: tuple[str, bytes], tmp_path: Path
) -> None:
    suffix, blob = case
    path = tmp_path / f"weights{suffix}"
    path.write_bytes(blob)
    with bounded():
        try:
            state = load_state_dict_file(path)
        except HeadstartError as exc:
            assert str(exc) and "\n" not in str(exc)
        else:
            assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.fixture(scope="module")
def keras_seed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny user classifier, saved as Keras saves it: a zip of config.json and weights."""
    from headstart.backbones._keras import import_keras

    keras = import_keras()
    layers = keras.layers
    inputs = keras.Input((16, 16, 3), name="image")
    x = layers.Conv2D(4, 3, name="conv1_conv")(inputs)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, layers.Dense(3, name="predictions")(x), name="resnet50")
    path = tmp_path_factory.mktemp("keras") / "classifier.keras"
    model.save(path)
    # The same bytes in every process (every name given, no save date), so that a case kept in
    # .hypothesis/ by one fuzzing round replays in the next.
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files["metadata.json"] = b'{"keras_version": "3", "date_saved": "2000-01-01@00:00:00"}'
    return _zipped(files)


def _zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


_HOSTILE = st.sampled_from(
    [
        {"class_name": "Lambda", "config": {"function": "x"}},
        {"class_name": "Dense", "module": "os", "config": {"units": 2}},
        {"class_name": "Dense", "registered_name": "evil>Dense", "config": {"units": 2}},
        {"class_name": "__lambda__", "config": {"code": "AAAA"}},
        {"class_name": "function", "config": "os.system"},
    ]
)
_VALUES = st.one_of(
    st.none(),
    st.sampled_from([0, -1, 2**31, 10**12, 3.5, "", "relu", "valid", [1, 1], [2**20, 2**20]]),
    _HOSTILE,
)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*at, i))
    return found


@st.composite
def _keras_archive(draw: st.DrawFn, seed: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(seed)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(files["config.json"])
    path = draw(st.sampled_from([p for p in _paths(config) if p]))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = draw(_VALUES)
    files["config.json"] = json.dumps(config).encode()
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(files)))
        data = files[name]
        cut = draw(st.integers(0, len(data)))
        files[name] = data[:cut]
    return _zipped(files)


@given(data=st.data())
def test_fuzzed_keras_model_builds_or_is_one_headstart_error(
    data: st.DataObject, keras_seed: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "classifier.keras"
    blob = data.draw(_keras_archive(keras_seed))
    if data.draw(st.integers(0, 4)) == 0:  # damaged zip bytes, not just odd config values
        at = data.draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ 0x5A]) + blob[at + 1 :]
    path.write_bytes(blob)
    with bounded():
        try:
            create_backbone(f"keras:{path}", weights="default")
        except HeadstartError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
