"""Four ``headstart features`` processes share one cache, two are killed with SIGKILL mid-way, and
all run again: every vector equals the one a run without the cache computes (issue 26).

The folders overlap (neighbours share half their images), so the processes write the same
entries at the same time; a vector stored under another image's key, a torn row or a half-done
batch would show as a wrong vector (the images are distinct noise, so wrong means far off).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.cli.main import main
from tests._backbones import write_bn_backbone

FOLDERS = 4
PER_FOLDER = 24


def _folders(root: Path) -> list[Path]:
    """Four folders of noise images; folder k holds images k*12 .. k*12+23 (wrapping)."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(FOLDERS * 12)]
    folders = []
    for k in range(FOLDERS):
        folder = root / f"part{k}"
        folder.mkdir(parents=True)
        for j in range(PER_FOLDER):
            index = (k * 12 + j) % len(images)
            Image.fromarray(images[index]).save(folder / f"img{index:03d}.png")
        folders.append(folder)
    return folders


def _args(folder: Path, model: str, out: Path, cache: list[str]) -> list[str]:
    return [
        *("features", str(folder), "--model", model),
        *("--out", str(out), "--batch-size", "4", "--workers", "0", "-q", *cache),
    ]


def _command(folder: Path, model: str, out: Path, cache: list[str]) -> list[str]:
    return [sys.executable, "-m", "headstart", *_args(folder, model, out, cache)]


def _vectors(npz: Path) -> dict[str, np.ndarray]:
    with np.load(npz) as data:
        return {Path(str(p)).name: f for p, f in zip(data["paths"], data["features"], strict=True)}


def test_four_processes_sharing_a_cache_two_killed_leave_no_wrong_vector(tmp_path: Path) -> None:
    folders = _folders(tmp_path / "data")
    model = write_bn_backbone(tmp_path / "backbone")
    cache_dir = tmp_path / "cache"
    shared = ["--cache-dir", str(cache_dir)]

    first = [
        subprocess.Popen(_command(f, model, tmp_path / f"a{k}.npz", shared), stderr=subprocess.PIPE)
        for k, f in enumerate(folders)
    ]
    # Killed once the cache exists (the imports are over, extraction has begun), mid-write.
    deadline = time.monotonic() + 120
    while not (cache_dir / "features.sqlite").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    for proc in first[:2]:
        proc.send_signal(signal.SIGKILL)
    for proc in first:
        proc.communicate(timeout=300)
    codes = [p.returncode for p in first]
    assert codes[2:] == [0, 0] and set(codes[:2]) <= {0, -signal.SIGKILL}
    assert -signal.SIGKILL in codes[:2]  # a fast machine may finish one before its kill

    again = [
        subprocess.Popen(_command(f, model, tmp_path / f"b{k}.npz", shared), stderr=subprocess.PIPE)
        for k, f in enumerate(folders)
    ]
    for proc in again:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    # The truth, without the cache: in this process (a fresh one would only pay the imports again).
    assert main(_args(tmp_path / "data", model, tmp_path / "plain.npz", ["--no-cache"])) == 0

    truth = _vectors(tmp_path / "plain.npz")
    compared = 0
    for k in range(FOLDERS):
        for name, vector in _vectors(tmp_path / f"b{k}.npz").items():
            np.testing.assert_allclose(vector, truth[name], rtol=1e-5, atol=1e-5)
            compared += 1
    assert compared == FOLDERS * PER_FOLDER
    with sqlite3.connect(cache_dir / "features.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not [p.name for p in cache_dir.iterdir() if p.name.endswith(("-journal", ".tmp"))]
