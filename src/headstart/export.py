"""``headstart export``: the trained model, its preprocessing and its calibration in one file.

Deploying a model usually means re-implementing its preprocessing in another runtime, which is
the very mistake headstart exists to prevent (docs/why.md, story 9). So an export carries as
much of the preprocessing as a graph can hold, states the rest in a sidecar JSON, and proves it:
before anything is written, the exported file is run (onnxruntime for ONNX, ``torch.jit`` for
TorchScript) on sample images, and its probabilities must match ``ImageClassifier.predict_proba``
to :data:`PARITY_TOLERANCE`, or nothing is written.

Two input contracts:

- ``float`` (default): ``images`` float32 ``[N, 3, H, W]``, exactly the tensor
  ``headstart preprocess --model local-dir:RUN IMAGE --save X.npy`` writes, batch axis added.
- ``uint8``: ``images`` uint8 ``[N, H, W, 3]`` RGB pixels after the resize and crop; the pixel
  scale, the channel order and the normalisation run inside the graph.

Either way the output is ``probabilities`` float32 ``[N, num_classes]`` in the order of the
sidecar's ``classes``: the softmax of the head's logits. The run's calibration temperature is
already folded into the head's last layer (:func:`headstart.heads.modules.fold_temperature`), so
it is in the graph with nothing more to do; the sidecar records its value.

A run with a typicality score (issue 24) has a second output, ``typicality`` float32 ``[N]``:
how typical of the training classes each image is, computed in the graph from the pooled
features (and the logits, for the logit scores) by
:class:`~headstart.heads.typicality_module.TypicalityModule`. The sidecar's ``typicality`` holds
the score's name and the run's threshold, so a deployment flags unknown images as ``predict``
does. It is checked like the probabilities, against ``predict_typicality``, to
:data:`TYPICALITY_TOLERANCE`, with one allowance a step function needs (see
:func:`_typicality_unexplained`). A run without one exports exactly as before, one output.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from headstart._version import __version__
from headstart.errors import (
    DataError,
    ExportError,
    HeadstartError,
    ImageDecodeError,
    InvalidParameterError,
    MissingDependencyError,
)
from headstart.heads.typicality_module import TypicalityModule
from headstart.runs import create_temp_beside

if TYPE_CHECKING:
    from PIL import Image

    from headstart.estimator import ImageClassifier
    from headstart.heads.typicality import Typicality
    from headstart.preprocess import Preprocess

__all__ = [
    "EXPORT_FORMATS",
    "INPUT_CONTRACTS",
    "PARITY_TOLERANCE",
    "RAW_TOLERANCE",
    "TYPICALITY_TOLERANCE",
    "ExportResult",
    "export_classifier",
    "export_run",
]

ExportFormat = Literal["onnx", "torchscript"]
InputContract = Literal["float", "uint8"]

EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
INPUT_CONTRACTS: tuple[str, ...] = ("float", "uint8")
PARITY_TOLERANCE = 1e-4
"""Largest absolute difference of any probability between the export and ``predict`` allowed.

Float32 graphs differ from eager PyTorch by kernel choice and operation order, typically by
1e-7..1e-6 in a probability; a difference above 1e-4 means a different computation (a
preprocessing step lost, an op exported wrongly), so the export is refused.
"""
ONNX_OPSET = 17  # LayerNorm as one op; supported by every onnxruntime of the last years
TYPICALITY_TOLERANCE = 1e-5
"""Largest difference of a typicality from ``predict``'s allowed where no held-out score lies
within :data:`RAW_TOLERANCE` of the image's raw score (see :func:`_typicality_unexplained`)."""
RAW_TOLERANCE = 1e-5
"""How far a float32 graph may move a raw typicality score, relative to the held-out scores'
magnitude: pooled features differ from eager PyTorch's by about 1e-7 relative, a Mahalanobis
distance summed over their dimensions by up to about 1e-6."""
_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
_SAMPLE_LIMIT = 8  # images the parity check runs: enough for every class path, still quick
_SYNTHETIC_SAMPLES = 4
# Recorded images tried for the sample: unreadable ones are passed over, but a dataset gone
# bad as a whole falls back to generated images without decoding all of it.
_SAMPLE_TRIES = 64


@dataclass(frozen=True)
class ExportResult:
    """What ``export_run`` wrote and how closely it matched ``predict``.

    Attributes:
        path: The exported model file.
        sidecar: The JSON beside it: classes, preprocessing, input contract, calibration.
        max_abs_diff: Largest difference of a probability from ``predict_proba``'s.
        images_checked: Sample images the parity check ran.
        typicality_max_abs_diff: Largest difference of a typicality from
            ``predict_typicality``'s; None for a run without a typicality score (one output).
    """

    path: Path
    sidecar: Path
    format: str
    input: str
    max_abs_diff: float
    images_checked: int
    typicality_max_abs_diff: float | None = None


def export_run(
    run: str | Path,
    *,
    format: str = "onnx",
    out: str | Path | None = None,
    input: str = "float",
    sample_images: Sequence[str | Path] | None = None,
    quiet: bool = True,
) -> ExportResult:
    """Export the model of a run folder (see the module docstring for the contracts).

    Args:
        run: A run folder written by ``headstart train``.
        format: "onnx" or "torchscript".
        out: The model file to write (default ``RUN/model.onnx`` or ``RUN/model.torchscript.pt``);
            the sidecar is written beside it as ``OUT.json``.
        input: "float" (preprocessed tensors) or "uint8" (resized and cropped RGB pixels).
        sample_images: Images the parity check runs. Default: up to eight images of the data the
            run recorded, or generated images when that data is gone.
        quiet: No progress output.

    Raises:
        MissingDependencyError: ONNX export without the ``onnx`` extra installed.
        ExportError: The exported model differs from ``predict``; nothing was written.
        RunFolderError: ``run`` is not a run folder.
    """
    from headstart.estimator import ImageClassifier

    _check_choice("format", format, EXPORT_FORMATS)
    _check_choice("input", input, INPUT_CONTRACTS)
    if format == "onnx":
        _require_onnx()
    clf = ImageClassifier.load(run, cache=False, quiet=quiet)
    target = Path(out) if out is not None else Path(run) / f"model{_SUFFIX[format]}"
    return export_classifier(
        clf,
        target,
        format=format,
        input=input,
        sample_images=sample_images,
        source_run=str(Path(run).resolve()),
    )


def export_classifier(
    clf: ImageClassifier,
    out: str | Path,
    *,
    format: str = "onnx",
    input: str = "float",
    sample_images: Sequence[str | Path] | None = None,
    source_run: str | None = None,
) -> ExportResult:
    """Export a fitted classifier to ``out``; the parity check runs before anything is written."""
    _check_choice("format", format, EXPORT_FORMATS)
    _check_choice("input", input, INPUT_CONTRACTS)
    if format == "onnx":
        _require_onnx()
    clf._check_fitted()
    out = Path(out)
    if out.is_dir():
        raise DataError(f"--out {out} is a folder; pass the file to write, e.g. {out}/model.onnx.")
    out.parent.mkdir(parents=True, exist_ok=True)
    preprocess = clf.preprocess_
    temperature = float(getattr(clf, "temperature_", 1.0))
    with tempfile.TemporaryDirectory(prefix="headstart-export-") as tmp:
        paths = _sample_paths(clf, sample_images, Path(tmp))
        images = [_load(p, preprocess) for p in paths]
        expected = clf.predict_proba(paths)
        typicality = clf.typicality_
        expected_typicality = None if typicality is None else clf.predict_typicality(paths)
        # On the CPU, where the exported file will be checked (predict may have used a GPU).
        graph = _ExportGraph(clf, uint8=input == "uint8").eval().to("cpu")
        batch = _batch(images, preprocess, uint8=input == "uint8")
        tmp_model = create_temp_beside(out)  # not mkstemp: the model keeps the umask's mode
        try:
            with torch.no_grad():
                if format == "onnx":
                    _write_onnx(graph, batch, tmp_model)
                    run_export = _onnx_runner(tmp_model, _output_names(graph))
                    runtime = f"onnxruntime {_onnxruntime_version()}"
                else:
                    _write_torchscript(graph, batch, tmp_model)
                    run_export = _torchscript_runner(tmp_model)
                    runtime = f"torch.jit {torch.__version__}"
                # One image alone, then all together: the batch axis must be truly dynamic.
                outputs = [run_export(batch[:1]), run_export(batch[1:])]
            got = np.concatenate([o[0] for o in outputs])
            diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
            if not diff <= PARITY_TOLERANCE:
                raise ExportError(
                    f"The exported {format} model differs from `headstart predict` by up to "
                    f"{diff:.3g} in a probability on {len(paths)} sample images (allowed "
                    f"{PARITY_TOLERANCE:g}); nothing was written. Try the other --format and "
                    "report this as a bug."
                )
            typicality_diff = None
            if typicality is not None and expected_typicality is not None:
                got_typicality = np.concatenate([o[1] for o in outputs])
                typicality_diff = _check_typicality(
                    typicality, graph, batch, got_typicality, expected_typicality, format=format
                )
            sidecar = _sidecar(
                clf,
                out,
                format=format,
                input=input,
                temperature=temperature,
                source_run=source_run,
                parity={
                    "images": len(paths),
                    "max_abs_diff": diff,
                    "tolerance": PARITY_TOLERANCE,
                    "runtime": runtime,
                    **(
                        {}
                        if typicality_diff is None
                        else {
                            "typicality_max_abs_diff": typicality_diff,
                            "typicality_tolerance": TYPICALITY_TOLERANCE,
                        }
                    ),
                },
            )
            os.replace(tmp_model, out)
        finally:
            tmp_model.unlink(missing_ok=True)
    sidecar_path = out.with_name(out.name + ".json")
    from headstart.runs import write_json

    write_json(sidecar_path, sidecar)
    return ExportResult(out, sidecar_path, format, input, diff, len(paths), typicality_diff)


def _check_typicality(
    typicality: Typicality,
    graph: _ExportGraph,
    batch: torch.Tensor,
    got: np.ndarray,
    expected: np.ndarray,
    *,
    format: str,
) -> float:
    """The largest difference of the exported typicality from ``predict``'s; raises
    :class:`ExportError` where a difference is more than float32 arithmetic explains."""
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
    if diff <= TYPICALITY_TOLERANCE:
        return diff
    with torch.no_grad():  # the reference: headstart's own numpy score of eager features
        features = graph.backbone(graph.prepare(batch))
        logits = graph.head(features)
    raw = typicality.raw(features.double().numpy(), logits.double().numpy())
    if got.shape == expected.shape and not _typicality_unexplained(typicality, raw, got, expected):
        return diff
    raise ExportError(
        f"The exported {format} model differs from `headstart predict` by up to {diff:.3g} in "
        f"a typicality on {len(batch)} sample images (allowed {TYPICALITY_TOLERANCE:g}); "
        "nothing was written. Try the other --format and report this as a bug."
    )


def _typicality_unexplained(
    typicality: Typicality, raw: np.ndarray, got: np.ndarray, expected: np.ndarray
) -> bool:
    """Whether ``got`` or ``expected`` differs from the typicality of ``raw`` by more than
    moving ``raw`` by :data:`RAW_TOLERANCE` could.

    Typicality is a step function of the raw score: it moves by ``1/n`` each time the raw score
    crosses one of the ``n`` held-out scores. A float32 graph moves the raw score a little, and
    where a held-out score lies that close to it, the typicality steps by ``1/n``, more than
    :data:`TYPICALITY_TOLERANCE` for any ``n`` under 100,000; the more held-out images, the more
    often (the chance grows with ``n`` times the relative error). Refusing such an export would
    be a false alarm, so each image's typicality may lie anywhere between that of ``raw`` less
    and plus the tolerance (``raw`` from headstart's own scoring of the eager features), and not
    beyond. On the demo data (640 held-out images, 320 test images; Mahalanobis, relative
    Mahalanobis, kNN and energy) no image stepped: ONNX Runtime matched ``predict`` to 2.4e-8.
    """
    knowns = np.asarray(typicality.knowns, np.float64)
    n = len(knowns)
    finite = np.isfinite(raw)
    raw = np.where(finite, raw, 0.0)
    span = RAW_TOLERANCE * np.maximum(float(np.abs(knowns).max(initial=0.0)), np.abs(raw))
    low = np.where(finite, np.searchsorted(knowns, raw - span, side="left") / n, 0.0)
    high = np.where(finite, np.searchsorted(knowns, raw + span, side="right") / n, 0.0)
    slack = TYPICALITY_TOLERANCE
    return bool(
        np.any((got < low - slack) | (got > high + slack))
        or np.any((expected < low - slack) | (expected > high + slack))
    )


# ----------------------------------------------------------------------------- the graph
class _ExportGraph(nn.Module):
    """Backbone, head, temperature and softmax; for uint8 input the normalisation too; and for a
    run with a typicality score, the typicality as a second output."""

    def __init__(self, clf: ImageClassifier, *, uint8: bool) -> None:
        super().__init__()
        preprocess = clf.preprocess_
        self.backbone = clf.backbone_.module
        self.head = clf.head_
        self.multi_label = clf.thresholds_ is not None  # a sigmoid a label, not a softmax
        self.uint8 = uint8
        self.bgr = preprocess.channel_order == "BGR"
        divisor = 1.0 / preprocess.scale
        # The float32 arithmetic of Preprocess's pixel table: divide by 255 exactly when it can.
        self.divide = divisor == round(divisor)
        self.divisor = float(round(divisor)) if self.divide else 1.0
        self.scale = float(preprocess.scale)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1))
        score = clf.typicality_
        self.typicality = TypicalityModule(score) if score is not None else None

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The input contract's tensor as the backbone takes it."""
        x = images
        if self.uint8:
            x = x.permute(0, 3, 1, 2).to(torch.float32)
            if self.bgr:
                x = x.flip(1)
            x = x / self.divisor if self.divide else x * self.scale
            x = (x - self.mean) / self.std
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(self.prepare(images))
        logits = self.head(features)
        if self.multi_label:  # calibrated: each label's temperature is in the head
            probabilities = torch.sigmoid(logits)
        else:
            probabilities = torch.softmax(logits, dim=1)  # calibrated: the temperature is in it
        if self.typicality is None:
            return probabilities
        return probabilities, self.typicality(features, logits)


def _write_onnx(graph: _ExportGraph, batch: torch.Tensor, path: Path) -> None:
    """TorchScript-based ONNX export (``dynamo=False``).

    torch's newer dynamo exporter needs the ``onnxscript`` package and traces through
    ``torch.export``, which rejects some timm models' data-dependent Python; the TorchScript-based
    exporter handles every backbone family headstart ships, offline, with ``onnx`` alone.
    """
    outputs = _output_names(graph)
    with warnings.catch_warnings():
        # The exporter's own notices (its deprecation, tracer remarks) are not the user's concern.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (batch[:1],),
            str(path),
            input_names=["images"],
            output_names=list(outputs),
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _output_names(graph: _ExportGraph) -> tuple[str, ...]:
    return ("probabilities",) if graph.typicality is None else ("probabilities", "typicality")


Runner = Callable[[torch.Tensor], list[np.ndarray]]
"""Runs an exported file on a batch: its outputs, in the order of :func:`_output_names`."""


def _onnx_runner(path: Path, outputs: Sequence[str]) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notices on stderr
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        return [np.asarray(o) for o in session.run(list(outputs), {"images": batch.numpy()})]

    return run


def _write_torchscript(graph: torch.nn.Module, batch: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices and torch.jit's deprecation
        traced = torch.jit.trace(graph, (batch[:1],), check_trace=False)
        torch.jit.save(traced, str(path))


def _torchscript_runner(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu")

    def run(batch: torch.Tensor) -> list[np.ndarray]:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = module(batch)
        return [np.asarray(o.numpy()) for o in (out if isinstance(out, tuple) else (out,))]

    return run


# ----------------------------------------------------------------------------- samples
def _sample_paths(
    clf: ImageClassifier, given: Sequence[str | Path] | None, tmp: Path
) -> list[Path]:
    """The images the parity check runs: the given ones, the run's data, or generated ones."""
    if given:
        from headstart.data import collect_image_paths

        files, skipped = collect_image_paths([Path(p) for p in given])
        if skipped or not files:
            bad = skipped[0].path if skipped else given[0]
            raise DataError(f"Sample image {bad} cannot be read; pass readable image files.")
        paths = files[:_SAMPLE_LIMIT]
    else:
        paths = _recorded_images(clf) or _synthetic_images(tmp)
    if len(paths) < 2:  # one alone and the rest as a batch: two images at least
        paths = [*paths, *_synthetic_images(tmp)][:_SAMPLE_LIMIT]
    return paths


def _recorded_images(clf: ImageClassifier) -> list[Path]:
    """Up to eight images of the run's recorded data, one per class first, if still there."""
    root = (getattr(clf, "dataset_", {}) or {}).get("root")
    if not root or not Path(str(root)).exists():
        return []
    try:
        dataset = clf.evaluation_dataset(str(root))
    except HeadstartError:
        return []
    from headstart.data import load_image

    by_class: dict[int, list[Path]] = {}
    for samples in dataset.splits.values():
        for s in samples:
            by_class.setdefault(s.label, []).append(s.path)
    longest = max((len(paths) for paths in by_class.values()), default=0)
    order = [
        paths[depth]
        for depth in range(longest)
        for paths in by_class.values()
        if depth < len(paths)
    ]
    # The dataset lists the files training skipped too (a truncated JPEG): the parity check
    # would stop on one with its decoding error, and the run could never be exported without
    # --sample. Only images that decode are picked, as training kept only those.
    picked: list[Path] = []
    for path in order[:_SAMPLE_TRIES]:
        try:
            load_image(path)
        except ImageDecodeError:
            continue
        picked.append(path)
        if len(picked) == _SAMPLE_LIMIT:
            break
    return picked


def _synthetic_images(tmp: Path) -> list[Path]:
    """A few generated images (shapes on clutter), when the run's data is not at hand."""
    from PIL import Image

    from headstart.synthetic import DEMO_CLASSES, make_image

    paths = []
    for i, (shape, texture) in enumerate(DEMO_CLASSES[:_SYNTHETIC_SAMPLES]):
        pixels = make_image(np.random.default_rng([7, i]), shape, texture, 160)
        path = tmp / f"sample-{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _load(path: Path, preprocess: Preprocess) -> Image.Image:
    from headstart.data import load_image

    return load_image(path, draft_size=preprocess.draft_size)


def _batch(images: Sequence[Image.Image], preprocess: Preprocess, *, uint8: bool) -> torch.Tensor:
    if uint8:
        return torch.stack(
            [torch.from_numpy(np.array(preprocess.resize_and_crop(img))) for img in images]
        )
    return torch.stack([preprocess(img) for img in images]).contiguous()


# ----------------------------------------------------------------------------- the sidecar
def _sidecar(
    clf: ImageClassifier,
    out: Path,
    *,
    format: str,
    input: str,
    temperature: float,
    source_run: str | None,
    parity: dict[str, Any],
) -> dict[str, Any]:
    preprocess = clf.preprocess_
    height, width = preprocess.input_size
    n = len(clf.classes_)
    if input == "uint8":
        contract = {
            "name": "images",
            "dtype": "uint8",
            "shape": ["N", height, width, 3],
            "description": (
                f"RGB pixels (0..255, channels last) of each image decoded as `decode` says, "
                f"then resized and cropped as `preprocess` says to {height}x{width}; the pixel "
                "scale, channel order, mean and std are applied inside the model."
            ),
        }
    else:
        contract = {
            "name": "images",
            "dtype": "float32",
            "shape": ["N", 3, height, width],
            "description": (
                "Each image decoded as `decode` says and preprocessed exactly as `preprocess` "
                "says (resize, crop, then scale, channel order, mean, std), channels first: the "
                "tensor `headstart preprocess --model local-dir:RUN IMAGE --save X.npy` writes, "
                "stacked along a new batch axis."
            ),
        }
    return {
        "format": format,
        "file": out.name,
        "headstart_version": __version__,
        "source_run": source_run,
        "classes": list(clf.classes_),
        "input_contract": input,
        "input": contract,
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["N", n],
            "description": "softmax of the calibrated logits (the temperature is folded into "
            "the head), columns in the order of `classes`",
        },
        "preprocess": {
            **preprocess.to_dict(),
            "description": preprocess.describe(),
        },
        "decode": {
            "mode": "RGB",
            "exif_orientation": "applied",
            "alpha": "dropped (not composited)",
            "first_frame_only": True,
            "jpeg_draft": {
                "size": list(preprocess.draft_size) if preprocess.draft_size else None,
                "description": (
                    "JPEG files are decoded with PIL's Image.draft('RGB', size) before loading "
                    "(DCT scaling, never below size); other formats at full size"
                    if preprocess.draft_size
                    else "none: every JPEG is decoded at full size (--decode exact)"
                ),
            },
        },
        "calibration": {"temperature": temperature},
        **_typicality_sidecar(clf),
        "parity": parity,
        **(_multi_label_sidecar(clf) if clf.thresholds_ is not None else {}),
    }


def _multi_label_sidecar(clf: ImageClassifier) -> dict[str, Any]:
    """What differs for a multi-label run: a sigmoid a label, and each label's threshold."""
    return {
        "output": {
            "name": "probabilities",
            "dtype": "float32",
            "shape": ["N", len(clf.classes_)],
            "description": "sigmoid of each label's calibrated logit (each label's temperature "
            "is folded into the head), columns in the order of `classes`: the probability that "
            "the label is on the image, independently of the others",
        },
        "multi_label": {
            "thresholds": list(clf.thresholds_ or []),
            "description": "an image has every label whose probability is at or above that "
            "label's threshold (possibly none)",
        },
    }


def _typicality_sidecar(clf: ImageClassifier) -> dict[str, Any]:
    """The second output, its score and the run's threshold; nothing for a run without one."""
    typicality = clf.typicality_
    if typicality is None:
        return {}
    return {
        "typicality": {
            "name": "typicality",
            "dtype": "float32",
            "shape": ["N"],
            "score": typicality.score,
            "threshold": typicality.threshold,
            "heldout_images": int(len(typicality.knowns)),
            "description": (
                "how typical of the training classes each image is: the share of held-out "
                "images of the classes that are less typical (known images spread evenly over "
                "[0, 1]); below `threshold` the image is likely of none of `classes`, as "
                "`headstart predict` flags it `unknown`"
            ),
        }
    }


# ----------------------------------------------------------------------------- helpers
def _check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidParameterError(
            f"Unknown export {what} {value!r}; choose one of {', '.join(allowed)}."
        )


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs the onnx and onnxruntime packages: pip install 'headstart[onnx]'"
        ) from None


def _onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)
