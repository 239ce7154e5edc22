"""Kill ``headstart train`` many times at random moments, resume it, and check nothing was lost.

tests/test_killed_runs.py does this with a few kills in CI; this does it with as many as asked,
for each strategy: an uninterrupted run first (in this process, timed), then a run in a
subprocess SIGKILLed ``--kills`` times at seeded random moments of the training (after
start-up) and resumed each time with ``headstart train --resume``. It checks the finished model
is byte-identical to the uninterrupted one (and its history and metrics), no temporary file or
checkpoint is left in the run folder or the cache, and the cache passes SQLite's integrity check.

    python scripts/kill_resume.py --kills 20                      # features and finetune
    python scripts/kill_resume.py --kills 40 --strategy finetune --seed 3

Exit code 0 when every strategy survived, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
)

from tests._backbones import write_bn_backbone  # noqa: E402
from tests._kills import assert_same_run, leftovers, run_to_the_end, train_command  # noqa: E402
from tests.conftest import write_colour_dataset  # noqa: E402

from headstart.cli.main import main  # noqa: E402

STRATEGIES = {
    "finetune": ["--strategy", "finetune", "--unfreeze", "1", "--epochs", "6"],
    "features": ["--strategy", "features", "--head", "mlp", "--epochs", "40"],
}


def survive(strategy: str, kills: int, seed: int, root: Path) -> bool:
    data = write_colour_dataset(root / "data", {"train": 8, "val": 4})
    args = [
        *("--model", write_bn_backbone(root / "backbone")),
        *("--patience", "100", "--batch-size", "4", "--workers", "0", "-q"),
        *STRATEGIES[strategy],
    ]
    expected = root / "uninterrupted"
    begun = time.monotonic()
    cache = ["--cache-dir", str(root / "cache-uninterrupted")]
    assert main(["train", str(data), "--out", str(expected), *args, *cache]) == 0
    work = time.monotonic() - begun
    done, restarts = 0, 0
    run, cache_dir = root / "killed", root / "cache"
    command = train_command(data, run, [*args, "--cache-dir", str(cache_dir)])
    # One run can only be killed so often before it finishes: runs follow one another, each
    # into the same cache, until the kills asked for are spent.
    while done < kills:
        shutil.rmtree(run, ignore_errors=True)
        report = run_to_the_end(command, run, kills=kills - done, seed=seed + restarts, work=work)
        restarts += 1
        done += report.kills
        print(
            f"{strategy}: {report.kills} kill(s) at {report.delays} s, {report.resumes} "
            f"resume(s), finished in {report.seconds:.0f} s",
            flush=True,
        )
        assert_same_run(expected, run)
        left = leftovers(run, cache_dir)
        if left:
            print(f"{strategy}: left behind {left}")
            return False
        if report.kills == 0:
            break
    print(f"{strategy}: {done} kills survived: byte-identical model, nothing left behind")
    return True


def entry(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per strategy")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), action="append")
    args = parser.parse_args(argv)
    ok = True
    for strategy in args.strategy or sorted(STRATEGIES):
        with tempfile.TemporaryDirectory() as tmp:
            ok = survive(strategy, args.kills, args.seed, Path(tmp)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(entry())
