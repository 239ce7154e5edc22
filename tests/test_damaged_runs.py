"""Run folders damaged in one value, as the fuzzer (tests/test_fuzz_runs.py) found them.

Each was a traceback before: one line and exit 2 now, naming the file and the fix.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from headstart.cli.main import main

RUNS = Path(__file__).parent / "data" / "runs_v1"
IMAGE = RUNS / "images" / "red_0.png"


def _damaged(tmp_path: Path, seed: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    run = tmp_path / seed
    shutil.copytree(RUNS / seed, run)
    config = json.loads((run / "config.json").read_text())
    edit(config["headstart"])
    (run / "config.json").write_text(json.dumps(config))
    return run


def _one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_predict_with_a_null_epoch_time_in_the_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _damaged(
        tmp_path, "mlp_layer", lambda hs: hs["training"]["epoch_seconds"].insert(0, None)
    )
    assert "bad config.json" in _one_error_line(capsys, ["predict", str(run), str(IMAGE)])


def test_predict_with_a_negative_head_size_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _damaged(tmp_path, "linear", lambda hs: hs["head"].update(num_classes=-3))
    assert "positive integer" in _one_error_line(capsys, ["predict", str(run), str(IMAGE)])


def test_predict_with_a_huge_head_size_fails_on_the_weights_without_allocating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _damaged(tmp_path, "mlp_layer", lambda hs: hs["head"].update(hidden=2**40))
    assert "weights do not fit" in _one_error_line(capsys, ["predict", str(run), str(IMAGE)])


def test_predict_with_a_head_that_does_not_fit_the_backbone_layer_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def later_stage(hs: dict[str, Any]) -> None:
        hs["backbone"]["layer"] = 3  # 192 features; the head takes layer 2's 48

    run = _damaged(tmp_path, "mlp_layer", later_stage)
    line = _one_error_line(capsys, ["predict", str(run), str(IMAGE)])
    assert "its head maps 48 features to 3 classes, but its backbone gives 192" in line


def test_info_on_a_config_with_a_damaged_value_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _damaged(tmp_path, "linear", lambda hs: hs["data"].update(counts={"train": 5}))
    assert "config.json is damaged" in _one_error_line(capsys, ["info", str(run)])
