"""Choosing where tensors live (CUDA, then Apple's MPS, then the CPU), and preparing the CPU."""

from __future__ import annotations

import ctypes
import os
import platform
import threading

import torch

from headstart.errors import HeadstartError, InvalidParameterError

__all__ = ["prepare_device", "resolve_device", "reuse_large_allocations"]

# glibc's mallopt parameter number for the mmap threshold, and the value headstart sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30
_allocator_lock = threading.Lock()
_allocator_tuned: bool | None = None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda", "cuda:1" or "mps" into a device that exists here.

    Raises:
        HeadstartError: a device was named that this machine does not have; silently falling
            back to the CPU would turn a 10-minute job into a 10-hour one without a word.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidParameterError(
            f"Unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise HeadstartError(
            f"Device {device!r} was asked for but CUDA is not available here; "
            "use --device cpu or auto."
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise HeadstartError(
            f"Device {device!r} was asked for but MPS is not available here; "
            "use --device cpu or auto."
        )
    return resolved


def prepare_device(device: str | torch.device | None = "auto") -> torch.device:
    """:func:`resolve_device`, then, for the CPU, :func:`reuse_large_allocations`."""
    resolved = resolve_device(device)
    if resolved.type == "cpu":
        reuse_large_allocations()
    return resolved


def reuse_large_allocations() -> bool:
    """Let glibc's malloc keep large freed blocks for reuse, instead of unmapping them at once.

    By default glibc gives every block over its mmap threshold (128 KB, rising to at most 32 MB)
    a fresh mmap and unmaps it when freed. A CNN's forward pass on a CPU allocates activations of
    up to hundreds of MB per batch, so every batch faults in and zeroes that memory again. On the
    project's 2-core machine that was about a third of resnet18's forward time: 117 against 81
    img/s (BENCHMARKS.md). With a 1 GiB threshold the blocks stay in the heap, where the next
    batch reuses them, which is what jemalloc and tcmalloc give the users who preload them.

    The setting is process-wide and lasting. It is made once, only with glibc, and not at all
    when the environment variable ``HEADSTART_MALLOC`` is ``default``. Memory freed in the
    middle of the heap then stays with the process for reuse, instead of going back to the OS.

    Returns:
        Whether the setting is in effect.
    """
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned is None:
            _allocator_tuned = _set_mmap_threshold()
        return _allocator_tuned


def _set_mmap_threshold() -> bool:
    if os.environ.get("HEADSTART_MALLOC", "").strip().lower() == "default":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        kept = libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(_MMAP_THRESHOLD))
        return bool(kept and libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(_MMAP_THRESHOLD)))
    except (OSError, AttributeError):
        return False
