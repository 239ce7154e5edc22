"""The run folder says what it is: one reader of config.json, and whether plain timm loads it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import RunFolderError
from headstart.runs import read_config

RUNS_V1 = Path(__file__).parent / "data" / "runs_v1"


def _fit(tmp_path: Path, data: Path, **kwargs) -> Path:
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
        **kwargs,
    ).fit(data)
    return clf.save(tmp_path / "run")


def test_a_final_features_linear_run_says_plain_timm_loads_it(colour_data, tmp_path) -> None:
    run = _fit(tmp_path, colour_data)

    recorded = read_config(run)["headstart"]["plain_timm"]

    assert recorded["loads"] is True and "'fc'" in recorded["reason"]
    model = timm.create_model(f"local-dir:{run}", pretrained=True)
    assert model.get_classifier().out_features == 3


def test_a_layer_run_says_plain_timm_does_not_load_it_and_why(colour_data, tmp_path) -> None:
    run = _fit(tmp_path, colour_data, layer=1)

    recorded = read_config(run)["headstart"]["plain_timm"]

    assert recorded["loads"] is False and "stage" in recorded["reason"]
    with pytest.raises(RuntimeError, match="headstart_head"):
        timm.create_model(f"local-dir:{run}", pretrained=True)


@pytest.mark.parametrize(("run", "answer"), [("linear", "yes"), ("mlp_layer", "no")])
def test_info_says_whether_plain_timm_loads_a_run(run: str, answer: str, capsys) -> None:
    assert main(["info", str(RUNS_V1 / run)]) == 0

    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("plain timm:")]

    assert len(rows) == 1 and rows[0].startswith(f"plain timm: {answer}, ")


def test_read_config_refuses_a_timm_folder_that_is_not_a_run(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet18"}))

    with pytest.raises(RunFolderError, match="not written by headstart"):
        read_config(tmp_path)
    assert read_config(tmp_path, model_folder=True) == {"architecture": "resnet18"}


def test_train_with_auto_warns_in_one_line_about_an_unused_epochs_and_records_it(
    colour_data, tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    args = ["train", str(colour_data), "--out", str(run), "--model", "test_resnet"]
    args += ["--weights", "none", "--head", "linear", "--epochs", "5", "--workers", "0", "-q"]

    assert main([*args, "--cache-dir", str(tmp_path / "c")]) == 0

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not used" in line]
    assert lines == [
        "warning: --epochs 5 was not used: auto chose features with a linear head, a logistic "
        "regression solved to convergence by L-BFGS, which has no epochs, learning rate, batches "
        "or schedule; pass --strategy augment or finetune (or --head mlp) to use it."
    ]
    training = read_config(run)["headstart"]["training"]
    assert training["not_used"]["options"] == {"epochs": 5}
    assert training["epochs"] != 5
