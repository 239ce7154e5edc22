"""What `headstart info` and the report say about a run's settings: only those that applied,
what auto chose, numbers a person can read, and auto's reasons as a list."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.reporting import write_report
from headstart.reporting.summary import applied_settings, describe_strategy, format_number

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory: pytest.TempPathFactory, colour_data: Path) -> Path:
    """auto on the colour task keeps a linear head on layer3 features, solved by L-BFGS."""
    root = tmp_path_factory.mktemp("auto")
    clf = ImageClassifier(
        "test_resnet", weights="none", num_workers=0, quiet=True, cache_dir=root / "cache"
    ).fit(colour_data)
    assert clf.advice_.options.get("layer") == "layer3"  # what the tests below describe
    return clf.save(root / "run")


def _edited(run: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``run`` whose config ``edit(hs)`` changed (info and the report read only it)."""
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    config = json.loads((copy / "config.json").read_text())
    edit(config["headstart"])
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def _as_epoch_trained(hs: dict) -> None:
    """The run as an MLP head trained for epochs, its lr as float32 makes it."""
    hs["head"]["kind"] = "mlp"
    hs["training"].update(
        head="mlp", lr=0.0010000000474974513, best_epoch=7, epochs_run=12, epochs=40
    )
    hs["training"]["selection"] = {"solver": "adamw", "epochs": 7}
    hs["data"]["root"] = "/nonexistent/data"  # the report then shows the record, loads nothing


def _info(run: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    return capsys.readouterr().out


def _line(out: str, key: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{key}:"))


def _glance_row(page: str, name: str) -> str:
    found = re.search(rf"<dt>{name}</dt><dd>(.*?)</dd>", page, re.S)
    assert found, name
    return found.group(1)


def test_info_of_an_lbfgs_head_shows_no_epochs_lr_or_patience(auto_run, capsys) -> None:
    training = _line(_info(auto_run, capsys), "training")
    for word in ("epoch", "lr", "patience", "batch size", "weight decay"):
        assert word not in training
    assert "L-BFGS" in training and "seed 0" in training


def test_info_and_the_report_say_what_auto_chose(auto_run, capsys) -> None:
    out = _info(auto_run, capsys)
    assert "features, layer3 features, linear head" in _line(out, "strategy")
    page = write_report(auto_run).read_text(encoding="utf-8")
    assert "features, layer3 features, linear head" in _glance_row(page, "strategy")


def test_report_training_row_of_an_lbfgs_head_has_no_epoch_settings(auto_run) -> None:
    page = write_report(auto_run).read_text(encoding="utf-8")
    row = _glance_row(page, "training")
    assert "epochs" not in row and "lr" not in row and "patience" not in row
    assert "kept epoch" not in page and "of 0" not in page


def test_an_epoch_trained_head_shows_its_settings_rounded(auto_run, tmp_path, capsys) -> None:
    run = _edited(auto_run, tmp_path, _as_epoch_trained)
    training = _line(_info(run, capsys), "training")
    assert "best epoch 7 of 12" in training and "lr 0.001," in training
    assert "epochs 40" in training and "patience" in training
    page = write_report(run).read_text(encoding="utf-8")
    row = _glance_row(page, "training")
    assert "lr 0.001," in row and "epochs 40" in row
    assert "0.0010000000474974513" not in page
    assert "MLP head" in _glance_row(page, "strategy")


def test_report_lists_autos_reasons_one_item_each(auto_run) -> None:
    hs = json.loads((auto_run / "config.json").read_text())["headstart"]
    top_level = [r for r in hs["advice"]["reasons"] if not r.startswith("  ")]
    page = write_report(auto_run).read_text(encoding="utf-8")
    reasons = re.search(r'<ul class="reasons">(.*)</ul>', _glance_row(page, "strategy"), re.S)
    assert reasons
    items = re.findall(r"<li>", reasons.group(1))
    assert len(items) == len(hs["advice"]["reasons"])  # the scores nested, one item each
    assert reasons.group(1).count("<ul>") == 1 and len(top_level) < len(items)


def test_applied_settings_of_end_to_end_training_include_its_stages() -> None:
    hs = {
        "strategy": "finetune",
        "head": {"kind": "linear"},
        "backbone": {},
        "training": {"epochs": 5, "lr": 1e-4, "patience": 3, "seed": 1, "unfreeze": "all"},
    }
    assert applied_settings(hs) == {
        "epochs": 5,
        "lr": 1e-4,
        "patience": 3,
        "unfreeze": "all",
        "seed": 1,
    }
    assert describe_strategy(hs) == "finetune, every stage trained, linear head"


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0010000000474974513, "0.001"), (0.1 + 0.2, "0.3"), (142.26235280311383, "142"), (64, "64")],
)
def test_numbers_print_to_three_significant_digits(value, shown) -> None:
    assert format_number(value) == shown


def test_info_shows_the_typicality_score_and_threshold_in_one_line(auto_run, capsys) -> None:
    assert _line(_info(auto_run, capsys), "unknowns") == (
        "unknowns:   mahalanobis score, threshold 0.05 (scale from 36 held-out images)"
    )


def test_info_of_a_run_without_typicality_says_why(auto_run, tmp_path, capsys) -> None:
    def turned_off(hs: dict) -> None:
        hs["unknowns"] = {"score": "none", "reason": "turned off (--unknown-score none)"}

    off = _edited(auto_run, tmp_path, turned_off)
    old = Path(__file__).parent / "data" / "runs_v1" / "linear"

    assert _line(_info(off, capsys), "unknowns") == (
        "unknowns:   none: turned off (--unknown-score none)"
    )
    assert _line(_info(old, capsys), "unknowns").startswith("unknowns:   none: saved before")
