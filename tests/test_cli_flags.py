"""Every `headstart train` and `export` flag reaches what it controls, as the run records it.

A flag parsed but never passed on (or passed under the wrong name, or swallowed by a default)
still exits 0, so each case asserts the value where it acts: the run's config.json (the
preprocessing, the head, the training settings) and, where there is one, the effect the run
records (the stage's feature width, the images of the final fit, the C path). Every expected
value differs from the default, so a dropped flag fails its case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from headstart.cli.main import main
from headstart.runs import read_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# test_resnet at its own 160 px for the features strategy (its preprocessing is the subject);
# 32 px where a network trains, to keep each case near a second.
FEATURES = ["--strategy", "features"]
TRAINING = ["--epochs", "1", "--input-size", "32", "--batch-size", "8"]

CASES = [
    pytest.param(
        [*FEATURES, "--layer", "1"],
        {"training.layer": 1, "head.in_features": 32},  # the first stage's width, not 96
        id="layer",
    ),
    pytest.param(
        [*FEATURES, "--aug-views", "2"],
        {"training.aug_views": 2, "training.selection.fit_images.augmented_views": 2 * 24},
        id="aug-views",
    ),
    pytest.param(
        [*FEATURES, "--calibrate", "none"],
        {"calibration.method": "none"},
        id="calibrate",
    ),
    pytest.param(
        [*FEATURES, "--refit", "none"],
        {"training.refit": False, "training.selection.fit_images": {"train": 24}},
        id="refit",
    ),
    pytest.param(
        [*FEATURES, "--head", "mlp", "--epochs", "2"],
        {"head.kind": "mlp", "training.head": "mlp", "training.epochs": 2},
        id="head",
    ),
    pytest.param(
        [*FEATURES, "--C", "0.5"],
        {"training.C": 0.5, "training.selection.final_C": 0.5, "training.selection.C": 0.5},
        id="C",
    ),
    pytest.param(
        [*FEATURES, "--unknown-score", "knn", "--unknown-threshold", "0.1"],
        {"unknowns.score": "knn", "unknowns.threshold": 0.1},
        id="unknown-score-threshold",
    ),
    pytest.param(
        [*FEATURES, "--resize", "squash"],
        {"preprocess.crop_mode": "squash", "preprocess.resize": [160, 160]},
        id="resize",
    ),
    pytest.param(
        [*FEATURES, "--mean", "0.4,0.45,0.5", "--std", "0.2,0.25,0.3"],
        {"preprocess.mean": [0.4, 0.45, 0.5], "preprocess.std": [0.2, 0.25, 0.3]},
        id="mean-std",
    ),
    pytest.param(
        [*FEATURES, "--interpolation", "bicubic"],
        {"preprocess.interpolation": "bicubic", "preprocess.overrides": ["interpolation"]},
        id="interpolation",
    ),
    pytest.param(
        [*FEATURES, "--crop-pct", "0.8"],
        {"preprocess.crop_pct": 0.8, "preprocess.resize": 200},  # 160 / 0.8
        id="crop-pct",
    ),
    pytest.param(
        [*FEATURES, "--input-size", "64"],
        {"preprocess.input_size": [64, 64], "preprocess.resize": 67},  # round(64 / 0.95)
        id="input-size",
    ),
    pytest.param(
        ["--strategy", "augment", *TRAINING, "--schedule", "onecycle", "--grad-clip", "1.5"],
        {"training.schedule": "onecycle", "training.grad_clip": 1.5, "training.epochs": 1},
        id="schedule-grad-clip",
    ),
    pytest.param(
        ["--strategy", "augment", *TRAINING, "--label-smoothing", "0.1", "--lr", "0.01"],
        {"training.label_smoothing": 0.1, "training.lr": 0.01, "training.batch_size": 8},
        id="label-smoothing-lr",
    ),
    pytest.param(
        ["--strategy", "augment", *TRAINING, "--weight-decay", "0.003", "--patience", "3"],
        {"training.weight_decay": 0.003, "training.patience": 3},
        id="weight-decay-patience",
    ),
    pytest.param(
        ["--strategy", "augment", *TRAINING, "--warmup-epochs", "0.5", "--seed", "3"],
        {"training.warmup_epochs": 0.5, "training.seed": 3},
        id="warmup-seed",
    ),
    pytest.param(
        ["--strategy", "augment", *TRAINING, "--augment", "light", "--rotation", "7"],
        {"training.augment.preset": "light+custom", "training.augment.rotation": 7.0},
        id="augment",
    ),
    pytest.param(
        ["--strategy", "finetune", *TRAINING, "--layer-decay", "0.5", "--unfreeze", "1"],
        {"training.layer_decay": 0.5, "training.unfreeze": 1, "strategy": "finetune"},
        id="layer-decay-unfreeze",
    ),
    pytest.param(
        ["--strategy", "finetune", *TRAINING, "--bn", "train"],
        {"training.bn": "train"},
        id="bn",
    ),
    pytest.param(
        ["--strategy", "scratch", *TRAINING],
        {"strategy": "scratch", "training.strategy": "scratch"},
        id="scratch",
    ),
]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One feature cache for the module: the cases share images and most share preprocessing,
    and a hit gives the same features a fresh extraction would."""
    return tmp_path_factory.mktemp("cache")


def _at(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value[key]
    return value


@pytest.mark.parametrize(("flags", "expected"), CASES)
def test_a_train_flag_reaches_the_setting_it_controls(
    colour_data, shared_cache, tmp_path, flags: list[str], expected: dict[str, Any]
) -> None:
    run = tmp_path / "run"
    args = ["train", str(colour_data), "--out", str(run), "--model", "test_resnet"]
    args += ["--weights", "none", "--workers", "0", "-q", "--cache-dir", str(shared_cache)]

    assert main([*args, *flags]) == 0

    config = read_config(run)["headstart"]
    got = {path: _at(config, path) for path in expected}
    assert got == expected


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_export_format_input_and_sample_reach_the_written_model(
    colour_data, shared_cache, tmp_path
) -> None:
    run = tmp_path / "run"
    train = ["train", str(colour_data), "--out", str(run), "--model", "test_resnet"]
    train += ["--weights", "none", "--strategy", "features", "--workers", "0", "-q"]
    assert main([*train, "--cache-dir", str(shared_cache)]) == 0
    samples = [str(p) for p in sorted((colour_data / "test").rglob("*.png"))[:2]]
    out = tmp_path / "exported" / "m.pt"

    command = ["export", str(run), "--format", "torchscript", "--input", "uint8"]
    assert main([*command, "--out", str(out), "--sample", *samples, "-q"]) == 0

    sidecar = json.loads(Path(f"{out}.json").read_text())
    assert sidecar["format"] == "torchscript" and sidecar["file"] == "m.pt"
    assert sidecar["input_contract"] == "uint8"
    assert sidecar["input"]["dtype"] == "uint8" and sidecar["input"]["shape"] == ["N", 160, 160, 3]
    assert sidecar["parity"]["images"] == 2  # the two --sample images, not the run's eight


def _option(command: str, flag: str) -> Any:
    """The argparse action of ``flag`` on the ``command`` subparser."""
    import argparse

    from headstart.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


def test_cli_unknown_options_match_the_library_defaults() -> None:
    """The CLI spells the typicality scores and the 0.05 default itself, so that ``--help``
    imports no torch; this pins them to ``heads.typicality``. Mutation: adding a score to
    ``SCORES`` (or changing ``DEFAULT_THRESHOLD``) without the CLI fails here."""
    from headstart.heads.typicality import DEFAULT_SCORE, DEFAULT_THRESHOLD, SCORES

    score = _option("train", "--unknown-score")
    assert sorted(score.choices) == sorted((*SCORES, "auto", "none"))
    assert score.default == DEFAULT_SCORE
    assert _option("train", "--unknown-threshold").default == DEFAULT_THRESHOLD
    assert _option("predict", "--unknown-threshold").default is None  # the run's
