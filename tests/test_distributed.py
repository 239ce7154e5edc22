"""Under torchrun, the same commands give what one process gives, and survive a killed rank.

Each test starts ``python -m torch.distributed.run --standalone --nproc-per-node 2`` (torchrun;
``--standalone`` binds a free port itself) with the gloo backend on the CPU, the shipped
``headstart-tiny`` backbone and a few tiny images, and compares with one process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from headstart.checkpoint import load_checkpoint
from headstart.cli.main import main
from headstart.features import FeatureCache
from tests.conftest import write_colour_dataset

RANKS = 2
EPOCHS = 4


def _torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(RANKS)),
        *("-m", "headstart", *args),
    ]


def _env() -> dict[str, str]:
    # One thread per process: two ranks share the test machine's cores.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(_torchrun(*args), capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(autouse=True)
def _one_thread():
    """The one-process runs in this process use one thread too, as each rank does: fairer, and
    on a shared 2-core machine much faster than threads fighting over the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 7 training images per class: 21 do not split evenly over 2 ranks or into batches of 6.
    return write_colour_dataset(
        tmp_path_factory.mktemp("dist") / "data", {"train": 7, "val": 3, "test": 2}
    )


def test_features_under_torchrun_equal_one_process_exactly_in_one_cache(data, tmp_path):
    common = ("--model", "headstart-tiny", "--batch-size", "4", "--workers", "0", "-q")
    one, two = tmp_path / "one.npz", tmp_path / "two.npz"
    assert (
        main(
            ["features", str(data), "--out", str(one), "--cache-dir", str(tmp_path / "c1"), *common]
        )
        == 0
    )
    cache = tmp_path / "c2"
    done = _run("features", str(data), "--out", str(two), "--cache-dir", str(cache), *common)
    assert done.stdout.count("wrote") == 1  # rank 0 alone reports and writes
    a, b = np.load(one), np.load(two)
    assert a["features"].shape == (36, 192)
    np.testing.assert_array_equal(a["features"], b["features"])
    np.testing.assert_array_equal(a["paths"], b["paths"])
    # One cache file, written by rank 0 alone, with every image's features.
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".sqlite") == ["features.sqlite"]
    with FeatureCache(cache) as store:
        assert store.count() == 36


@pytest.fixture(scope="module")
def train_args(data, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("train")
    return [
        *("--model", "headstart-tiny", "--strategy", "finetune", "--unfreeze", "1"),
        *("--epochs", str(EPOCHS), "--patience", "100", "--batch-size", "6"),
        *("--augment", "light", "--workers", "0", "-q", "--cache-dir", str(root / "cache")),
    ]


@pytest.fixture(scope="module")
def distributed_run(data, train_args, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "two"
    _run("train", str(data), "--out", str(run), *train_args)
    return run


def _max_difference(a: Path, b: Path) -> float:
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


def test_finetune_under_torchrun_ends_with_the_model_of_one_process(
    data, train_args, distributed_run, tmp_path
):
    one = tmp_path / "one"
    assert main(["train", str(data), "--out", str(one), *train_args]) == 0
    assert _max_difference(one, distributed_run) < 1e-5
    rows_one = (one / "history.csv").read_text().splitlines()
    rows_two = (distributed_run / "history.csv").read_text().splitlines()
    assert len(rows_one) == len(rows_two)
    last_one = [float(v) for v in rows_one[-1].split(",")[1:5]]
    last_two = [float(v) for v in rows_two[-1].split(",")[1:5]]
    np.testing.assert_allclose(last_one, last_two, rtol=1e-5)


def _rank_pid(launcher: subprocess.Popen[str], rank: int) -> int:
    """The process of ``rank`` among the launcher's children (from its environment)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no rank {rank} among {children}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_one_rank_then_resume_under_torchrun_completes_the_same_run(
    data, train_args, distributed_run, tmp_path
):
    run = tmp_path / "killed"
    launcher = subprocess.Popen(
        _torchrun("train", str(data), "--out", str(run), *train_args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    index = run / "checkpoint" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while not index.is_file():
        assert launcher.poll() is None, launcher.stderr.read() if launcher.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint after 240 s"
        time.sleep(0.01)
    os.kill(_rank_pid(launcher, 1), signal.SIGKILL)
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0  # torchrun stops the other rank and reports the failure
    killed_at = load_checkpoint(run / "checkpoint")
    assert killed_at is not None and not killed_at.finished and killed_at.epoch < EPOCHS
    assert not (run / "config.json").exists()

    _run("train", "--resume", str(run), "-q")
    assert (run / "config.json").is_file()
    assert _max_difference(run, distributed_run) == 0.0
    assert (run / "history.csv").read_text() == (distributed_run / "history.csv").read_text()
    assert not (run / "checkpoint").exists()


def test_ranks_share_whole_batches_round_robin_and_together_cover_every_item(monkeypatch):
    from headstart import distributed

    items = list(range(10))
    shares = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: distributed.World(rank, 3))
        shares.append(distributed.shard(items, 3))
    assert shares == [[0, 1, 2, 9], [3, 4, 5], [6, 7, 8]]


def test_each_rank_trains_on_its_slice_of_the_global_batches_of_one_process(tmp_path):
    from headstart.augment import resolve_augment
    from headstart.backbones import create_backbone
    from headstart.strategies._data import TrainImages

    preprocess = create_backbone("headstart-tiny").preprocess
    paths = [tmp_path / f"{i}.png" for i in range(11)]
    labels = list(range(11))

    def batches(rank: int, size: int) -> list[list[int]]:
        images = TrainImages(
            paths,
            labels,
            preprocess,
            resolve_augment("none"),
            seed=3,
            batch_size=4,
            num_workers=0,
            rank=rank,
            world_size=size,
        )
        return images._batches(epoch=2)

    alone = batches(0, 1)
    split = [batches(rank, 2) for rank in range(2)]
    assert len(split[0]) == len(split[1]) == len(alone)  # every rank takes every step
    for whole, first, second in zip(alone, *split, strict=True):
        assert sorted(first + second) == sorted(whole) and not set(first) & set(second)
