"""Extraction engines: ONNX Runtime and OpenVINO give torch's features, or torch does."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.backbones import create_backbone
from headstart.cli.main import main
from headstart.errors import EngineWarning, InvalidParameterError
from headstart.features import FeatureCache, extract_features
from headstart.features import engines as engines_module
from headstart.features.engines import (
    PARITY_TOLERANCE,
    check_engine,
    choose_engine,
    select_runner,
)
from tests._backbones import write_bn_backbone
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INSTALLED = [
    pytest.param(
        name,
        marks=pytest.mark.skipif(
            not engines_module._installed(name), reason=f"{name} is not installed"
        ),
    )
    for name in ("onnxruntime", "openvino")
]


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    """A 32 px BatchNorm backbone folder and a few images."""
    root = tmp_path_factory.mktemp("engines")
    model = write_bn_backbone(root / "backbone")
    data = write_colour_dataset(root / "data", {"": 2})
    return model, sorted(p for p in data.rglob("*.*") if p.suffix in (".png", ".jpeg"))


@pytest.fixture(autouse=True)
def _say_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with nothing said yet (the module says each thing once a process)."""
    monkeypatch.setattr(engines_module, "_said", set())


def _features(model: str, paths: list[Path], engine: str, cache: FeatureCache | None = None):
    backbone = create_backbone(model)
    return extract_features(backbone, paths, cache=cache, num_workers=0, quiet=True, engine=engine)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("engine", INSTALLED)
def test_engine_features_equal_torchs_within_the_tolerance(stub, engine, tmp_path) -> None:
    model, paths = stub
    with FeatureCache(tmp_path / "cache") as cache:
        got = _features(model, paths, engine, cache)
    want = _features(model, paths, "torch")
    assert list((tmp_path / "cache" / "engines").glob("*.onnx"))  # the engine did run
    assert _relative(got.features, want.features) < PARITY_TOLERANCE


def test_missing_engine_package_says_one_line_and_gives_torchs_features(
    stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, paths = stub
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.warns(EngineWarning) as caught:
        got = _features(model, paths, "onnxruntime")
        _features(model, paths, "onnxruntime")
    said = [str(w.message) for w in caught if issubclass(w.category, EngineWarning)]
    assert len(said) == 1 and len(said[0].splitlines()) == 1
    assert "onnxruntime is not installed" in said[0] and "torch" in said[0]
    np.testing.assert_array_equal(got.features, _features(model, paths, "torch").features)


def test_auto_without_engine_packages_is_torch_and_says_nothing(
    stub, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, paths = stub
    for name in ("onnxruntime", "openvino"):
        monkeypatch.setitem(sys.modules, name, None)
    backbone = create_backbone(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner = select_runner(
            backbone.module,
            backbone.spec,
            (3, 32, 32),
            engine="auto",
            folder=Path("unused"),
            images=10_000,
        )
    assert runner is None


def test_engine_outside_the_tolerance_falls_back_to_torch_once(
    stub, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    model, paths = stub
    real = engines_module._SESSIONS["onnxruntime"]

    def off_by_a_bit(path):
        sessions = real(path)

        def session(threads):
            run = sessions(threads)
            return lambda x: run(x) * 1.01

        return session

    monkeypatch.setitem(engines_module._SESSIONS, "onnxruntime", off_by_a_bit)
    with FeatureCache(tmp_path / "cache") as cache, pytest.warns(EngineWarning) as caught:
        got = _features(model, paths, "onnxruntime", cache)
    said = [str(w.message) for w in caught if issubclass(w.category, EngineWarning)]
    assert len(said) == 1 and "1.0e-02 from torch's" in said[0]
    assert _relative(got.features, _features(model, paths, "torch").features) < 1e-6
    (record,) = (tmp_path / "cache" / "engines").glob("*.onnxruntime-*.json")
    assert json.loads(record.read_text())["usable"] is False


def test_features_from_another_engine_are_cache_hits(stub, tmp_path) -> None:
    model, paths = stub
    with FeatureCache(tmp_path / "cache") as cache:
        first = _features(model, paths, "onnxruntime", cache)
        again = _features(model, paths, "torch", cache)
    assert first.n_computed == len(paths)
    assert (again.n_computed, again.n_cached) == (0, len(paths))


def test_export_is_made_once_and_reused(stub, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    model, _ = stub
    backbone = create_backbone(model)
    options = dict(engine="onnxruntime", folder=tmp_path, images=1)
    assert select_runner(backbone.module, backbone.spec, (3, 32, 32), **options) is not None
    made = {p: p.stat().st_mtime_ns for p in (tmp_path / "engines").iterdir()}

    def no_second_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("torch.onnx.export", no_second_export)
    again = create_backbone(model)  # another process's backbone: same weights, same key
    assert select_runner(again.module, again.spec, (3, 32, 32), **options) is not None
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "engines").iterdir()} == made


def test_export_for_another_input_size_is_another_file(stub, tmp_path) -> None:
    model, _ = stub
    backbone = create_backbone(model)
    for size in (32, 48):
        select_runner(
            backbone.module,
            backbone.spec,
            (3, size, size),
            engine="onnxruntime",
            folder=tmp_path,
            images=1,
        )
    assert len(list((tmp_path / "engines").glob("*.onnx"))) == 2


def test_damaged_export_is_made_again(stub, tmp_path) -> None:
    model, paths = stub
    with FeatureCache(tmp_path / "cache") as cache:
        want = _features(model, paths, "onnxruntime", cache).features
    (export,) = (tmp_path / "cache" / "engines").glob("*.onnx")
    size = export.stat().st_size
    export.write_bytes(export.read_bytes()[: size // 2])  # a torn copy
    with FeatureCache(tmp_path / "cache") as cache:
        got = _features(model, paths, "onnxruntime", cache)
    assert got.n_computed == 0  # the features were cached; now the engine itself:
    backbone = create_backbone(model)
    runner = select_runner(
        backbone.module,
        backbone.spec,
        (3, 32, 32),
        engine="onnxruntime",
        folder=tmp_path / "cache",
        images=1,
    )
    assert runner is not None and export.stat().st_size == size
    x = torch.from_numpy(np.stack([np.zeros((3, 32, 32), np.float32)]))
    assert runner.run(x, 1).shape == (1, want.shape[1])


def test_auto_stays_on_torch_for_a_few_images_and_writes_nothing(stub, tmp_path) -> None:
    model, _ = stub
    backbone = create_backbone(model)
    runner = select_runner(
        backbone.module, backbone.spec, (3, 32, 32), engine="auto", folder=tmp_path, images=10
    )
    assert runner is None and not (tmp_path / "engines").exists()


def test_unknown_engine_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidParameterError, match="Unknown engine 'onnx'; choose one of auto"):
        check_engine("onnx")


def test_engine_option_reaches_config_json(stub, tmp_path) -> None:
    model, _ = stub
    data = write_colour_dataset(tmp_path / "data", {"train": 4, "val": 2})
    run = tmp_path / "run"
    args = ["train", str(data), "--model", model, "--strategy", "features", "--out", str(run)]
    assert main([*args, "--workers", "0", "--engine", "onnxruntime", "-q"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["headstart"]["training"]["engine"] == "onnxruntime"
    assert json.loads((run / "train_args.json").read_text())["args"]["engine"] == "onnxruntime"


def test_cli_engine_choices_are_the_librarys() -> None:
    from headstart.cli._common import ENGINE_CHOICES
    from headstart.features.engines import ENGINES

    assert ENGINE_CHOICES == ENGINES


def test_auto_measures_once_and_follows_its_record(
    stub, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    model, _ = stub
    backbone = create_backbone(model)
    options = dict(engine="auto", folder=tmp_path, images=10_000)
    first = select_runner(backbone.module, backbone.spec, (3, 32, 32), **options)
    (record,) = (tmp_path / "engines").glob("*.auto-*.json")
    chosen = json.loads(record.read_text())["chosen"]
    assert (first.name if first is not None else "torch") == chosen
    record.write_text(json.dumps({"chosen": "torch"}))  # what a slower engine would have left
    monkeypatch.setattr(engines_module, "_measure", None)  # measuring again would fail
    assert select_runner(backbone.module, backbone.spec, (3, 32, 32), **options) is None


@pytest.mark.parametrize(
    ("rates", "chosen"),
    [
        ({"torch": 10.0, "onnxruntime": 10.5, "openvino": 10.9}, "torch"),  # no clear win
        ({"torch": 10.0, "onnxruntime": 20.0, "openvino": 21.0}, "onnxruntime"),  # a tie
        ({"torch": 10.0, "onnxruntime": 20.0, "openvino": 30.0}, "openvino"),
        ({"torch": 10.0, "onnxruntime": 10.5, "openvino": 11.5}, "openvino"),
        ({"torch": 10.0}, "torch"),
    ],
)
def test_auto_takes_an_engine_only_when_it_clearly_wins(rates, chosen) -> None:
    assert choose_engine(rates) == chosen
