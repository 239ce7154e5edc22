"""Shared fixtures: tiny generated datasets, a private feature cache, offline hubs."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

# No test may reach a hub: a download attempt fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The fuzz tests' budgets (tests/test_fuzz_*.py). "ci", the default, runs a fixed, derandomized
# set of cases, so a failure in CI reproduces on any machine and the whole set stays well under
# two minutes; "fuzz" is what scripts/fuzz.py runs for as long as it is given, new cases each
# seed, remembering failures in .hypothesis/. A deadline flags a case that is slow, the tests'
# own alarm (tests/_fuzz.py) one that hangs; both are far above a case's normal cost, so load on
# the machine does not fail them.
_FUZZ_HEALTH = [
    HealthCheck.too_slow,
    HealthCheck.function_scoped_fixture,
    HealthCheck.data_too_large,
]
settings.register_profile(
    "ci",
    max_examples=25,
    derandomize=True,
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=_FUZZ_HEALTH,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("HEADSTART_FUZZ_EXAMPLES", "2000")),
    derandomize=False,
    deadline=timedelta(seconds=20),
    suppress_health_check=_FUZZ_HEALTH,
    print_blob=True,
)
settings.load_profile(os.environ.get("HEADSTART_FUZZ_PROFILE", "ci"))

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200)}


def write_colour_dataset(
    root: Path,
    counts: dict[str, int],
    *,
    classes: dict[str, tuple[int, int, int]] = COLOURS,
    seed: int = 0,
    size: int = 40,
) -> Path:
    """Write ``root/<split>/<class>/*`` (``root/<class>`` for split "") of noisy colours."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for name, rgb in classes.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.normal(0, 25, (size, size, 3))
                pixels = np.clip(np.array(rgb) + noise, 0, 255).astype(np.uint8)
                fmt = "JPEG" if i % 2 else "PNG"
                Image.fromarray(pixels).save(folder / f"{name}_{i}.{fmt.lower()}", format=fmt)
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models and tensors: OpenMP thread hand-offs cost more than the work on a busy 2-core
    machine. A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own feature cache, never the user's."""
    monkeypatch.setenv("HEADSTART_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    return write_colour_dataset(root, {"train": 8, "val": 4, "test": 4})
