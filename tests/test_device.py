"""Device choice, and the CPU allocator setting that keeps large blocks for reuse."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from headstart.device import prepare_device, resolve_device
from headstart.errors import HeadstartError

_PROBE = "from headstart.device import reuse_large_allocations as r; print(r(), r())"


def _probe(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_large_allocations_are_kept_for_reuse_on_glibc_unless_turned_off() -> None:
    assert _probe() == "True True"  # set once, then reported
    assert _probe(HEADSTART_MALLOC="default") == "False False"


def test_cpu_is_prepared_and_returned() -> None:
    assert prepare_device("cpu") == torch.device("cpu")


def test_missing_accelerator_is_an_error_not_a_silent_cpu_run() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(HeadstartError, match="CUDA is not available"):
        resolve_device("cuda")
