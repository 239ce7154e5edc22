"""Checkpoints without pickle, and runs that survive kill -9 and Ctrl-C bit for bit."""

from __future__ import annotations

import json
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart.checkpoint import (
    Checkpoint,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from headstart.cli.main import main
from headstart.errors import RunFolderError
from tests._backbones import write_bn_backbone
from tests.conftest import write_colour_dataset

EPOCHS = 30


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("resume")
    data = write_colour_dataset(root / "data", {"train": 8, "val": 4})
    args = [
        *("--model", write_bn_backbone(root / "backbone")),
        *("--strategy", "finetune", "--unfreeze", "1", "--epochs", str(EPOCHS)),
        *("--patience", "100", "--batch-size", "4", "--workers", "0", "-q"),
        *("--cache-dir", str(root / "cache")),
        # The chosen run alone: 30 more epochs of refit would double every run here; a refit's
        # own kill and resume are tested in tests/test_refit.py.
        *("--refit", "none"),
    ]
    return data, args


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data, args = setup
    run = tmp_path_factory.mktemp("runs") / "uninterrupted"
    assert main(["train", str(data), "--out", str(run), *args]) == 0
    return run


def _start(data: Path, run: Path, args: list[str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "headstart.cli.main", "train", str(data), "--out", str(run)]
    return subprocess.Popen(
        [*command, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_as_from_a_shell,
    )


def _as_from_a_shell() -> None:
    """Ctrl-C reaches the run as it does from a terminal: SIGINT unblocked, default disposition
    (which Python turns into KeyboardInterrupt). A child inherits an ignored or blocked SIGINT,
    and whatever a library loaded earlier in this test process did to its own must not decide
    whether the run can be interrupted."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_first_checkpoint(proc: subprocess.Popen[bytes], run: Path) -> None:
    index = run / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not index.is_file():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.01)
    # A seeded moment after the first checkpoint: a failure names the same delay when re-run.
    time.sleep(random.Random(run.name).uniform(0.0, 0.3))


def _safetensors_parts(path: Path) -> tuple[dict, bytes]:
    """(header, data bytes): the header parsed, as safetensors orders metadata keys at random."""
    blob = path.read_bytes()
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _assert_same_run(a: Path, b: Path) -> None:
    tensors_a, tensors_b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert tensors_a.keys() == tensors_b.keys()
    for name, value in tensors_a.items():
        assert torch.equal(value, tensors_b[name]), name
    assert _safetensors_parts(a / "model.safetensors") == _safetensors_parts(
        b / "model.safetensors"
    )
    assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
    config_a = json.loads((a / "config.json").read_text())["headstart"]
    config_b = json.loads((b / "config.json").read_text())["headstart"]
    assert config_a["training"]["best_epoch"] == config_b["training"]["best_epoch"]
    assert config_a["metrics"] == config_b["metrics"]


def test_killed_run_resumes_to_the_same_model_and_history(setup, uninterrupted, tmp_path):
    data, args = setup
    run = tmp_path / "killed"
    proc = _start(data, run, args)
    _wait_for_first_checkpoint(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "checkpoint")
    assert killed_at is not None and not killed_at.finished and killed_at.epoch < EPOCHS
    assert not (run / "config.json").exists()
    assert main(["train", "--resume", str(run), "-q"]) == 0
    _assert_same_run(uninterrupted, run)
    assert not (run / "checkpoint").exists()


def test_ctrl_c_saves_the_best_model_so_far_and_resume_finishes_the_run(
    setup, uninterrupted, tmp_path
):
    data, args = setup
    run = tmp_path / "interrupted"
    proc = _start(data, run, args)
    _wait_for_first_checkpoint(proc, run)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (
        f"{err.decode()} (this process: SIGINT handler {signal.getsignal(signal.SIGINT)}, "
        f"blocked {signal.pthread_sigmask(signal.SIG_BLOCK, [])})"
    )
    assert "--resume" in err.decode()
    config = json.loads((run / "config.json").read_text())["headstart"]
    assert config["training"]["interrupted"] is True
    assert (run / "model.safetensors").is_file()
    assert main(["train", "--resume", str(run), "-q"]) == 0
    _assert_same_run(uninterrupted, run)


def test_resuming_a_finished_run_changes_nothing(uninterrupted, capsys) -> None:
    before = (uninterrupted / "model.safetensors").read_bytes()
    assert main(["train", "--resume", str(uninterrupted)]) == 0
    assert "nothing to resume" in capsys.readouterr().out
    assert (uninterrupted / "model.safetensors").read_bytes() == before


def test_resuming_a_run_killed_after_saving_writes_its_report_and_removes_its_checkpoint(
    uninterrupted, tmp_path, capsys
) -> None:
    # What a SIGKILL between saving the model and writing the report leaves (tests/_kills.py
    # kills landed there now and then): config.json, no report, the checkpoint folder.
    run = tmp_path / "killed-after-saving"
    shutil.copytree(uninterrupted, run)
    (run / "report.html").unlink()
    (run / "checkpoint").mkdir()
    (run / "checkpoint" / "checkpoint.json").write_text("{}")
    before = (run / "model.safetensors").read_bytes()

    assert main(["train", "--resume", str(run), "-q"]) == 0

    assert "nothing to resume" in capsys.readouterr().out
    assert (run / "report.html").is_file()
    assert not (run / "checkpoint").exists()
    assert (run / "model.safetensors").read_bytes() == before


def _optimizer_after_steps() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    optimizer = torch.optim.AdamW(
        [{"params": model[0].parameters(), "lr_scale": 0.5}, {"params": model[1].parameters()}]
    )
    for _ in range(3):
        model(torch.randn(6, 4)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


def test_checkpoint_round_trips_model_optimizer_and_rng_without_pickle(tmp_path) -> None:
    model, optimizer = _optimizer_after_steps()
    rng = capture_rng()
    expected_draw = torch.rand(3)
    save_checkpoint(
        tmp_path,
        Checkpoint(
            epoch=3,
            step=9,
            history=[{"epoch": 1, "loss": 0.1 + 0.2}],
            best_loss=0.25,
            best_epoch=2,
            waited=1,
            fingerprint="abc",
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            rng=rng,
            best_model=model.state_dict(),
        ),
    )
    assert {p.suffix for p in tmp_path.iterdir()} == {".json", ".safetensors"}
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    assert (loaded.epoch, loaded.step, loaded.waited, loaded.best_loss) == (3, 9, 1, 0.25)
    assert loaded.history == [{"epoch": 1, "loss": 0.1 + 0.2}]
    fresh_model, fresh = _optimizer_after_steps()
    fresh.load_state_dict(loaded.optimizer)
    for group_a, group_b in zip(fresh.param_groups, optimizer.param_groups, strict=True):
        assert {k: v for k, v in group_a.items() if k != "params"} == {
            k: v for k, v in group_b.items() if k != "params"
        }
    for state_a, state_b in zip(fresh.state.values(), optimizer.state.values(), strict=True):
        for key in state_b:
            assert torch.equal(state_a[key], state_b[key])
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.model[name], value)
    assert loaded.rng is not None
    restore_rng(loaded.rng)
    assert torch.equal(torch.rand(3), expected_draw)


def test_checkpoint_round_trips_the_mixed_precision_scaler_state(tmp_path) -> None:
    """fp16 mixed precision (CUDA) resumes with the GradScaler's scale and growth tracker, or
    its first resumed steps would be scaled differently from the uninterrupted run's. CPU has a
    GradScaler too, so CI proves the round trip. Mutation: dropping ``scaler`` from the saved
    index (checkpoint.py) fails here."""
    model, optimizer = _optimizer_after_steps()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    for _ in range(3):
        optimizer.zero_grad()
        scaler.scale(model(torch.randn(6, 4)).pow(2).mean()).backward()
        scaler.step(optimizer)
        scaler.update()
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0**11 and saved["_growth_tracker"] == 1  # moved off its start
    save_checkpoint(
        tmp_path,
        Checkpoint(
            epoch=1,
            step=3,
            history=[],
            best_loss=1.0,
            best_epoch=1,
            waited=0,
            fingerprint="abc",
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scaler=saved,
        ),
    )
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded.scaler is not None
    resumed = torch.amp.GradScaler("cpu")
    resumed.load_state_dict(loaded.scaler)
    assert resumed.state_dict() == saved


def test_damaged_checkpoint_file_is_refused(tmp_path) -> None:
    model, optimizer = _optimizer_after_steps()
    ckpt = Checkpoint(1, 1, [], 1.0, 1, 0, "abc", model=model.state_dict())
    save_checkpoint(tmp_path, ckpt)
    state = next(tmp_path.glob("state-*.safetensors"))
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(RunFolderError, match="damaged"):
        load_checkpoint(tmp_path)


def test_a_new_checkpoint_replaces_the_previous_files(tmp_path) -> None:
    model, _ = _optimizer_after_steps()
    for epoch in (1, 2):
        save_checkpoint(
            tmp_path,
            Checkpoint(epoch, epoch, [], 1.0, 1, 0, "abc", model=model.state_dict()),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.json",
        "state-0002.safetensors",
    ]


@pytest.fixture(scope="module")
def four_epochs(setup, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """A finetune run of four epochs in all (the head on cached features, then three)."""
    data, args = setup
    args = [a if a != str(EPOCHS) else "3" for a in args]
    run = tmp_path_factory.mktemp("runs") / "four"
    assert main(["train", str(data), "--out", str(run), *args]) == 0
    return [str(data), *args], run


def _interrupt_after_epoch(monkeypatch: pytest.MonkeyPatch, last: int) -> None:
    """Ctrl-C just after the checkpoint of run epoch ``last`` is written."""
    import headstart.strategies._loop as loop

    def save(folder: Path, ckpt: Checkpoint) -> None:
        save_checkpoint(folder, ckpt)
        if len(ckpt.history) == last and not ckpt.finished:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", save)


def test_epochs_are_numbered_once_across_the_head_and_finetune_stages(
    four_epochs, tmp_path, monkeypatch, capsys
) -> None:
    (data, *args), _ = four_epochs
    args = [a for a in args if a != "-q"]
    run = tmp_path / "run"
    # Every epoch's progress line, however fast the epoch (an epoch within a second shows none).
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 0.0)
    _interrupt_after_epoch(monkeypatch, 3)
    main(["train", data, "--out", str(run), *args])
    err = capsys.readouterr().err
    assert "head epoch 1/4: " in err
    assert "finetune epoch 2/4: " in err and "finetune epoch 3/4: " in err
    ckpt = load_checkpoint(run / "checkpoint")
    assert ckpt is not None and ckpt.epoch == 3 and len(ckpt.history) == 3
    assert [row["epoch"] for row in ckpt.history] == [1, 2, 3]
    assert (run / "checkpoint" / "state-0003.safetensors").is_file()
    monkeypatch.undo()
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 0.0)
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "resuming after epoch 3" in err and "finetune epoch 4/4: " in err
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 4


def test_a_checkpoint_numbered_by_the_finetune_stage_alone_still_resumes(
    four_epochs, tmp_path, monkeypatch
) -> None:
    (data, *args), uninterrupted = four_epochs
    run = tmp_path / "run"
    _interrupt_after_epoch(monkeypatch, 3)
    main(["train", data, "--out", str(run), *args])
    monkeypatch.undo()
    index_path = run / "checkpoint" / "checkpoint.json"
    index = json.loads(index_path.read_text())
    index["epoch"] = 2  # how the checkpoint of the second finetune epoch was numbered before
    index_path.write_text(json.dumps(index))
    assert main(["train", "--resume", str(run), "-q"]) == 0
    _assert_same_run(uninterrupted, run)


def _forget_options(run: Path, names: list[str]) -> None:
    """Make RUN/train_args.json what a headstart from before these options stored: no entry."""
    path = run / "train_args.json"
    stored = json.loads(path.read_text())
    for name in names:
        del stored["args"][name]
    path.write_text(json.dumps(stored))


def test_a_run_from_before_refit_existed_resumes_as_a_refit_none_run(
    four_epochs, tmp_path, monkeypatch
) -> None:
    (data, *args), uninterrupted = four_epochs  # --refit none
    run = tmp_path / "run"
    _interrupt_after_epoch(monkeypatch, 3)
    main(["train", data, "--out", str(run), *args])
    monkeypatch.undo()
    _forget_options(run, ["refit"])
    # The default would refit this small run on train + val: another run than the checkpoint's.
    assert main(["train", "--resume", str(run), "-q"]) == 0
    _assert_same_run(uninterrupted, run)
    config = json.loads((run / "config.json").read_text())["headstart"]
    assert config["training"]["details"]["refit"]["done"] is False


def test_a_checkpoint_from_before_class_weight_and_engine_existed_resumes(
    four_epochs, tmp_path, monkeypatch
) -> None:
    from headstart.strategies import TrainSettings

    (data, *args), uninterrupted = four_epochs
    run = tmp_path / "run"
    _interrupt_after_epoch(monkeypatch, 3)
    # An older headstart's settings had neither, so its checkpoint's fingerprint hashed neither.
    as_dict = TrainSettings.to_dict

    def older_settings(self: TrainSettings) -> dict:
        return {k: v for k, v in as_dict(self).items() if k not in ("class_weight", "engine")}

    monkeypatch.setattr(TrainSettings, "to_dict", older_settings)
    main(["train", data, "--out", str(run), *args, "--engine", "torch"])
    monkeypatch.undo()
    _forget_options(run, ["class_weight", "engine"])
    assert main(["train", "--resume", str(run), "-q"]) == 0
    # Under 256 images "auto" extracts with torch too: the same model as the run of four_epochs.
    _assert_same_run(uninterrupted, run)


def test_every_option_added_since_resume_existed_says_what_older_runs_get() -> None:
    import argparse

    from headstart.cli import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    (command,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = {a.dest for a in command.choices["train"]._actions} - {"help", "overwrite"}
    # What the first headstart with --resume stored in train_args.json.
    first = {
        *("amp", "aug_views", "augment", "batch_size", "bn", "brightness", "cache_dir"),
        *("crop_pct", "data", "device", "epochs", "fill", "grad_clip", "head", "height_shift"),
        *("hflip", "input_size", "interpolation", "keras", "label_smoothing", "layer"),
        *("layer_decay", "lr", "magnitude", "mean", "model", "no_cache", "out", "patience"),
        *("quiet", "resume", "rotation", "schedule", "seed", "shear", "std", "strategy"),
        *("test_fraction", "unfreeze", "val_fraction", "vflip", "warmup_epochs"),
        *("weight_decay", "weights", "width_shift", "workers", "zoom"),
    }
    assert options - first == set(train._BEFORE_IT_EXISTED)


def test_an_end_to_end_run_from_before_its_refit_existed_resumes_and_ends_without_one(
    four_epochs, tmp_path, monkeypatch
) -> None:
    from headstart.strategies import TrainSettings

    (data, *args), uninterrupted = four_epochs  # --refit none
    # Before end-to-end refits, --refit trainval (the default) refitted a features head only:
    # a finetune run trained with refit off, and its checkpoint's fingerprint hashed that.
    args = [a if a != "none" else "trainval" for a in args]
    run = tmp_path / "run"
    as_dict = TrainSettings.to_dict
    monkeypatch.setattr(TrainSettings, "to_dict", lambda self: {**as_dict(self), "refit": False})
    _interrupt_after_epoch(monkeypatch, 2)
    main(["train", data, "--out", str(run), *args])
    monkeypatch.undo()
    _interrupt_after_epoch(monkeypatch, 3)  # resumed by this headstart, and interrupted again
    main(["train", "--resume", str(run), "-q"])
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "-q"]) == 0
    _assert_same_run(uninterrupted, run)
    refit = json.loads((run / "config.json").read_text())["headstart"]["training"]["details"]
    assert refit["refit"]["done"] is False
    assert "without end-to-end refits" in refit["refit"]["reason"]
