"""The run folder: ``config.json`` + ``model.safetensors`` and what a person looks at.

Every file is written atomically (temp file in the same folder, fsync, rename), so a run killed
while saving leaves the previous complete file or the new one, never a torn one. ``config.json`` is
written last: a folder without it is not a finished run. Loading reads JSON and safetensors only:
nothing in a run folder is ever unpickled or executed, so a model from a stranger is data.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import secrets
import shlex
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from headstart.errors import BackboneNotFoundError, RunFolderError, StorageError

__all__ = [
    "ARGS_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "atomic_write",
    "create_temp_beside",
    "hold_run_folder",
    "plain_timm",
    "read_config",
    "read_history_csv",
    "read_run",
    "release_run_folders",
    "run_folder_problem",
    "staged_writes",
    "write_history_csv",
    "write_json",
    "write_weights",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ARGS_NAME = "train_args.json"
"""What ``headstart train`` was asked, written first: ``--resume`` reads it."""
TYPICALITY_NAME = "typicality.safetensors"
"""The typicality score's tensors, apart from the model's: plain timm loads model.safetensors
strictly, so keys it does not know would stop it."""
FORMAT_VERSION = 1


_HELD: dict[Path, int] = {}  # run folder -> the open descriptor whose lock this process holds


def hold_run_folder(folder: Path, what: str, *, or_else: str = "") -> None:
    """Hold the run folder for this process: refuse it when another process holds it.

    Two ``headstart train`` into one folder (the same --out typed twice, a --resume while the
    run still trains) would write one run's checkpoints and files over the other's. The second
    one saw an unfinished run and was told to --resume it, which then did exactly that. An
    advisory ``flock`` on the folder itself leaves no file behind, and the system releases it
    when the process ends however it ends (Ctrl-C, SIGKILL), so a killed run never looks busy.
    Where locks are not to be had (Windows, a file system without them) nothing is held.

    Args:
        folder: The run folder; nothing is done if it does not exist yet.
        what: How the message names it ("--out runs/pets").
        or_else: What else the user can do, for the message (", or choose another --out").

    Raises:
        RunFolderError: Another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return
    key = folder.absolute()
    if key in _HELD or not folder.is_dir():
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunFolderError(
            f"{what} is in use: another `headstart train` is writing it now; wait for it to "
            f"finish{or_else}."
        ) from None
    except OSError:  # no locks on this file system: train as before
        os.close(fd)
        return
    _HELD[key] = fd


def release_run_folders() -> None:
    """Let go of the folders :func:`hold_run_folder` held (a process's exit does so too): for
    a process that goes on after its command, as tests and notebooks calling ``main`` do."""
    while _HELD:
        os.close(_HELD.popitem()[1])


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    The file gets the permissions ``open(path, "wb")`` would give it (see
    :func:`create_temp_beside`), so a run folder is as readable as anything else its owner writes.

    Raises:
        StorageError: the file cannot be written (full disk, I/O error, read-only folder); no
            temporary file is left and ``path`` is as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = create_temp_beside(path)
    except OSError as exc:
        raise _cannot_write(path, exc) from exc
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        staged = _STAGED.get()
        if staged is not None:
            staged.append((tmp, path))
            return  # renamed with the others when staged_writes ends
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from exc
        raise
    _fsync_dir(path.parent)


_STAGED: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("_STAGED", default=None)


@contextmanager
def staged_writes() -> Iterator[None]:
    """The :func:`atomic_write` calls inside land together, in order, once all have been written.

    A run folder is several files (weights, typicality, history, config.json last). Saved over
    an earlier run one file at a time, a full disk at the third file would leave new weights
    beside the old config; staged, every file is written and synced to a temporary name first,
    and only then renamed into place, so a failed write leaves the earlier run whole and no
    temporary file behind. The renames themselves (metadata only) are what remains to fail.
    """
    staged: list[tuple[Path, Path]] = []
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _STAGED.reset(token)
    for i, (tmp, path) in enumerate(staged):
        try:
            os.replace(tmp, path)
        except OSError as exc:
            for left, _ in staged[i:]:
                left.unlink(missing_ok=True)
            raise _cannot_write(path, exc) from exc
    for folder in {path.parent for _, path in staged}:
        _fsync_dir(folder)


def _cannot_write(path: Path, exc: OSError) -> StorageError:
    """A full disk, a quota, a size limit, a failing device or a read-only folder: said in one
    line, since the file it was to replace is intact and the fix is the user's."""
    return StorageError(
        f"cannot write {path} ({exc.strerror or exc}); the file it would replace, if any, is "
        "intact: free some space (or write elsewhere) and run the command again"
    )


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
    """``obj`` as indented JSON, written atomically (:func:`atomic_write`)."""
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
    """One row an epoch (loss, accuracy, their validation twins): the curves in a form any
    spreadsheet opens, written atomically."""
    buf = io.StringIO()
    fields = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in fields})
    atomic_write(path, buf.getvalue().encode())


def read_history_csv(path: Path) -> list[dict[str, float]]:
    """``history.csv`` as :func:`write_history_csv` wrote it: a row per epoch, ``epoch`` an int.

    An empty cell (no validation split) becomes NaN, a gap in a plot. A damaged line (edited by
    hand, cut short) is skipped and the rest kept: the history is what a person looks at, and a
    model loads and a report draws without a line of it. An unreadable file reads as no history.
    """
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for raw in csv.DictReader(f):
                try:
                    row = {k: float(v) if v else math.nan for k, v in raw.items() if k is not None}
                except (TypeError, ValueError):
                    continue
                epoch = row.get("epoch", math.nan)
                if math.isfinite(epoch):
                    rows.append({**row, "epoch": int(epoch)})
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return rows


def write_skipped_csv(path: Path, skipped: Sequence[Mapping[str, str]]) -> None:
    """The skipped files and why, one row each, in UTF-8.

    A name that is not UTF-8 on disk (``caf\\xe9.jpg`` from an old Latin-1 archive) comes from
    the file system with its bytes escaped as lone surrogates, which strict UTF-8 cannot encode:
    ``surrogateescape`` writes those bytes back as they are, so the row names the real file
    rather than the whole run failing at its last step.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "reason"])
    for row in skipped:
        writer.writerow([row["path"], row["reason"]])
    atomic_write(path, buf.getvalue().encode("utf-8", "surrogateescape"))


def read_config(folder: str | Path, *, model_folder: bool = False) -> dict[str, Any]:
    """A run folder's ``config.json``, checked to be headstart's, without its weights.

    For readers that only show what a run recorded (the report, ``headstart info``): they work
    on a run whose weights are gone, and they must not each parse the file their own way.

    Args:
        model_folder: read any timm model folder (``local-dir:``), not only a headstart run: no
            ``headstart`` section is required, and errors are
            :class:`~headstart.errors.BackboneNotFoundError` that speak of model folders.

    Raises:
        RunFolderError: the folder or its config is missing, unreadable or not written by
            headstart.
        BackboneNotFoundError: with ``model_folder``, no readable JSON object in config.json.
    """
    folder = Path(folder)
    if model_folder:
        return _read_model_config(folder, folder / CONFIG_NAME)
    if not folder.is_dir():
        raise RunFolderError(str(run_folder_problem(folder)))
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise RunFolderError(
            f"'{folder}' is not a headstart run folder (no {CONFIG_NAME}); pass the folder "
            "`headstart train` wrote."
        )
    try:
        config = _parse_json(config_path)
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"Cannot read {config_path}: {exc}.") from exc
    hs = config.get("headstart") if isinstance(config, dict) else None
    if not isinstance(hs, dict) or not isinstance(hs.get("classes"), list):
        raise RunFolderError(
            f"{config_path} was not written by headstart (no 'headstart' section with classes); "
            "to use a timm folder as a backbone, pass it as --model local-dir:PATH."
        )
    return config


def _read_model_config(folder: Path, path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BackboneNotFoundError(
            f"'{folder}' has no {CONFIG_NAME}; a model folder holds config.json + "
            "model.safetensors as timm writes them (timm.models.push_to_hf_hub / save_for_hf)."
        )
    try:
        config = _parse_json(path)
    except (OSError, ValueError) as exc:
        raise BackboneNotFoundError(f"Cannot read {path} as JSON ({exc}).") from None
    if not isinstance(config, dict):
        raise BackboneNotFoundError(f"{path} must hold a JSON object, got {type(config).__name__}.")
    return config


def _parse_json(path: Path) -> Any:
    """A config file's JSON, every way it can be unreadable a ValueError (or an OSError).

    A config nested deeper than Python's recursion limit (``[[[[...``, a few hundred kilobytes)
    makes the parser raise RecursionError, which is said here as what it is: not JSON headstart
    can read, rather than a crash (tests/_hostile_models.py, ``run-config-deeply-nested``).
    """
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested deeper than any config is") from None


def run_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a finished run that commands can load, and the fix; None if it is.

    The one message every command gives for a run argument that is missing, unfinished or some
    other folder, so ``info``, ``predict``, ``evaluate``, ``export``, ``explain``, ``report``
    and ``ImageClassifier.load`` read the same. Training is never suggested as the fix: the
    folder is often a typo or an image folder (arguments swapped), and ``train --out`` into
    either is not what was meant.
    """
    head = f"'{folder}' is not a finished headstart run"
    fix = (
        f"pass the folder `headstart train` wrote (its --out, holding {CONFIG_NAME} and "
        f"{WEIGHTS_NAME})"
    )
    if not folder.exists():
        near = _nearby_run(folder)
        hint = f"; did you mean '{near}'?" if near else "."
        return f"{head}: there is no such folder; {fix}{hint}"
    if not folder.is_dir():
        return f"{head}: it is a file; {fix}."
    if _is_run(folder):
        return None
    has_config, has_weights = (folder / CONFIG_NAME).is_file(), (folder / WEIGHTS_NAME).is_file()
    if not has_config and (folder / ARGS_NAME).is_file():
        return (
            f"{head}: its training has not finished (no {CONFIG_NAME} yet); continue it with "
            f"`headstart train --resume {shlex.quote(str(folder))}`."
        )
    missing = " and ".join(
        name
        for name, there in ((CONFIG_NAME, has_config), (WEIGHTS_NAME, has_weights))
        if not there
    )
    inside = _runs_inside(folder) if not has_config and not has_weights else []
    if inside:  # the folder of runs (`runs/`), given for one of them
        shown = ", ".join(f"'{p}'" for p in inside[:3])
        more = f" and {len(inside) - 3} more" if len(inside) > 3 else ""
        return f"{head}: it holds runs ({shown}{more}); pass one of them."
    return f"{head}: it has no {missing}; {fix}."


def _runs_inside(folder: Path) -> list[Path]:
    """The run folders directly in ``folder``, by name. ``scandir`` tells folders from files
    without a stat each, so an image folder of a million files given by mistake costs little."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                folder / e.name
                for e in entries
                if e.is_dir() and not e.name.startswith(".") and _is_run(folder / e.name)
            )
    except OSError:
        return []


def _is_run(folder: Path) -> bool:
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()


def _nearby_run(folder: Path) -> Path | None:
    """A run folder beside ``folder`` with a name close to its name: the likely typo's target."""
    parent = folder.parent
    try:
        runs = [p.name for p in parent.iterdir() if _is_run(p)]
    except OSError:
        return None
    close = difflib.get_close_matches(folder.name, runs, n=1)
    return parent / close[0] if close else None


def read_run(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a run folder's config and weights, as data only.

    Raises:
        RunFolderError: the folder is missing, incomplete or not written by headstart.
    """
    folder = Path(folder)
    problem = run_folder_problem(folder)
    if problem is not None:
        raise RunFolderError(problem)
    config_path = folder / CONFIG_NAME
    config = read_config(folder)
    version = config["headstart"].get("format_version")
    if version != FORMAT_VERSION:
        raise RunFolderError(
            f"{config_path} has format_version {version!r}; this headstart reads "
            f"{FORMAT_VERSION}. Upgrade headstart or retrain."
        )
    return config, read_tensors(folder / WEIGHTS_NAME)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, on the CPU (data only: nothing is unpickled).

    Raises:
        RunFolderError: the file is missing or not safetensors.
    """
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunFolderError(f"Cannot read {path} as safetensors: {exc}.") from exc


def plain_timm(hs: Mapping[str, Any]) -> tuple[str | None, str]:
    """Whether plain timm loads the run: (the timm classifier the head is saved under, or None;
    the reason, said either way).

    timm builds the architecture from config.json and puts the weights of its own classifier
    layer on top of its final features. A run fits that only when its head *is* such a layer: a
    linear head on a timm backbone's final features, and the architecture has a classifier layer
    to hold it. Any other head (an MLP), features of an earlier stage (``layer``), or a backbone
    timm cannot build would load with missing or unexpected keys, or silently compute something
    else, so those heads are saved under ``headstart_head.`` and the run says why.

    Args:
        hs: The ``headstart`` section of a run's config.json (:func:`read_config`).
    """
    backbone = hs.get("backbone") or {}
    family, layer = backbone.get("family"), backbone.get("layer")
    kind = (hs.get("head") or {}).get("kind")
    classifier = backbone.get("classifier")
    if family != "timm":
        return None, f"its backbone is a {family} model, which timm does not build"
    if layer is not None:
        where = backbone.get("layer_module") or layer
        return None, (
            f"its head reads features of stage {where}, not the final features timm's "
            "classifier receives"
        )
    if kind != "linear":
        return None, f"its head is {kind or 'unknown'}, not a linear layer like timm's classifier"
    if not isinstance(classifier, str) or not classifier:
        return None, f"timm's {backbone.get('architecture')} has no classifier layer to hold it"
    return classifier, f"a linear head on timm's final features, saved as timm's {classifier!r}"
