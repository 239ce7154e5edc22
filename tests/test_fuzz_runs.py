"""Fuzzed run folders: a damaged ``config.json`` or ``model.safetensors`` is one line and exit 2.

Seeds are the two format-1 runs kept in tests/data/runs_v1 (a linear head on final features and
an MLP on an earlier stage). Mutations change one value anywhere in the config (deleted, or
replaced by null, a huge or negative number, NaN, a string, a list, an object), damage its bytes,
or damage the weights: safetensors headers that lie about dtypes, shapes and offsets, a header
length past the end, truncation, or another run's weights. ``headstart info`` and ``headstart
predict`` then either work or end in ``error: ...`` (exit 2); never a traceback.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headstart.cli.main import main
from tests._fuzz import bounded, pack_safetensors, split_safetensors

RUNS = Path(__file__).parent / "data" / "runs_v1"
SEED_RUNS = ("linear", "mlp_layer")
IMAGE = RUNS / "images" / "red_0.png"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _leaves(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON tree, inner nodes included."""
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _leaves(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _leaves(value, (*at, i))
    return found


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**30]),
    st.integers(-5, 5),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 1e-320]),
    st.text(max_size=6),
    st.sampled_from(["", "fast", "linear", "mlp", "timm", "keras", "../../x", "RGB"]),
    st.lists(st.integers(-2, 2**20), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def _config_mutation(draw: st.DrawFn, config: dict[str, Any]) -> bytes:
    config = json.loads(json.dumps(config))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _leaves(config) if p]
        path = draw(st.sampled_from(paths))
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON_VALUES)
    text = json.dumps(config).encode()
    if draw(st.integers(0, 9)) == 0:  # damaged bytes, not just odd values
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(st.sampled_from([b"", b"\x00", b"\xff", b"{", b'"'])) + text[at:]
    return text


@st.composite
def _weights_mutation(draw: st.DrawFn, blob: bytes, other: bytes) -> bytes:
    kind = draw(
        st.sampled_from(["header", "header", "length", "truncate", "flip", "other", "empty"])
    )
    if kind == "other":
        return other  # another run's weights: names or shapes that do not fit
    if kind == "empty":
        return b""
    if kind == "truncate":
        return blob[: draw(st.integers(0, len(blob) - 1))]
    if kind == "flip":
        at = draw(st.integers(0, min(len(blob) - 1, 4096)))
        return blob[:at] + bytes([blob[at] ^ draw(st.integers(1, 255))]) + blob[at + 1 :]
    if kind == "length":
        lie = draw(st.sampled_from([0, 1, 7, 2**32, 2**63, len(blob), len(blob) - 8]))
        return struct.pack("<Q", lie) + blob[8:]
    header, data = split_safetensors(blob)
    names = sorted(k for k in header if k != "__metadata__")
    name = draw(st.sampled_from(names))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "delete", "rename"]))
    if field == "delete":
        del header[name]
    elif field == "rename":
        header[name + ".x"] = header.pop(name)
    elif field == "dtype":
        header[name]["dtype"] = draw(st.sampled_from(["F16", "I64", "BOOL", "U8", "F64", "X"]))
    elif field == "shape":
        header[name]["shape"] = draw(
            st.sampled_from([[], [0], [2**40], [2**31, 2**31], [-1], [3, 3, 3, 3, 3]])
        )
    else:
        header[name]["data_offsets"] = draw(
            st.sampled_from([[0, 0], [0, 2**40], [8, 4], [0, len(data) + 8], [-1, 4]])
        )
    return pack_safetensors(header, data)


CONFIGS = {name: json.loads((RUNS / name / "config.json").read_text()) for name in SEED_RUNS}
WEIGHTS = {name: (RUNS / name / "model.safetensors").read_bytes() for name in SEED_RUNS}


def _seed_run(name: str, folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(RUNS / name, folder)
    return folder


def _one_line_or_success(
    argv: list[str], capsys: pytest.CaptureFixture[str], ok: tuple[int, ...] = (0,)
) -> None:
    with bounded():
        code = main(argv)
    err = capsys.readouterr().err
    assert code in (*ok, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err


@st.composite
def _damaged_config(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(SEED_RUNS))
    return name, draw(_config_mutation(CONFIGS[name]))


@st.composite
def _damaged_weights(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(SEED_RUNS))
    other = WEIGHTS[SEED_RUNS[1 - SEED_RUNS.index(name)]]
    return name, draw(_weights_mutation(WEIGHTS[name], other))


@given(case=_damaged_config())
def test_run_with_a_fuzzed_config_is_described_and_predicts_or_exits_2_with_one_line(
    case: tuple[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, config = case
    run = _seed_run(name, tmp_path / "run")
    (run / "config.json").write_bytes(config)
    _one_line_or_success(["info", str(run)], capsys)
    _one_line_or_success(["predict", str(run), str(IMAGE), "-q"], capsys)


@given(case=_damaged_weights())
def test_run_with_fuzzed_weights_predicts_or_exits_2_with_one_line(
    case: tuple[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, weights = case
    run = _seed_run(name, tmp_path / "run")
    (run / "model.safetensors").write_bytes(weights)
    _one_line_or_success(["predict", str(run), str(IMAGE), "-q"], capsys)
