"""Training checkpoints that survive ``kill -9`` and contain no pickle.

A checkpoint is a folder with:

- ``state-NNNN.safetensors``: the model, every optimizer state tensor (flattened to keys such as
  ``optimizer.state.3.exp_avg``) and torch's RNG state (a uint8 tensor);
- ``best-NNNN.safetensors``: the weights of the epoch with the lowest validation loss so far;
- ``checkpoint.json``: everything else (epoch, step, history, early-stopping state, the optimizer's
  param groups and scalar state, the GradScaler's state, Python's and NumPy's RNG states, which
  are plain lists of integers) and the names and SHA-256 of the two tensor files.

Tensor files are written first, under new names; ``checkpoint.json`` is written last and
atomically, so it is the commit record: a run killed at any moment leaves either the previous
complete checkpoint or the new one, and a damaged file is detected by its hash rather than
loaded. ``torch.save`` is never used, because loading it means unpickling (docs/why.md,
story 8), and a run folder may travel.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from headstart.errors import RunFolderError
from headstart.runs import atomic_write

__all__ = [
    "CHECKPOINT_INDEX",
    "Checkpoint",
    "capture_rng",
    "flatten_optimizer_state",
    "load_checkpoint",
    "remove_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "unflatten_optimizer_state",
]

CHECKPOINT_INDEX = "checkpoint.json"
_VERSION = 1
_MODEL = "model."
_OPTIM = "optimizer.state."
_RNG_TORCH = "rng.torch"
_RNG_CUDA = "rng.cuda."


@dataclass
class Checkpoint:
    """The state of a training loop at the end of an epoch.

    Attributes:
        epoch: The last complete epoch, numbered as the run's history numbers it (1-based,
            the head phase's epochs first), and so ``state-NNNN``. Checkpoints written before
            that numbering counted the end-to-end stage's epochs alone; the training loop reads
            the epochs done from ``history``, which both numberings agree on.
        step: Optimizer steps taken (the learning-rate schedule's position).
        history: One dict per epoch, as the run's history.
        best_loss: Lowest monitored loss so far (``inf`` before any).
        best_epoch: The epoch it was reached at (0: the starting weights).
        waited: Epochs since the last improvement (early stopping).
        fingerprint: Identifies the settings and data; a resume with other ones is refused.
        finished: Training ended; only ``best_model`` is kept.
        model: The model's state dict (empty when finished).
        optimizer: The optimizer's state dict, or None.
        scaler: The GradScaler's state dict (fp16 mixed precision), or None.
        rng: Python/NumPy/torch RNG states as :func:`capture_rng` returns them, or None.
        best_model: The best weights, when they changed since the last save (on load: always).
        extra: JSON-able values a strategy keeps with its checkpoint.
    """

    epoch: int
    step: int
    history: list[dict[str, Any]]
    best_loss: float
    best_epoch: int
    waited: int
    fingerprint: str
    finished: bool = False
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    best_model: dict[str, torch.Tensor] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------ RNG states
def capture_rng() -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU and initialised CUDA) global RNG states.

    Python and NumPy states become lists of integers (JSON); torch's stay uint8 tensors.
    """
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [str(kind), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Set the global RNGs to a state :func:`capture_rng` returned (or read back from disk)."""
    version, internal, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(
        (str(kind), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(cuda))


# ------------------------------------------------------------------------------ optimizer
def flatten_optimizer_state(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and a JSON-able rest.

    Returns:
        (tensors, meta): tensors keyed ``optimizer.state.<param id>.<name>``; meta holds the
        param groups and any non-tensor per-parameter values.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    keys: dict[str, list[str]] = {}
    for pid, values in state_dict["state"].items():
        keys[str(pid)] = list(values)
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{pid}.{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = _jsonable(value)
    meta = {
        "param_groups": _jsonable(state_dict["param_groups"]),
        "scalars": scalars,
        "keys": keys,
    }
    return tensors, meta


def unflatten_optimizer_state(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]
) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for pid, names in meta["keys"].items():
        values: dict[str, Any] = {}
        for name in names:
            key = f"{_OPTIM}{pid}.{name}"
            if key in tensors:
                values[name] = tensors[key]
            else:
                values[name] = meta["scalars"][pid][name]
        state[int(pid)] = values
    groups = [dict(g) for g in meta["param_groups"]]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# ------------------------------------------------------------------------------ files
def save_checkpoint(folder: Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` so that a kill at any moment leaves a loadable checkpoint.

    ``ckpt.best_model`` is written only when given (the best weights changed); otherwise the
    previous best file stays referenced. A finished checkpoint keeps only the best weights.
    """
    folder.mkdir(parents=True, exist_ok=True)
    previous = _read_index(folder)
    index: dict[str, Any] = {
        "version": _VERSION,
        "epoch": ckpt.epoch,
        "step": ckpt.step,
        "history": ckpt.history,
        "best_loss": None if ckpt.best_loss == float("inf") else ckpt.best_loss,
        "best_epoch": ckpt.best_epoch,
        "waited": ckpt.waited,
        "fingerprint": ckpt.fingerprint,
        "finished": ckpt.finished,
        "scaler": _jsonable(ckpt.scaler) if ckpt.scaler is not None else None,
        "extra": ckpt.extra,
    }
    if ckpt.best_model is not None:
        name = f"best-{ckpt.epoch:04d}.safetensors"
        index["best_file"], index["best_sha256"] = name, _write(folder / name, ckpt.best_model)
    elif previous and previous.get("best_file"):
        index["best_file"], index["best_sha256"] = previous["best_file"], previous["best_sha256"]
    if not ckpt.finished:
        tensors = {f"{_MODEL}{k}": v for k, v in ckpt.model.items()}
        if ckpt.optimizer is not None:
            optim_tensors, index["optimizer"] = flatten_optimizer_state(ckpt.optimizer)
            tensors.update(optim_tensors)
        if ckpt.rng is not None:
            tensors[_RNG_TORCH] = ckpt.rng["torch"]
            for i, cuda_state in enumerate(ckpt.rng.get("cuda") or []):
                tensors[f"{_RNG_CUDA}{i}"] = cuda_state
            index["rng"] = {"python": ckpt.rng["python"], "numpy": ckpt.rng["numpy"]}
        name = f"state-{ckpt.epoch:04d}.safetensors"
        index["state_file"], index["state_sha256"] = name, _write(folder / name, tensors)
    blob = json.dumps(index, indent=1, allow_nan=True) + "\n"
    atomic_write(folder / CHECKPOINT_INDEX, blob.encode())
    keep = {index.get("best_file"), index.get("state_file")}
    for stale in [*folder.glob("state-*.safetensors"), *folder.glob("best-*.safetensors")]:
        if stale.name not in keep:
            stale.unlink(missing_ok=True)


def _write(path: Path, tensors: Mapping[str, torch.Tensor]) -> str:
    """Write tensors atomically; return the file's SHA-256, recorded in the index."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = safetensors_save(clean, metadata={"format": "pt"})
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_index(folder: Path) -> dict[str, Any] | None:
    path = folder / CHECKPOINT_INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(
            f"Checkpoint {path} cannot be read ({exc}); delete {folder} to start over."
        ) from exc
    if not isinstance(index, dict) or index.get("version") != _VERSION:
        raise RunFolderError(
            f"Checkpoint {path} was not written by this headstart (version "
            f"{index.get('version') if isinstance(index, dict) else '?'}); delete {folder} to "
            "start over."
        )
    return index


def _load_tensors(folder: Path, name: str, sha256: str) -> dict[str, torch.Tensor]:
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunFolderError(
            f"Checkpoint file {path} is missing ({exc.strerror}); delete {folder} to start over."
        ) from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RunFolderError(
            f"Checkpoint file {path} is damaged (its SHA-256 does not match); delete {folder} "
            "to start over."
        )
    try:
        return safetensors_load(data)
    except SafetensorError as exc:  # pragma: no cover - the hash matched what we wrote
        raise RunFolderError(f"Checkpoint file {path} cannot be read: {exc}.") from exc


def load_checkpoint(folder: Path) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None when there is none yet.

    Raises:
        RunFolderError: The checkpoint exists but is damaged or from another version.
    """
    index = _read_index(folder)
    if index is None:
        return None
    best_loss = index.get("best_loss")
    ckpt = Checkpoint(
        epoch=int(index["epoch"]),
        step=int(index["step"]),
        history=list(index["history"]),
        best_loss=float("inf") if best_loss is None else float(best_loss),
        best_epoch=int(index["best_epoch"]),
        waited=int(index["waited"]),
        fingerprint=str(index["fingerprint"]),
        finished=bool(index["finished"]),
        scaler=index.get("scaler"),
        extra=dict(index.get("extra") or {}),
    )
    if index.get("best_file"):
        ckpt.best_model = _load_tensors(folder, index["best_file"], index["best_sha256"])
    if not ckpt.finished:
        tensors = _load_tensors(folder, index["state_file"], index["state_sha256"])
        ckpt.model = {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
        if "optimizer" in index:
            ckpt.optimizer = unflatten_optimizer_state(tensors, index["optimizer"])
        if "rng" in index:
            cuda = sorted(
                (int(k[len(_RNG_CUDA) :]), v) for k, v in tensors.items() if k.startswith(_RNG_CUDA)
            )
            ckpt.rng = {
                **index["rng"],
                "torch": tensors[_RNG_TORCH],
                "cuda": [v for _, v in cuda],
            }
    return ckpt


def remove_checkpoint(folder: Path) -> None:
    """Delete a finished run's checkpoint: its weights are in the run's model.safetensors."""
    shutil.rmtree(folder, ignore_errors=True)
