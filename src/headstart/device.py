"""Choosing where tensors live: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from headstart.errors import HeadstartError

__all__ = ["resolve_device"]


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
        raise HeadstartError(
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
