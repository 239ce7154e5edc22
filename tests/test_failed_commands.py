"""A command that fails leaves nothing behind: no folders it made, no half-written files.

(`headstart train`'s own cases are in test_train_cli.py.)
"""

from __future__ import annotations

from pathlib import Path

from headstart import ImageClassifier
from headstart.cli.main import main


def test_a_failed_export_removes_the_folders_it_made(colour_data: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    ImageClassifier(
        "headstart-tiny", strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).fit(colour_data).save(run)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "exports" / "today" / "model.pt"
    command = ["export", str(run), "--format", "torchscript", "--out", str(out), "-q"]
    assert main([*command, "--sample", str(tmp_path / "nosuch.png")]) == 2
    assert "Sample image" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before
