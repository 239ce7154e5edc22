"""The run folder: ``config.json`` + ``model.safetensors`` and what a person looks at.

Every file is written atomically (temp file in the same folder, fsync, rename), so a run killed
while saving leaves the previous complete file or the new one, never a torn one. ``config.json`` is
written last: a folder without it is not a finished run. Loading reads JSON and safetensors only:
nothing in a run folder is ever unpickled or executed, so a model from a stranger is data.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from headstart.errors import RunFolderError

__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "atomic_write",
    "create_temp_beside",
    "read_config",
    "read_run",
    "write_history_csv",
    "write_json",
    "write_weights",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    The file gets the permissions ``open(path, "wb")`` would give it (see
    :func:`create_temp_beside`), so a run folder is as readable as anything else its owner writes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def create_temp_beside(path: Path) -> Path:
    """A new empty file in ``path``'s folder, for writing and then renaming over ``path``.

    It gets the mode ``open(path, "wb")`` would give ``path``: 0o666 less the umask for a new
    file (the kernel applies the umask, as it does for ``open``), ``path``'s own mode when it
    exists. ``tempfile.mkstemp`` is not used because it creates files 0600 whatever the umask,
    and the rename carries that mode over: every run file would be private to its writer.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        try:
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        except FileNotFoundError:
            pass  # a new file: the umask's mode stays
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def write_weights(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Save tensors as safetensors (contiguous, unshared copies, as the format requires).

    Keep ``metadata`` to one key: safetensors writes it from a hash map, so with several keys
    their order, and so the file's bytes, would change from one save to the next.
    """
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, safetensors_save(clean, metadata=metadata))


def write_history_csv(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    buf = io.StringIO()
    fields = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in fields})
    atomic_write(path, buf.getvalue().encode())


def write_skipped_csv(path: Path, skipped: Sequence[Mapping[str, str]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    for row in skipped:
        writer.writerow([row["path"], row["reason"]])
    atomic_write(path, buf.getvalue().encode())


def read_config(folder: str | Path) -> dict[str, Any]:
    """A run folder's ``config.json``, checked to be headstart's, without its weights.

    For readers that only show what a run recorded (the report, ``headstart info``): they work
    on a run whose weights are gone, and they must not each parse the file their own way.

    Raises:
        RunFolderError: the folder or its config is missing, unreadable or not written by
            headstart.
    """
    folder = Path(folder)
    _check_folder(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise RunFolderError(
            f"'{folder}' is not a headstart run folder (no {CONFIG_NAME}); pass the folder "
            "`headstart train` wrote."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"Cannot read {config_path}: {exc}.") from exc
    hs = config.get("headstart") if isinstance(config, dict) else None
    if not isinstance(hs, dict) or not isinstance(hs.get("classes"), list):
        raise RunFolderError(
            f"{config_path} was not written by headstart (no 'headstart' section with classes); "
            "to use a timm folder as a backbone, pass it as --model local-dir:PATH."
        )
    return config


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise RunFolderError(
            f"Run folder '{folder}' does not exist; pass the folder `headstart train` wrote "
            "(it holds config.json and model.safetensors)."
        )


def read_run(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a run folder's config and weights, as data only.

    Raises:
        RunFolderError: the folder is missing, incomplete or not written by headstart.
    """
    folder = Path(folder)
    _check_folder(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise RunFolderError(
            f"'{folder}' is not a finished headstart run: it needs {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}; train one with `headstart train DATA --out {folder}`."
        )
    config = read_config(folder)
    version = config["headstart"].get("format_version")
    if version != FORMAT_VERSION:
        raise RunFolderError(
            f"{config_path} has format_version {version!r}; this headstart reads "
            f"{FORMAT_VERSION}. Upgrade headstart or retrain."
        )
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunFolderError(f"Cannot read {weights_path} as safetensors: {exc}.") from exc
    return config, tensors
