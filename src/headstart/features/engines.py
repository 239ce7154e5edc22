"""Who runs a backbone's forward pass on a CPU: PyTorch itself, ONNX Runtime or OpenVINO.

Extraction is almost all forward pass, and PyTorch eager is not always the fastest CPU runtime for
a frozen graph: which is fastest depends on the backbone and on how busy the CPU is (BENCHMARKS.md,
issue 27). On the project's 2-core machine under load (load average 9-12, "Extraction by engine,
whole processes against a timm eager loop"), ONNX Runtime or OpenVINO ran whole extraction
processes of mobilenetv3_large_100 and efficientnet_b0 at about twice headstart's torch path and of
the ResNets at 1.3-1.5x, and were level or slower on vit_small and convnext_tiny. On the same
machine idle ("Extraction by engine on a quiet machine"), torch already ran resnet18 and resnet50
at 99% and 92% of what the cores' matmul speed allows, and neither engine beat it. Features agree
with torch's to 2e-6 or better (ResNets 3-5e-7). So the backbone's feature graph (the module that
maps a batch to the pooled features headstart caches, at the run's input size, with a dynamic batch
axis) can be exported once to ONNX and run by an engine, and ``auto`` measures before it takes one:

- ``torch``: as before, channels-last eager PyTorch in inference mode.
- ``onnxruntime``: the export, on ONNX Runtime's CPU provider (extra ``onnx``).
- ``openvino``: the same export read by OpenVINO's CPU plugin (extra ``openvino``), at float32
  precision (its default on CPUs with bf16 units is bf16, which misses the parity by far).
- ``auto`` (default): the fastest of them measured on this backbone, kept on torch unless
  another is :data:`MIN_GAIN` times as fast (see :func:`select_runner`).

Everything is decided once per backbone and remembered on disk, content-addressed under the
feature cache's folder (``engines/``): the export, keyed by a sha256 of the architecture, the
layer, the input size and the weights' bytes (so a fine-tuned or random-init backbone never
meets another's graph), and a record per engine of its parity with torch and, for ``auto``, of
the speeds measured. Writes are atomic; an export whose bytes no longer match the digest
recorded beside it (a torn copy, a bit flip) or that its engine cannot load is rebuilt.

An engine is used only where its features equal torch's to :data:`PARITY_TOLERANCE` relative
to their largest magnitude, checked on a few inputs. Otherwise, and where the package is
missing or the export fails, extraction runs on torch and says so once (an
:class:`~headstart.errors.EngineWarning`); under ``auto`` a missing package says nothing, as
``auto`` promises only the fastest engine there is.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from headstart.errors import EngineWarning, InvalidParameterError, StorageError

__all__ = [
    "AUTO_MIN_IMAGES",
    "ENGINES",
    "MIN_GAIN",
    "PARITY_TOLERANCE",
    "Engine",
    "EngineRunner",
    "check_engine",
    "choose_engine",
    "engine_parity",
    "select_runner",
    "warn_engine_on_device",
]

Engine = Literal["auto", "torch", "onnxruntime", "openvino"]
ENGINES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")
PARITY_TOLERANCE = 1e-4
"""Largest difference of an engine's features from torch's, relative to the largest feature,
for the engine to be used. Float32 kernels that differ only in their order of summation give
1e-7..1e-6 (ResNets 3e-7, ConvNeXt 4e-6 measured); a difference of 1e-4 or more means another
computation (an op exported wrongly, reduced precision), not rounding."""
AUTO_MIN_IMAGES = 256
"""``auto`` considers another engine for extractions of at least this many images. The first
time costs an export, a check and a measurement (seconds: resnet50 about 10 s under load), and
every process loads the engine's graph (a second or so), more than another engine saves on a
few dozen images; so the tests, the prediction of a handful of files and a compare's timing
probe stay on torch and pay nothing, not even the hash of the weights that keys the export."""
MIN_GAIN = 1.1
"""``auto`` takes another engine only when it ran this many times torch's images per second:
a tie on a busy machine is noise, and torch needs no export to trust."""
# Bump when the export recipe changes: old exports and records are then not found.
_FORMAT = 1
_OPSET = 17  # LayerNorm as one op (ConvNeXt, ViT); supported by every ONNX Runtime of late
_CHECK_INPUTS = 4  # parity inputs: a few, as export's own check runs
_TIMING_BATCH = 8
_TIMING_REPEATS = 3
_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}
_said: set[str] = set()


def check_engine(engine: str) -> str:
    """``engine`` if headstart knows it.

    Raises:
        InvalidParameterError: Any other value; taking it as ``auto`` would hide a typo.
    """
    if engine not in ENGINES:
        raise InvalidParameterError(
            f"Unknown engine {engine!r}; choose one of {', '.join(ENGINES)}."
        )
    return engine


@dataclass
class EngineRunner:
    """An engine ready to run the exported feature graph.

    ``run(x, threads)`` gives the features of a float32 ``[N, 3, H, W]`` batch with the engine's
    intra-op threads set to ``threads`` (one session per count, made on first use), so that
    :class:`~headstart.threads.ThreadProbe` chooses the count for it as it does for torch.
    """

    name: str
    input_size: tuple[int, ...]
    _sessions: Callable[[int], Callable[[np.ndarray], np.ndarray]]

    def __post_init__(self) -> None:
        self._made: dict[int, Callable[[np.ndarray], np.ndarray]] = {}

    def accepts(self, x: torch.Tensor) -> bool:
        """Whether ``x`` has the shape the graph was exported for (another size: torch)."""
        return tuple(x.shape[1:]) == self.input_size

    def prepare(self, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        """The session for ``threads``, made now if it is not yet: before a thread probe times
        batches, so that making one is not counted against its count."""
        session = self._made.get(threads)
        if session is None:
            session = self._made[threads] = self._sessions(threads)
        return session

    def run(self, x: torch.Tensor, threads: int) -> np.ndarray:
        session = self.prepare(threads)
        return session(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32))


def select_runner(
    module: torch.nn.Module,
    spec: Mapping[str, Any],
    input_size: tuple[int, ...],
    *,
    engine: str,
    folder: Path,
    images: int,
) -> EngineRunner | None:
    """The engine to run ``module`` (a backbone's feature graph, in eval mode, on the CPU) with,
    or None for torch.

    For ``auto``: None below :data:`AUTO_MIN_IMAGES` images; else the installed engines that
    pass the parity check are timed against torch on the same batch (round-robin, median of
    :data:`_TIMING_REPEATS`), once per backbone and thread count, and the fastest is taken if
    it beats torch by :data:`MIN_GAIN`.

    Args:
        spec: The backbone's spec (architecture and layer go into the export's key).
        input_size: ``(3, H, W)``: the run's input size, fixed in the export.
        folder: The feature cache's folder; exports and records go to ``folder/engines``.
        images: How many images this extraction computes.
    """
    check_engine(engine)
    if engine == "torch" or (engine == "auto" and images < AUTO_MIN_IMAGES):
        return None
    key = _export_key(module, spec, input_size)
    store = _Store(folder / "engines", key, str(spec.get("architecture") or "backbone"))
    if engine != "auto":
        return _explicit(module, store, input_size, engine)
    threads = torch.get_num_threads()
    candidates = [name for name in ENGINES[2:] if _installed(name)]
    if not candidates:
        return None
    # Measured again when an engine is installed, removed or upgraded, or the threads change.
    setup = "-".join([str(threads), *(f"{name}{_version(name)}" for name in candidates)])
    known = store.read_choice(setup)
    if known is None:
        runners: dict[str, EngineRunner] = {}
        for name in candidates:
            runner = _checked(module, store, input_size, name, auto=True)
            if runner is not None:
                runners[name] = runner
        known = _measure(module, runners, input_size, threads)
        store.write_choice(setup, known)
        return runners.get(str(known["chosen"]))  # None for torch
    chosen = str(known.get("chosen", "torch"))
    if chosen not in candidates:
        return None
    return _checked(module, store, input_size, chosen, auto=True)


def engine_parity(
    module: torch.nn.Module, runner: EngineRunner, input_size: tuple[int, ...]
) -> float:
    """Largest difference of ``runner``'s features from ``module``'s on a few fixed inputs,
    relative to the largest of torch's features.

    The inputs are uniform pixels normalised as images are (about -2..2.5), from a fixed seed:
    the same numbers for every check, a range like real images'."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((_CHECK_INPUTS, *input_size), generator=generator) * 4.6 - 2.1
    with torch.inference_mode():
        reference = module(x).float().numpy()
    got = runner.run(x, torch.get_num_threads())
    scale = float(np.abs(reference).max()) or 1.0
    if got.shape != reference.shape:
        return float("inf")
    return float(np.abs(got - reference).max()) / scale


# --------------------------------------------------------------------------- choosing
def _explicit(
    module: torch.nn.Module, store: _Store, input_size: tuple[int, ...], engine: str
) -> EngineRunner | None:
    if not _installed(engine):
        _say(
            f"--engine {engine}: {engine} is not installed (pip install "
            f"'headstart[{_EXTRA[engine]}]'); extracting with torch.",
            key=f"missing:{engine}",
        )
        return None
    return _checked(module, store, input_size, engine, auto=False)


def _checked(
    module: torch.nn.Module,
    store: _Store,
    input_size: tuple[int, ...],
    engine: str,
    *,
    auto: bool,
) -> EngineRunner | None:
    """The engine's runner if its parity with torch holds (checked once, recorded), else None
    with one line saying why: said every time the user named the engine, under ``auto`` only
    when the check is first made."""
    record = store.read_parity(engine)
    fresh = record is None
    runner: EngineRunner | None = None
    if record is None or record.get("usable"):
        try:
            runner = _load(store, module, input_size, engine)
        except Exception as exc:  # an exporter or engine that cannot take this graph
            record = {"usable": False, "error": _one_line(exc)}
            fresh = True
        else:
            if record is None:
                parity = engine_parity(module, runner, input_size)
                record = {"usable": parity < PARITY_TOLERANCE, "parity": parity}
    if fresh:
        store.write_parity(engine, record)
    if record.get("usable") and runner is not None:
        return runner
    if fresh or not auto:
        architecture = store.architecture
        if "error" in record:
            why = f"cannot run {architecture!r} ({record['error']})"
        else:
            why = (
                f"gives features {record.get('parity', float('nan')):.1e} from torch's for "
                f"{architecture!r} (relative; at most {PARITY_TOLERANCE:g} allowed)"
            )
        _say(f"engine {engine} {why}; extracting with torch.", key=f"{engine}:{store.key}")
    return None


def _measure(
    module: torch.nn.Module,
    runners: Mapping[str, EngineRunner],
    input_size: tuple[int, ...],
    threads: int,
) -> dict[str, Any]:
    """Images per second of torch and each runner on one batch, timed round-robin so that load
    which comes and goes falls on all alike; the choice: torch unless an engine wins by
    MIN_GAIN, and between engines within MIN_GAIN of each other the first of :data:`ENGINES`."""
    if not runners:
        return {"chosen": "torch", "images_per_second": {}}
    x = torch.rand((_TIMING_BATCH, *input_size), generator=torch.Generator().manual_seed(1))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    eager = module.to(memory_format=torch.channels_last)

    def torch_run() -> None:
        with torch.inference_mode():
            eager(x_cl)

    steps: dict[str, Callable[[], object]] = {"torch": torch_run}
    for name, runner in runners.items():
        steps[name] = lambda r=runner: r.run(x, threads)  # type: ignore[misc]
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up: first-run allocations and kernel choices
    for _ in range(_TIMING_REPEATS):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    rates = {name: _TIMING_BATCH / max(statistics.median(t), 1e-9) for name, t in times.items()}
    return {
        "chosen": choose_engine(rates),
        "images_per_second": {k: round(v, 2) for k, v in rates.items()},
        "threads": threads,
    }


def choose_engine(rates: Mapping[str, float]) -> str:
    """The engine ``auto`` takes, given images per second measured on the same batch.

    Torch unless an engine ran :data:`MIN_GAIN` times as fast; of several such engines within
    MIN_GAIN of the fastest (a tie, on a busy machine), the first of :data:`ENGINES`: ONNX
    Runtime, which won the whole extraction process in every measurement so far (BENCHMARKS.md).
    """
    floor = MIN_GAIN * rates.get("torch", 0.0)
    winners = [name for name in ENGINES[2:] if rates.get(name, 0.0) >= floor > 0]
    if not winners:
        return "torch"
    fastest = max(rates[name] for name in winners)
    return next(name for name in winners if rates[name] * MIN_GAIN >= fastest)


# --------------------------------------------------------------------------- exports
def _export_key(
    module: torch.nn.Module, spec: Mapping[str, Any], input_size: tuple[int, ...]
) -> str:
    """A sha256 of what decides the exported graph: the recipe, torch's version, the
    architecture, its layer and input size, and the weights' own bytes (not their name: a
    random init or a fine-tuned backbone must never share another's export)."""
    from headstart.backbones import state_dict_sha256

    payload = {
        "format": _FORMAT,
        "opset": _OPSET,
        "torch": torch.__version__,
        "family": spec.get("family"),
        "architecture": spec.get("architecture"),
        "model_args": spec.get("model_args", {}),
        "layer": spec.get("layer"),
        "input_size": list(input_size),
        "weights": state_dict_sha256(module.state_dict()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Store:
    """The files of one export: ``KEY.onnx``, ``KEY.json`` (its sha256, written after it),
    ``KEY.ENGINE-VERSION.json`` (parity) and ``KEY.auto-THREADS-ENGINES.json`` (speeds, the
    choice; ENGINES names the installed engines with their versions)."""

    folder: Path
    key: str
    architecture: str = ""

    @property
    def onnx(self) -> Path:
        return self.folder / f"{self.key}.onnx"

    def export(self, module: torch.nn.Module, input_size: tuple[int, ...]) -> Path:
        """The export's path, written now unless a copy whose bytes match its digest is there."""
        if self._intact():
            return self.onnx
        from headstart.runs import create_temp_beside

        self.folder.mkdir(parents=True, exist_ok=True)
        scratch = create_temp_beside(self.onnx)
        try:
            with warnings.catch_warnings():
                # The exporter's notices (its deprecation, tracer remarks) are not the user's.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    (torch.zeros((1, *input_size)),),
                    str(scratch),
                    input_names=["images"],
                    output_names=["features"],
                    dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                    opset_version=_OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
            data = scratch.read_bytes()
        finally:
            scratch.unlink(missing_ok=True)
        _atomic(self.onnx, data)
        _atomic(self.folder / f"{self.key}.json", _dumps({"sha256": _sha256(data)}))
        return self.onnx

    def forget_export(self) -> None:
        (self.folder / f"{self.key}.json").unlink(missing_ok=True)

    def _intact(self) -> bool:
        meta = _read_json(self.folder / f"{self.key}.json")
        if meta is None or not self.onnx.is_file():
            return False
        return bool(meta.get("sha256") == _sha256(self.onnx.read_bytes()))

    def read_parity(self, engine: str) -> dict[str, Any] | None:
        return _read_json(self._parity_path(engine))

    def write_parity(self, engine: str, record: Mapping[str, Any]) -> None:
        _atomic(self._parity_path(engine), _dumps(dict(record)), quiet=True)

    def read_choice(self, setup: str) -> dict[str, Any] | None:
        return _read_json(self.folder / f"{self.key}.auto-{setup}.json")

    def write_choice(self, setup: str, record: Mapping[str, Any]) -> None:
        _atomic(self.folder / f"{self.key}.auto-{setup}.json", _dumps(dict(record)), quiet=True)

    def _parity_path(self, engine: str) -> Path:
        return self.folder / f"{self.key}.{engine}-{_version(engine)}.json"


def _load(
    store: _Store, module: torch.nn.Module, input_size: tuple[int, ...], engine: str
) -> EngineRunner:
    """The engine's runner on the export; an export the engine cannot load is made again once
    (a damaged file that still matched, or one from a crash between its two writes)."""
    path = store.export(module, input_size)
    try:
        return _runner(path, engine, input_size)
    except Exception:
        store.forget_export()
    return _runner(store.export(module, input_size), engine, input_size)


def _runner(path: Path, engine: str, input_size: tuple[int, ...]) -> EngineRunner:
    runner = EngineRunner(engine, tuple(input_size), _SESSIONS[engine](path))
    # Loads the graph (a bad file fails here) at the count most batches will use.
    runner.run(torch.zeros((1, *input_size)), torch.get_num_threads())
    return runner


def _onnxruntime(path: Path) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    import onnxruntime

    model = path.read_bytes()

    def session(threads: int) -> Callable[[np.ndarray], np.ndarray]:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: no notices on stderr
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Decoding threads share the cores with the forward pass: idle workers that spin for
        # the next op would take their time (ONNX Runtime spins by default).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        made = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return lambda x: np.asarray(made.run(["features"], {"images": x})[0])

    return session


def _openvino(path: Path) -> Callable[[int], Callable[[np.ndarray], np.ndarray]]:
    import openvino

    core = openvino.Core()
    model = core.read_model(str(path))

    def session(threads: int) -> Callable[[np.ndarray], np.ndarray]:
        compiled = core.compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads,
                "INFERENCE_PRECISION_HINT": "f32",  # bf16 where the CPU has it, else
                "NUM_STREAMS": 1,
                "ENABLE_CPU_PINNING": False,  # a shared machine: never pin to busy cores
            },
        )
        request = compiled.create_infer_request()
        output = compiled.output(0)
        return lambda x: np.array(request.infer({0: x})[output], dtype=np.float32)

    return session


_SESSIONS: dict[str, Callable[[Path], Callable[[int], Callable[[np.ndarray], np.ndarray]]]] = {
    "onnxruntime": _onnxruntime,
    "openvino": _openvino,
}


# --------------------------------------------------------------------------- helpers
def _installed(engine: str) -> bool:
    try:
        importlib.import_module(engine)
    except ImportError:
        return False
    return True


def _version(engine: str) -> str:
    return str(getattr(importlib.import_module(engine), "__version__", "0")).split("-")[0]


def _say(message: str, *, key: str) -> None:
    """One :class:`EngineWarning` per ``key`` and process."""
    if key in _said:
        return
    _said.add(key)
    warnings.warn(message, EngineWarning, stacklevel=4)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _atomic(path: Path, data: bytes, *, quiet: bool = False) -> None:
    """Write ``path`` atomically; a record that cannot be written (read-only cache) is only not
    remembered, with ``quiet``, while an export that cannot be written fails its engine."""
    from headstart.runs import atomic_write

    try:
        atomic_write(path, data)
    except StorageError:
        if not quiet:
            raise


def warn_engine_on_device(engine: str, device: torch.device) -> None:
    """Say once that an engine named by the user does not run on ``device``: torch does."""
    _say(
        f"--engine {engine} runs on the CPU only; extracting on {device.type} with torch.",
        key=f"device:{engine}:{device.type}",
    )
