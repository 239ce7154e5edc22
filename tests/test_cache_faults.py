"""A feature cache that is damaged or cannot be written never stops a run.

A damaged file (a crash, a bad disk) is set aside under a new name, never deleted, and a new cache
is started; a folder that cannot be written is read as it is, or replaced by a cache in memory.
Each says so in one warning, and the run's features are the same as without any cache.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

from headstart.cli.main import main
from headstart.errors import CacheWarning
from headstart.features import cache as cache_module
from headstart.features.cache import FeatureCache

VECTORS = {f"{i:064x}": np.arange(64, dtype=np.float32) + i for i in range(400)}


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "_WARNED", set())


def _filled(folder: Path) -> Path:
    with FeatureCache(folder) as cache:
        cache.put_many("ns", VECTORS)
    return folder / "features.sqlite"


def _damage(path: Path, offset: int, length: int) -> None:
    rng = np.random.default_rng(0)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(rng.integers(0, 256, length, dtype=np.uint8).tobytes())


def test_a_cache_with_a_garbage_header_is_set_aside_and_replaced(tmp_path: Path) -> None:
    path = _filled(tmp_path)
    _damage(path, 0, 100)

    with pytest.warns(CacheWarning, match="damaged .* set aside as features.damaged-"):
        cache = FeatureCache(tmp_path)
    with cache:
        assert cache.get_many("ns", VECTORS) == {}
        cache.put_many("ns", {"a" * 64: np.ones(4, np.float32)})
        assert cache.count() == 1
    (aside,) = tmp_path.glob("features.damaged-*.sqlite")
    assert aside.stat().st_size > 0


def test_damage_found_while_reading_sets_the_file_aside_and_reads_nothing(tmp_path: Path) -> None:
    path = _filled(tmp_path)
    size = path.stat().st_size
    _damage(path, size // 3, size // 3)  # pages of vectors and of the table's b-tree

    with FeatureCache(tmp_path) as cache:
        with pytest.warns(CacheWarning, match="damaged"):
            out = np.zeros((len(VECTORS), 64), np.float32)
            rows = {digest: [i] for i, digest in enumerate(VECTORS)}
            filled = cache.read_into("ns", rows, out, missing_ok=True)
        assert filled == set()
        assert cache.stats()["vectors"] == 0
    assert list(tmp_path.glob("features.damaged-*.sqlite"))


def test_an_unwritable_cache_folder_falls_back_to_memory_with_one_warning(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")

    with pytest.warns(CacheWarning, match="goes on without it") as caught:
        for _ in range(2):
            with FeatureCache(tmp_path / "file" / "cache") as cache:
                cache.put_many("ns", {"a" * 64: np.ones(4, np.float32)})
                assert cache.count() == 1
    assert len([w for w in caught if issubclass(w.category, CacheWarning)]) == 1


def test_a_read_only_cache_is_read_and_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _filled(tmp_path)

    def refuse(self: FeatureCache) -> sqlite3.Connection:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(FeatureCache, "_connect", refuse)
    with pytest.warns(CacheWarning, match="reads it but caches nothing new"):
        cache = FeatureCache(tmp_path)
    with cache:
        found = cache.get_many("ns", list(VECTORS)[:3])
        cache.put_many("ns", {"b" * 64: np.ones(64, np.float32)})
        assert cache.count() == len(VECTORS)
    assert set(found) == set(list(VECTORS)[:3])


def test_features_command_on_a_damaged_cache_warns_once_and_exports_the_same(
    colour_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def export(name: str) -> dict[str, np.ndarray]:
        out = tmp_path / f"{name}.npz"
        args = ["features", str(colour_data), "--out", str(out), "--model", "test_resnet"]
        args += ["--weights", "none", "--workers", "0", "-q", "--cache-dir", str(tmp_path / "c")]
        assert main(args) == 0
        return dict(np.load(out))

    clean = export("clean")
    path = tmp_path / "c" / "features.sqlite"
    _damage(path, 0, path.stat().st_size)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI prints its own warnings; none may escape
        again = export("again")

    err = capsys.readouterr().err
    assert err.count("warning: the feature cache") == 1 and "set aside" in err
    np.testing.assert_array_equal(clean["features"], again["features"])
