"""Every kind of hostile or malformed model file (tests/_hostile_models.py) is data, never code.

Each kind goes through the command a user would run on it (``headstart predict RUN`` or
``headstart features --model ... --weights ...``, in-process) and ends as its kind says: loaded
as data (exit 0), or refused in one ``error:`` line (exit 2); never a traceback, a payload run
(its canary file stays absent), a library's warning on the terminal, a network access, a
``torch.load`` without ``weights_only``, a hang or unbounded memory.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch

from headstart.cli.main import main
from tests._fuzz import bounded
from tests._hostile_models import KINDS, Scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def weights_only_torch_load(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.load

    def checked(*args: object, **kwargs: object) -> object:
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", checked)


def test_the_corpus_holds_at_least_40_kinds_of_hostile_model() -> None:
    assert len(KINDS) >= 40, sorted(KINDS)
    assert all(kind.description for kind in KINDS.values())


@pytest.mark.usefixtures("no_network", "weights_only_torch_load")
@pytest.mark.parametrize("name", sorted(KINDS))
def test_hostile_model_loads_as_data_or_exits_2_in_one_line_as_its_kind_says_and_never_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = tmp_path / "PWNED"
    argv = KINDS[name].write(Scene(tmp_path, canary, monkeypatch))
    capsys.readouterr()
    with bounded(), warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")  # what a user's shell shows, not pytest's errors
        code = main(argv)
    err = capsys.readouterr().err
    assert code == (0 if KINDS[name].loads else 2), err
    # A library's warning reaches the user's terminal: a line more, and often a fallback taken.
    noise = [w for w in shown if w.category is UserWarning]
    assert not noise, f"{name}: {noise[0].message}"
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert not canary.exists(), f"{name}: the payload ran"
