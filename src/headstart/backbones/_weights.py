"""Weight files read as data only, loaded into a backbone strictly, and hub access that fails fast.

A pickled checkpoint can run any code when it is opened (docs/why.md, story 8), and people
share weight files and download them from strangers. So :func:`load_state_dict_file` is the one
place headstart opens a weights file: ``.safetensors`` through safetensors, anything else only
through ``torch.load(..., weights_only=True)``, and a file that needs more than tensors is refused
with :class:`UnsafeWeightsError`, never retried in a permissive mode. timm's own checkpoint helpers
are never used for a user's path, so no code path can fall back to full unpickling.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import struct
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.errors import UnsafeWeightsError, WeightsError

if TYPE_CHECKING:
    import torch

__all__ = [
    "WEIGHT_SUFFIXES",
    "cached_weights_error",
    "check_named_hash",
    "file_sha256",
    "hf_cache_only",
    "load_backbone_state",
    "load_state_dict_file",
    "offline",
    "seeded_init",
    "state_dict_sha256",
]

WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
_PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Where training frameworks nest the state dict: Lightning/timm train ("state_dict"), DeiT and
# many repos ("model"), plain training loops ("model_state_dict"), DeepSpeed ("module").
_NESTING_KEYS = ("state_dict", "model_state_dict", "model", "module")
# DataParallel/DistributedDataParallel and torch.compile wrap the module and prefix every key.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file as data only: the one safe loader for every user-given file.

    ``.safetensors`` cannot hold code at all. A pickle-based file (``.pth``, ``.pt``, ``.bin``,
    ``.ckpt``) is opened only with ``torch.load(weights_only=True)``, which refuses any object but
    tensors and plain containers; a file that needs more is refused rather than reopened without
    the restriction, because "convert it" is a one-line fix and "run it" can be a compromise.
    Common wrappers are undone: a ``{"state_dict": ...}`` / ``{"model": ...}`` nesting and the
    ``module.`` prefix of DataParallel.

    Args:
        path: The file.

    Returns:
        The tensors by name, on the CPU.

    Raises:
        WeightsError: The file does not exist, has an unknown suffix, is corrupt, or holds no
            state dict of tensors.
        UnsafeWeightsError: The file is a pickle that needs arbitrary objects to load.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"Weights file '{path}' has an unknown suffix {suffix!r}; headstart reads "
            f"{', '.join(WEIGHT_SUFFIXES)} files. Save the weights as .safetensors."
        )
    if not path.is_file():
        raise WeightsError(
            f"Weights file '{path}' does not exist; pass an existing .safetensors (or "
            "weights-only .pth) file, or --weights default / none."
        )
    if suffix == ".safetensors":
        obj: Any = _load_safetensors(path)
    else:
        obj = _load_weights_only_pickle(path)
    return _as_state_dict(obj, path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"Cannot read '{path}' as safetensors ({_first_line(exc)}); the file is damaged or "
            "not a safetensors file. Download or export it again."
        ) from exc


def _load_weights_only_pickle(path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings():
            # torch notes unusual pickle protocols; the weights_only unpickler decides either way.
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, AttributeError, TypeError, ImportError) as exc:
        raise _unsafe(path, exc) from None
    except RuntimeError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise _unsafe(path, exc) from None
        raise _unreadable(path, exc) from exc
    except (
        EOFError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        AssertionError,
        struct.error,
    ) as exc:
        # IndexError, KeyError: the weights-only unpickler's stack and memo on damaged opcodes
        # ("pop from empty list", a memo key that is not there); AssertionError: torch's check
        # of a tensor's storage record; struct.error: a legacy (non-zip) file cut short. Found
        # by tests/test_fuzz_models.py: a damaged file, not an unsafe one.
        raise _unreadable(path, exc) from exc


def _unsafe(path: Path, exc: BaseException) -> UnsafeWeightsError:
    return UnsafeWeightsError(
        f"Refusing to unpickle '{path}': it needs objects other than tensors "
        f"({_pickle_reason(exc)}), and loading it could run code. If you trust it, convert it "
        "to .safetensors (safetensors.torch.save_file(state_dict, 'model.safetensors'))."
    )


def _unreadable(path: Path, exc: BaseException) -> WeightsError:
    return WeightsError(
        f"Cannot read '{path}' ({_first_line(exc)}); the file is damaged or not a PyTorch "
        "checkpoint. Download or export it again, preferably as .safetensors."
    )


def _pickle_reason(exc: BaseException) -> str:
    """The one informative line of torch's long weights_only message."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        low = line.lower()
        if "unsupported" in low or "global" in low or "operand" in low:
            return line.rstrip(".")[:160]
    return (lines[-1] if lines else type(exc).__name__)[:160]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _as_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(3):  # {"state_dict": {"model": ...}} and similar
        if not isinstance(obj, Mapping) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        nested = next(
            (obj[k] for k in _NESTING_KEYS if isinstance(obj.get(k), Mapping) and obj[k]), None
        )
        if nested is None:
            break
        obj = nested
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(
            f"'{path}' holds no state dict (found {type(obj).__name__}); save "
            "model.state_dict(), preferably with safetensors.torch.save_file."
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(
            f"'{path}' is not a state dict of tensors (e.g. {', '.join(not_tensors[:3])} are "
            "not tensors); save model.state_dict() instead."
        )
    state = {str(k): v for k, v in obj.items()}
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_backbone_state(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    drop: Sequence[str] = (),
    what: str,
) -> None:
    """Load ``state`` into a backbone, dropping the old task's head and nothing else.

    The classifier (and e.g. Inception's auxiliary heads) belongs to the task the weights were
    trained for and is replaced by headstart's own head, so its keys are dropped. Any other
    missing, unexpected or mis-shaped key means the file was saved from a different architecture:
    loading it partially would leave random layers in a "pretrained" backbone, so it is an error.
    If the backbone's keys all appear under one prefix (a run folder's or a Lightning module's
    ``model.``), that prefix is used and keys outside it are ignored as other parts of the model.

    Args:
        model: The freshly built backbone (classifier already removed).
        state: Tensors by name, from :func:`load_state_dict_file`.
        drop: Dotted module names whose keys belong to the old head.
        what: The weights' name for messages (file path or hub id).

    Raises:
        WeightsError: The tensors do not fit the architecture.
    """
    expected = model.state_dict()
    state = _select_prefix(dict(state), expected)
    prefixes = tuple(f"{name}." for name in drop if name)
    kept = {k: v for k, v in state.items() if k in expected or not k.startswith(prefixes)}
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in kept.items()
        if k in expected and v.shape != expected[k].shape
    ]
    # BatchNorm's num_batches_tracked is filled in by torch for old checkpoints without it.
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in kept if k not in expected]
    if mismatched or missing or unexpected:
        problems = []
        for label, keys in (
            ("shape mismatch", mismatched),
            ("missing", missing),
            ("unexpected", unexpected),
        ):
            if keys:
                more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
                problems.append(f"{label}: {', '.join(keys[:3])}{more}")
        raise WeightsError(
            f"Weights {what} do not fit the {type(model).__name__} architecture "
            f"({'; '.join(problems)}); pass weights saved from this --model."
        )
    model.load_state_dict(kept, strict=False)


def _select_prefix(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    names = [k for k in expected if not k.endswith("num_batches_tracked")]
    if not names or all(k in state for k in names):
        return state
    probe = names[0]
    candidates = {k[: -len(probe)] for k in state if k.endswith("." + probe) and k != probe}
    for prefix in sorted(candidates, key=len):
        if all(prefix + k in state for k in names):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def file_sha256(path: str | Path) -> str:
    """sha256 hex of a file's bytes: the identity of user-given weights for cache keys."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes: tells two random inits apart in a cache."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Seed the global RNG for one model construction, restoring it afterwards.

    ``--weights none`` must give the same network every time, or cached features and reported
    results would not be reproducible; forking keeps the caller's own random stream untouched.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------- cached defaults
def check_named_hash(path: Path, what: str) -> None:
    """Refuse a cached checkpoint whose content no longer matches the hash in its file name.

    torch.hub names a download ``NAME-<first hex digits of its sha256>.pth`` and checks that hash
    only while downloading; later the cached file is trusted as it is. A file replaced in the
    cache (by another program, a shared home directory, a tampered image) would otherwise load
    silently under the name of the official weights, and the run would record their id. Hashing
    costs a fraction of a second against the seconds of building the network.

    Raises:
        WeightsError: The content's sha256 does not start with the hash in the name.
    """
    import torch.hub

    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None:
        return
    expected = match.group(1)
    actual = file_sha256(path)
    if not actual.startswith(expected):
        raise WeightsError(
            f"The cached weights of {what} ('{path}') do not match the hash in their name "
            f"(sha256 {actual[:12]}..., expected {expected}...): the file was changed or damaged "
            "after download. Delete it and run again to download a fresh copy."
        )


def cached_weights_error(what: str, where: str, exc: BaseException) -> WeightsError | None:
    """The one-line error for a library's default weights that failed to load from its cache,
    or None when ``exc`` is not about the weights file (a bug, which keeps its traceback).

    timm loads its cached default weights itself, with safetensors or ``weights_only=True``, so
    nothing in them runs; but what it raises (RuntimeError, SafetensorError) would reach the user
    as a traceback. A file that needs unpickling is refused as :func:`load_state_dict_file`
    refuses one; a damaged file or one of other tensors is named with the fix."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text:
        return UnsafeWeightsError(
            f"Refusing to unpickle the cached weights of {what} ({where}): they need objects "
            f"other than tensors ({_pickle_reason(exc)}), and loading them could run code; the "
            "cache was tampered with. Delete it and run again to download a fresh copy."
        )
    if type(exc).__name__ == "SafetensorError" or "loading state_dict" in text:
        return WeightsError(
            f"The cached weights of {what} ({where}) cannot be loaded ({_first_line(exc)}): "
            "they were changed or damaged after download. Delete them and run again to "
            "download a fresh copy."
        )
    return None


# ---------------------------------------------------------------------- hub access
def offline(host: str) -> bool:
    """Whether downloads from ``host`` must be skipped: offline mode is set or it is unreachable.

    huggingface_hub retries an unreachable host for most of a minute before it gives up, and a
    user without a network should get the "use local weights" message at once. ``HF_HUB_OFFLINE``
    (the hub's own switch) is honoured for every download, torchvision's included.
    """
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:  # pragma: no cover - huggingface_hub is a timm dependency
        pass
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False  # a proxy decides reachability; let the download itself try
    return not _reachable(host)


@lru_cache(maxsize=8)
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A TCP connect to ``host``, bounded in time even when name resolution hangs."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="headstart-probe")
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


@contextmanager
def hf_cache_only(active: bool) -> Iterator[None]:
    """Put huggingface_hub in offline mode (local cache only) for the duration, if ``active``."""
    if not active:
        yield
        return
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}
