"""`headstart train` with strategies: options, recorded arguments, warnings and cost estimates."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from headstart.cli.main import main
from tests._backbones import write_bn_backbone
from tests.conftest import write_colour_dataset


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("traincli")
    data = write_colour_dataset(root / "data", {"train": 4, "val": 2})
    model = write_bn_backbone(root / "backbone")
    return data, ["--model", model, "--workers", "0", "--cache-dir", str(root / "cache")]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_train_records_its_arguments_and_the_strategys_resolved_settings(env, tmp_path):
    data, common = env
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), *common, "-q"]
    assert (
        main([*args, "--strategy", "augment", "--epochs", "2", "--rotation", "20", "--no-hflip"])
        == 0
    )
    stored = json.loads((run / "train_args.json").read_text())["args"]
    assert stored["strategy"] == "augment" and Path(stored["data"]).is_absolute()
    training = json.loads((run / "config.json").read_text())["headstart"]["training"]
    assert (training["strategy"], training["epochs"], training["schedule"]) == (
        "augment",
        2,
        "cosine",
    )
    assert training["augment"]["rotation"] == 20 and training["augment"]["hflip"] is False
    assert training["augment"]["preset"] == "custom"
    assert not (run / "checkpoint").exists()


def test_cost_is_estimated_before_a_cpu_strategy_that_runs_the_backbone_every_epoch(
    env, tmp_path, capsys
):
    data, common = env
    args = ["train", str(data), "--out", str(tmp_path / "run"), *common, "--epochs", "1"]
    assert main([*args, "--strategy", "finetune"]) == 0
    err = capsys.readouterr().err
    assert "finetune: ~" in err and "/epoch, ~" in err
    assert "the cached-features path would take ~" in err
    # One numbering for the run: the head on cached features is epoch 1, finetune's is 2.
    assert "head epoch 1/2: loss" in err and "finetune epoch 2/2: loss" in err


def test_bn_train_with_a_small_batch_prints_a_one_line_warning(env, tmp_path, capsys) -> None:
    data, common = env
    args = ["train", str(data), "--out", str(tmp_path / "run"), *common, "-q", "--epochs", "1"]
    assert main([*args, "--strategy", "finetune", "--bn", "train", "--batch-size", "8"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert "statistics of 8 images mean little" in warnings[0]


def test_resume_with_other_options_exits_2_naming_them(tmp_path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path), "--epochs", "3", "--lr", "0.1"]) == 2
    assert "remove --epochs, --lr" in _error(capsys)


def test_resume_of_a_folder_without_train_args_exits_2(tmp_path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "train_args.json" in _error(capsys)


def test_train_without_data_or_resume_exits_2(capsys) -> None:
    assert main(["train"]) == 2
    assert "--resume RUN" in _error(capsys)


def test_an_option_the_strategy_does_not_use_exits_2(env, tmp_path, capsys) -> None:
    data, common = env
    args = ["train", str(data), "--out", str(tmp_path / "run"), *common, "-q"]
    assert main([*args, "--strategy", "augment", "--unfreeze", "2"]) == 2
    assert "unfreeze does not apply to --strategy augment" in _error(capsys)


def test_out_pointing_at_a_file_exits_2_with_one_line(tmp_path, capsys) -> None:
    from headstart.cli.main import main

    target = tmp_path / "afile"
    target.write_text("")
    assert main(["train", str(tmp_path), "--out", str(target), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and len(err.splitlines()) == 1


def test_a_train_that_fails_leaves_no_run_folder_behind(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", "no/such/folder", "-q"]) == 2
    assert "does not exist" in _error(capsys)
    assert list(tmp_path.iterdir()) == []  # no runs/folder-<timestamp>/train_args.json


def test_an_option_the_strategy_refuses_leaves_no_run_folder_behind(env, tmp_path, capsys):
    data, common = env
    out = tmp_path / "runs" / "run"
    args = ["train", str(data), "--out", str(out), *common, "-q"]
    assert main([*args, "--strategy", "features", "--epochs", "5"]) == 2
    assert "epochs" in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_before_anything_to_resume_leaves_no_run_folder_so_the_same_command_reruns(
    env, tmp_path, monkeypatch, capsys
) -> None:
    from headstart.estimator import ImageClassifier

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt  # as Ctrl-C while the features are extracted

    data, common = env
    out = tmp_path / "runs" / "run"
    args = ["train", str(data), "--out", str(out), *common, "-q", "--strategy", "features"]
    with monkeypatch.context() as patch:
        patch.setattr(ImageClassifier, "fit", interrupted)
        assert main(args) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert list(tmp_path.iterdir()) == []
    assert main(args) == 0


def test_a_failed_train_into_an_empty_folder_leaves_it_empty(env, tmp_path, capsys) -> None:
    data, _ = env
    out = tmp_path / "run"
    out.mkdir()
    assert main(["train", str(data), "--out", str(out), "--model", "resnet5O", "-q"]) == 2
    _error(capsys)
    assert out.is_dir() and list(out.iterdir()) == []


def test_out_onto_a_finished_run_exits_2_unless_overwrite(env, tmp_path, capsys) -> None:
    data, common = env
    run = tmp_path / "run"
    args = ["train", str(data), "--out", str(run), *common, "-q", "--strategy", "features"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(args) == 2
    assert _error(capsys) == (
        f"error: --out {run} holds a finished run; choose another --out, or pass --overwrite to "
        "replace it."
    )
    assert main([*args, "--overwrite", "--epochs", "5"]) == 2  # refused: the old run stays
    _error(capsys)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main([*args, "--overwrite", "--head", "mlp"]) == 0
    config = json.loads((run / "config.json").read_text())["headstart"]
    assert config["head"]["kind"] == "mlp"


def test_out_onto_an_unfinished_run_says_to_resume_it(tmp_path, capsys) -> None:
    (tmp_path / "train_args.json").write_text("{}")
    assert main(["train", str(tmp_path), "--out", str(tmp_path), "-q"]) == 2
    assert f"continue it with `headstart train --resume {tmp_path}`" in _error(capsys)


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_a_run_another_train_is_writing_is_refused_as_in_use_not_called_unfinished(
    tmp_path, capsys
) -> None:
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    (run / "train_args.json").write_text("{}")
    other = os.open(run, os.O_RDONLY)  # the lock another train's process would hold
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        for extra in (["--out", str(run)], ["--out", str(run), "--overwrite"]):
            assert main(["train", str(tmp_path), *extra, "-q"]) == 2
            assert _error(capsys).endswith(
                "another `headstart train` is writing it now; "
                "wait for it to finish, or choose another --out."
            )
        assert main(["train", "--resume", str(run)]) == 2
        assert _error(capsys).endswith(
            "is in use: another `headstart train` is writing it now; wait for it to finish."
        )
        assert sorted(p.name for p in run.iterdir()) == ["train_args.json"]
    finally:
        os.close(other)
    assert main(["train", str(tmp_path), "--out", str(run), "-q"]) == 2  # no longer in use
    assert "holds an unfinished run" in _error(capsys)


def test_out_into_a_folder_of_other_files_exits_2_unless_overwrite(env, tmp_path, capsys):
    data, common = env
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"mine")
    args = ["train", str(data), "--out", str(out), *common, "-q", "--strategy", "features"]
    assert main(args) == 2
    assert "not empty and not a run folder (it holds 'cat.jpg')" in _error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["cat.jpg"]
    assert main([*args, "--overwrite"]) == 0
    assert (out / "config.json").is_file() and (out / "cat.jpg").read_bytes() == b"mine"


def test_resume_with_overwrite_exits_2(tmp_path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path), "--overwrite"]) == 2
    assert "give one of them" in _error(capsys)
