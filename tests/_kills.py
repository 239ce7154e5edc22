"""Killing ``headstart train`` at random moments and resuming it, until it finishes.

Shared by tests/test_killed_runs.py (a few kills, in CI) and scripts/kill_resume.py (many). A
run is started, SIGKILLed after a seeded random delay, and started again: with ``--resume RUN``
once its arguments are stored (``RUN/train_args.json``), else as it was first started (a kill
that early leaves nothing to resume). The finished run must equal an uninterrupted one bit for
bit, leave no temporary file in the run folder or the cache, and leave a cache that passes
SQLite's integrity check.

Bit for bit holds between runs with the same torch thread count only: a convolution's weight
gradient split across two threads sums in another order than on one, and the end-to-end epochs
then differ in the eighth digit. So each start runs with this process's count (``OMP_NUM_THREADS``),
the count the uninterrupted run beside it had: a test module under the ``one_torch_thread``
fixture otherwise compared its one-thread run with children on every core (issue 25).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "KillReport",
    "assert_same_run",
    "kill_after_first_checkpoint",
    "leftovers",
    "run_to_the_end",
    "train_command",
]

ARGS_NAME = "train_args.json"


def train_command(data: Path, run: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "headstart", "train", str(data), "--out", str(run), *args]


@dataclass
class KillReport:
    """What happened on the way to a finished run."""

    kills: int = 0
    resumes: int = 0
    delays: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` with this process's torch thread count (see the module doc)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def run_to_the_end(
    command: list[str],
    run: Path,
    *,
    kills: int,
    seed: int,
    work: float,
    timeout: float = 600.0,
) -> KillReport:
    """Run ``command`` (a fresh ``headstart train``), kill it ``kills`` times, and let the last
    start finish.

    Each kill comes a seeded random time into the work, from 0 to ``work`` seconds after the
    start-up (the time the first start took to store its arguments: imports, mostly), so that
    kills land in discovery, extraction, head fitting, the epochs and the saving, not in the
    interpreter's start. A later start that finishes before its kill ends the run early. A first
    start that does (``work`` was timed while the machine was busier than now) proves nothing
    about resuming, so the run starts over from nothing with the moments drawn again over half
    the time, up to four times.

    Raises:
        AssertionError: a start failed instead of being killed or finishing.
    """
    started = time.monotonic()
    for halvings in range(4):
        report = _kill_and_resume(
            command, run, kills, random.Random(seed), work / 2**halvings, timeout
        )
        if report.kills or not kills:
            break
        shutil.rmtree(run)
    report.seconds = time.monotonic() - started
    return report


def _kill_and_resume(
    command: list[str], run: Path, kills: int, rng: random.Random, work: float, timeout: float
) -> KillReport:
    """One try of :func:`run_to_the_end`: its kills drawn from ``rng`` over ``work`` seconds."""
    report = KillReport()
    startup: float | None = None
    for attempt in range(kills + 1):
        resume = (run / ARGS_NAME).is_file()
        argv = [*command[:3], "train", "--resume", str(run), "-q"] if resume else command
        report.resumes += resume
        begun = time.monotonic()
        proc = _start(argv)
        if startup is None:
            while not (run / ARGS_NAME).is_file() and proc.poll() is None:
                time.sleep(0.01)
            startup = time.monotonic() - begun
        if attempt < kills:
            delay = startup + rng.uniform(0.0, work)
            try:
                proc.wait(timeout=max(0.0, delay - (time.monotonic() - begun)))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                report.kills += 1
                report.delays.append(round(delay, 2))
                continue
        _, err_bytes = proc.communicate(timeout=timeout)
        err = err_bytes.decode()
        assert proc.returncode == 0, f"start {attempt + 1} ({' '.join(argv)}) failed:\n{err}"
        break
    return report


def kill_after_first_checkpoint(command: list[str], run: Path, *, timeout: float = 120.0) -> None:
    """Start ``command`` and SIGKILL it as soon as its first end-to-end checkpoint is written.

    :func:`run_to_the_end`'s kills land where the machine's speed puts them (start-up,
    extraction, the head, the epochs); this one lands at the same point of every run, in the
    epoch after the first checkpoint, so that the resumed start must restore the network, the
    optimizer and the best-so-far from that checkpoint. Not a random moment of the epoch: a
    fast machine could finish the run in that time, and the state restored is the same.

    Raises:
        AssertionError: The start ended (finished or failed) before it could be killed, or wrote
            no checkpoint within ``timeout`` seconds.
    """
    index = run / "checkpoint" / "checkpoint.json"
    proc = _start(command)
    deadline = time.monotonic() + timeout
    while not index.is_file():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"no checkpoint after {timeout} s"
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


def _safetensors_parts(path: Path) -> tuple[dict[str, object], bytes]:
    """(header, data bytes): the header parsed, as safetensors orders metadata keys at random."""
    blob = path.read_bytes()
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def assert_same_run(expected: Path, run: Path) -> None:
    """The same model bit for bit, the same history, best epoch and metrics."""
    assert _safetensors_parts(expected / "model.safetensors") == _safetensors_parts(
        run / "model.safetensors"
    ), "the resumed run's weights differ from the uninterrupted run's"
    assert (expected / "history.csv").read_text() == (run / "history.csv").read_text()
    a = json.loads((expected / "config.json").read_text())["headstart"]
    b = json.loads((run / "config.json").read_text())["headstart"]
    assert a["training"]["best_epoch"] == b["training"]["best_epoch"]
    assert a["metrics"] == b["metrics"]
    assert a["classes"] == b["classes"]


def leftovers(*folders: Path, finished: bool = True) -> list[Path]:
    """Temporary files left behind (atomic writes' ``.NAME.*.tmp``, SQLite journals of a closed
    cache, the checkpoint folder of a ``finished`` run), and cache files that fail SQLite's
    integrity check."""
    found: list[Path] = []
    for folder in folders:
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            name = path.name
            if name.endswith((".tmp", "-journal")) or (finished and name == "checkpoint"):
                found.append(path)
            elif name.endswith(".sqlite"):
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    result = db.execute("PRAGMA integrity_check").fetchone()[0]
                finally:
                    db.close()
                if result != "ok":
                    found.append(path)
    return found
