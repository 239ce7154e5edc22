"""A disk that fills up while a run writes: one line, exit 2, nothing half-written, nothing lost.

The full disk is real to the code under test: the process' file-size limit (``RLIMIT_FSIZE``) is
lowered, so the kernel refuses a write past it with ``EFBIG`` (Python ignores ``SIGXFSZ``),
exactly where ``ENOSPC`` would come, in Python's file writes and in SQLite's alike. Each case
fails a different write (the feature cache, a checkpoint, the model) and checks the run folder
and the cache hold no temporary file, the cache passes SQLite's integrity check and keeps what
it held, an earlier model is untouched, and the next run, with space, gives the same model as a
run that never failed.
"""

from __future__ import annotations

import resource
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import StorageError
from headstart.features.cache import FeatureCache
from tests._backbones import write_bn_backbone
from tests._kills import assert_same_run, leftovers
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextmanager
def disk_full_past(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes of any file fail with EFBIG, as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("diskfull")
    data = write_colour_dataset(root / "data", {"train": 6, "val": 3})
    args = [
        *("--model", write_bn_backbone(root / "backbone")),
        *("--workers", "0", "-q"),
    ]
    return data, args


STRATEGIES = {
    "features": ["--strategy", "features"],
    "finetune": [
        *("--strategy", "finetune", "--unfreeze", "1", "--epochs", "2", "--batch-size", "4"),
    ],
}


@pytest.mark.parametrize(
    ("strategy", "limit", "fails"),
    [
        ("features", 48 * 1024, "features.sqlite"),  # the cache's first batch of vectors
        ("features", 512 * 1024, "model.safetensors"),  # the model, once trained
        ("finetune", 2 * 1024**2, "checkpoint"),  # a checkpoint's weights and optimizer
    ],
)
def test_train_on_a_full_disk_exits_2_with_one_line_and_the_next_run_with_space_works(
    setup: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    strategy: str,
    limit: int,
    fails: str,
) -> None:
    data, common = setup
    args = [*common, *STRATEGIES[strategy]]
    expected = tmp_path / "never-full"
    assert main(["train", str(data), "--out", str(expected), *args]) == 0
    run, cache = tmp_path / "run", tmp_path / "cache"
    capsys.readouterr()

    with disk_full_past(limit):
        code = main(["train", str(data), "--out", str(run), *args, "--cache-dir", str(cache)])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), lines
    assert fails in lines[0]
    assert leftovers(run, cache, finished=False) == []  # a checkpoint written before, to resume
    assert not (run / "config.json").exists()
    retry = ["train", "--resume", str(run)] if (run / "train_args.json").exists() else None
    retry = retry or ["train", str(data), "--out", str(run), *args, "--cache-dir", str(cache)]
    assert main(retry) == 0
    assert_same_run(expected, run)
    assert leftovers(run, cache) == []


def test_saving_over_a_run_on_a_full_disk_leaves_the_earlier_run_as_it_was(
    setup: tuple[Path, list[str]], tmp_path: Path
) -> None:
    data, common = setup
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *common, *STRATEGIES["features"]]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    clf = ImageClassifier.load(run)

    with disk_full_past(64 * 1024), pytest.raises(StorageError, match="model.safetensors"):
        clf.save(run)

    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    images = sorted((data / "val" / "red").iterdir())
    assert ImageClassifier.load(run).predict(images) == clf.predict(images)


def test_saving_over_a_run_that_fails_at_a_later_file_leaves_no_new_file_beside_the_old(
    setup: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights are written, then the history fails: none of the new files lands.
    Mutation: without ``staged_writes`` in ``save_run``, the new model.safetensors sat beside
    the earlier config.json."""
    import headstart.saving

    data, common = setup
    run = tmp_path / "run"
    args = [*common, *STRATEGIES["finetune"]]
    assert main(["train", str(data), "--out", str(run), *args]) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    clf = ImageClassifier.load(run)
    with torch.no_grad():
        clf.head_.weight.add_(1.0)  # a different model, so a landed file would show

    def full(path: Path, history: object) -> None:
        raise StorageError(f"cannot write {path} (No space left on device)")

    monkeypatch.setattr(headstart.saving, "write_history_csv", full)
    with pytest.raises(StorageError, match="history.csv"):
        clf.save(run)

    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_feature_cache_on_a_full_disk_raises_storage_error_and_keeps_what_it_held(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(0)
    held = {f"{i:064x}": rng.normal(size=64).astype(np.float32) for i in range(20)}
    more = {f"{i + 100:064x}": rng.normal(size=512).astype(np.float32) for i in range(2000)}
    with FeatureCache(tmp_path) as cache:
        cache.put_many("ns", held)
        size = max(p.stat().st_size for p in tmp_path.iterdir())
        with disk_full_past(size), pytest.raises(StorageError, match="features.sqlite"):
            cache.put_many("ns", more)
        read = cache.get_many("ns", [*held, *more])
    assert read.keys() == held.keys()
    assert all(np.array_equal(read[k], v) for k, v in held.items())
    db = sqlite3.connect(tmp_path / "features.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
