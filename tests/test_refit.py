"""End-to-end strategies refit on train + val for the epochs validation chose, as heads do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from headstart import ImageClassifier
from headstart.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from headstart.cli.main import main
from headstart.strategies import resolve_train_settings
from headstart.strategies._settings import REFIT_MAX_TRAIN
from tests._backbones import write_bn_backbone
from tests._kills import assert_same_run
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("refit")
    data = write_colour_dataset(root / "data", {"train": 8, "val": 4, "test": 4})
    args = [
        *("--model", write_bn_backbone(root / "backbone")),
        *("--strategy", "finetune", "--unfreeze", "1", "--epochs", "3"),
        *("--patience", "100", "--batch-size", "4", "--workers", "0", "-q"),
        *("--cache-dir", str(root / "cache")),
    ]
    return data, args


def _train(data: Path, run: Path, args: list[str]) -> Path:
    assert main(["train", str(data), "--out", str(run), *args]) == 0
    return run


@pytest.fixture(scope="module")
def refitted(setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, args = setup
    return _train(data, tmp_path_factory.mktemp("runs") / "refitted", args)


@pytest.fixture(scope="module")
def not_refitted(setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, args = setup
    return _train(data, tmp_path_factory.mktemp("runs") / "none", [*args, "--refit", "none"])


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["headstart"]


def test_small_finetune_refits_on_train_and_val_by_default_and_says_so(
    refitted, not_refitted
) -> None:
    config = _config(refitted)
    refit = config["training"]["details"]["refit"]
    assert refit["done"] is True and refit["reason"].startswith("by default: 12 validation")
    assert refit["epochs"] >= 1 and refit["fit_images"] == {"train": 24, "val": 12}
    assert config["training"]["selection"]["fit_images"] == {"train": 24, "val": 12}
    assert "val" not in config["metrics"] and "test" in config["metrics"]
    ours, chosen = (
        load_file(refitted / "model.safetensors"),
        load_file(not_refitted / "model.safetensors"),
    )
    assert any(not (ours[k] == chosen[k]).all() for k in ours)
    page = (refitted / "report.html").read_text()
    assert "refitted on them too" in page and "24 train + 12 val" in page
    assert "repeated from the same start on train + val" in page


def test_info_says_whether_the_run_refitted_and_why(refitted, not_refitted, capsys) -> None:
    assert main(["info", str(refitted)]) == 0
    assert "epoch(s) on train + val, by default: 12 validation" in capsys.readouterr().out
    assert main(["info", str(not_refitted)]) == 0
    assert "refit:      none, turned off" in capsys.readouterr().out


def test_refit_none_keeps_the_chosen_run_with_its_validation_figures(not_refitted) -> None:
    config = _config(not_refitted)
    assert config["training"]["refit"] is False
    refit = config["training"]["details"]["refit"]
    assert refit == {"done": False, "reason": "turned off (refit=False, --refit none)"}
    assert config["metrics"]["val"]["n"] == 12


class _Killed(BaseException):
    """Ends the process's work where a kill would: nothing catches it, nothing is saved after."""


def test_a_run_killed_during_its_refit_resumes_to_the_same_model(
    setup, refitted, tmp_path, monkeypatch
) -> None:
    import headstart.strategies._loop as loop

    def save(folder: Path, ckpt: Checkpoint) -> None:
        save_checkpoint(folder, ckpt)
        if folder.name == "refit" and len(ckpt.history) == 1 and not ckpt.finished:
            raise _Killed

    data, args = setup
    run = tmp_path / "killed"
    monkeypatch.setattr(loop, "save_checkpoint", save)
    with pytest.raises(_Killed):
        main(["train", str(data), "--out", str(run), *args])
    monkeypatch.undo()
    first, again = load_checkpoint(run / "checkpoint"), load_checkpoint(run / "checkpoint/refit")
    assert first is not None and first.finished
    assert again is not None and again.epoch == 1 and not again.finished
    assert not (run / "config.json").exists()
    assert main(["train", "--resume", str(run), "-q"]) == 0
    assert_same_run(refitted, run)
    assert not (run / "checkpoint").exists()


def test_multi_label_augment_refits_with_the_chosen_runs_thresholds(tmp_path) -> None:
    from tests.test_multilabel_runs import write_patch_csv

    data = write_patch_csv(tmp_path, n=32)
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="augment",
        refit=True,  # forced: the CSV's own split gives val under half of train
        epochs=2,
        batch_size=8,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    ).fit(data)
    assert clf.details_["refit"]["done"] is True
    assert clf.selection_ is not None and clf.selection_["kind"] == "multi-label"
    assert "val" in clf.selection_["fit_images"]
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert "val" not in clf.metrics_ and clf.metrics_["test"]["multi_label"] is True


def test_end_to_end_runs_refit_by_default_where_val_is_half_of_train_or_more() -> None:
    def refit(n_train: int, n_val: int, **params: object) -> bool:
        params = {"strategy": "augment", **params}
        return resolve_train_settings(params, n_train=n_train, n_val=n_val).settings.refit

    assert refit(100, 50) and not refit(100, 49) and not refit(100, 0)
    assert not refit(REFIT_MAX_TRAIN + 2, REFIT_MAX_TRAIN)
    assert not refit(100, 100, refit=False) and refit(10 * REFIT_MAX_TRAIN, 0, refit=True)
    features = resolve_train_settings({"strategy": "features"}, n_train=100, n_val=10)
    assert features.settings.refit
