"""``headstart train`` killed with SIGKILL at random moments and resumed ends as if never killed.

A few seeded kills per strategy keep this in CI; scripts/kill_resume.py kills many more times.
Kills land anywhere after start-up: discovery, extraction into the cache, head fitting, the
end-to-end epochs, saving (tests/_kills.py). The finished run's weights must equal an
uninterrupted run's byte for byte, with the same history and metrics; the run folder and the
cache must hold no temporary file, no checkpoint once finished, and a cache that passes SQLite's
integrity check.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from headstart.cli.main import main
from tests._backbones import write_bn_backbone
from tests._kills import assert_same_run, leftovers, run_to_the_end, train_command
from tests.conftest import write_colour_dataset

STRATEGIES = {
    "finetune": ["--strategy", "finetune", "--unfreeze", "1", "--epochs", "3"],
    "features": ["--strategy", "features", "--head", "mlp", "--epochs", "20"],
    "augment": ["--strategy", "augment", "--epochs", "3"],
    "scratch": ["--strategy", "scratch", "--epochs", "3"],
}
KILLS = {"finetune": 3, "features": 2, "augment": 1, "scratch": 1}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("kills")
    data = write_colour_dataset(root / "data", {"train": 6, "val": 3})
    common = [
        *("--model", write_bn_backbone(root / "backbone")),
        *("--patience", "100", "--batch-size", "4", "--workers", "0", "-q"),
    ]
    return data, common


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_run_killed_at_random_moments_resumes_to_the_same_model_and_leaves_nothing_behind(
    strategy: str, setup: tuple[Path, list[str]], tmp_path: Path
) -> None:
    data, common = setup
    args = [*common, *STRATEGIES[strategy]]
    begun = time.monotonic()
    expected = tmp_path / "uninterrupted"
    cache = ["--cache-dir", str(tmp_path / "cache-uninterrupted")]
    assert main(["train", str(data), "--out", str(expected), *args, *cache]) == 0
    work = time.monotonic() - begun  # in this process: no start-up, the training alone

    run, cache_dir = tmp_path / "killed", tmp_path / "cache"
    command = train_command(data, run, [*args, "--cache-dir", str(cache_dir)])
    report = run_to_the_end(command, run, kills=KILLS[strategy], seed=0, work=work)

    assert report.kills >= 1, report
    assert_same_run(expected, run)
    assert leftovers(run, cache_dir) == [], report
