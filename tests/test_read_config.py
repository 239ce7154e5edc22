"""``runs.read_config``: a run's config, read one way by every reader that needs no weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.errors import RunFolderError
from headstart.runs import read_config, read_run


def _write(folder: Path, config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_read_config_reads_a_run_whose_weights_are_gone(tmp_path) -> None:
    run = _write(tmp_path / "run", {"headstart": {"format_version": 1, "classes": ["a", "b"]}})
    assert read_config(run)["headstart"]["classes"] == ["a", "b"]


def test_read_config_of_a_missing_folder_says_what_read_run_says(tmp_path) -> None:
    missing = tmp_path / "nosuch"
    with pytest.raises(RunFolderError) as from_config:
        read_config(missing)
    with pytest.raises(RunFolderError) as from_run:
        read_run(missing)
    assert str(from_config.value) == str(from_run.value)
    assert "there is no such folder" in str(from_config.value)


@pytest.mark.parametrize("kind", ["missing", "file", "unfinished", "empty"])
def test_loading_a_folder_that_is_no_run_says_what_the_cli_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """``ImageClassifier.load`` and every CLI command read one message for one mistake.
    Mutation: read_run's own wording (before: "Run folder ... does not exist") fails here."""
    from headstart import ImageClassifier
    from headstart.cli.main import main

    folder = tmp_path / "run"
    if kind == "file":
        folder.write_text("not a folder")
    elif kind == "unfinished":
        folder.mkdir()
        (folder / "train_args.json").write_text("{}")
    elif kind == "empty":
        folder.mkdir()
    with pytest.raises(RunFolderError) as raised:
        ImageClassifier.load(folder)
    assert main(["info", str(folder)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {raised.value}"


def test_read_config_of_a_folder_without_config_is_not_a_run_folder(tmp_path) -> None:
    with pytest.raises(RunFolderError, match="not a headstart run folder"):
        read_config(tmp_path)


@pytest.mark.parametrize(
    "config", [{"timm": 1}, {"headstart": {"format_version": 1}}, ["headstart"]]
)
def test_read_config_refuses_a_config_headstart_did_not_write(tmp_path, config) -> None:
    with pytest.raises(RunFolderError, match="not written by headstart"):
        read_config(_write(tmp_path / "run", config))


def test_read_config_refuses_a_config_that_is_not_json(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="Cannot read"):
        read_config(run)
