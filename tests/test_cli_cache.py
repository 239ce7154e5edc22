"""`headstart cache`: where the feature cache is, what it holds, and emptying it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headstart.cli.main import main
from headstart.features.cache import FeatureCache


def _fill(folder: Path, n: int = 5) -> None:
    vectors = {f"{i:064x}": np.full(8, i, np.float32) for i in range(n)}
    with FeatureCache(folder) as cache:
        cache.put_many("backbone-a", vectors)
        cache.put_many("backbone-b", dict(list(vectors.items())[:2]))


def test_cache_shows_folder_size_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fill(tmp_path / "c")

    assert main(["cache", "--cache-dir", str(tmp_path / "c"), "--json"]) == 0

    facts = json.loads(capsys.readouterr().out)
    assert facts["folder"] == str(tmp_path / "c")
    assert facts["vectors"] == 7 and facts["feature_sets"] == 2
    assert facts["bytes"] > 0 and facts["cleared"] is False


def test_cache_clear_empties_it_and_it_still_works(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _fill(tmp_path / "c")

    assert main(["cache", "--cache-dir", str(tmp_path / "c"), "--clear"]) == 0

    assert "freed" in capsys.readouterr().out
    with FeatureCache(tmp_path / "c") as cache:
        assert cache.stats()["vectors"] == 0
        cache.put_many("backbone-a", {"0" * 64: np.zeros(8, np.float32)})
        assert cache.count() == 1


def test_cache_follows_headstart_cache_dir_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path / "env"))

    assert main(["cache"]) == 0

    out = capsys.readouterr().out
    assert str(tmp_path / "env") in out and "empty" in out
    assert not (tmp_path / "env").exists()
