"""What several commands share, defined once so it reads the same everywhere: options, loading
a run, the one message for a folder that is not a run, and undoing a failed command's writes."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headstart.data import CsvColumns

__all__ = [
    "add_augment_options",
    "add_cache_options",
    "add_csv_options",
    "csv_columns",
    "add_model_options",
    "add_run_options",
    "add_tta_option",
    "add_training_options",
    "Undo",
    "augment_values",
    "load_run",
    "print_json",
    "preprocess_overrides",
    "require_run",
]

# The choices of the training options, repeated from headstart.strategies and headstart.heads so
# that building the parser (for --help, --version or an argument error) imports no torch; a test
# pins them to the library's values.
STRATEGY_CHOICES: tuple[str, ...] = ("features", "augment", "finetune", "scratch")
SCHEDULE_CHOICES: tuple[str, ...] = ("constant", "cosine", "onecycle")
BN_CHOICES: tuple[str, ...] = ("frozen", "train")
CLASS_WEIGHT_CHOICES: tuple[str, ...] = ("balanced", "none")
ENGINE_CHOICES: tuple[str, ...] = ("auto", "torch", "onnxruntime", "openvino")


@dataclass
class Undo:
    """What a command is about to create or replace, to put back as it was should it fail.

    A failed command leaves nothing behind: no run folder holding only ``train_args.json`` after
    a typo in DATA, no empty folders from an export that failed its parity check. Only what the
    command itself created goes: a folder is removed only when it did not exist before and is
    empty again, and a file that existed before gets its old bytes back.

    Attributes:
        created: The folders that did not exist yet, innermost first.
        files: The files the command will write, each with its bytes before (None: no file).
    """

    created: list[Path]
    files: dict[Path, bytes | None] = field(default_factory=dict)

    @classmethod
    def before_writing(cls, folder: Path, files: Sequence[Path] = ()) -> Undo:
        """Note the state of ``folder`` (and its parents) and of ``files`` before any write."""
        created = [p for p in (folder, *folder.parents) if not p.exists()]
        return cls(created, {f: f.read_bytes() if f.is_file() else None for f in files})

    def undo(self) -> None:
        from headstart.runs import atomic_write

        for path, before in self.files.items():
            if before is None:
                path.unlink(missing_ok=True)
            else:
                atomic_write(path, before)
        for folder in self.created:
            try:
                folder.rmdir()
            except OSError:  # something else is in it, or it is gone: leave it and its parents
                break


def add_model_options(
    parser: argparse.ArgumentParser,
    *,
    model_help: str | None = None,
    many: bool = False,
    compared: bool = False,
) -> None:
    """--model, --weights and the preprocessing overrides.

    Args:
        model_help: for a command where the model is optional (``doctor``): this help text, and
            no default model.
        many: ``--model`` takes one or more names, and is required (``compare``).
        compared: ``--model`` may also be ``A,B,C`` or ``auto``, compared first (``train``).
    """
    from headstart.backbones import DEFAULT_MODEL, EMBEDDED_MODEL

    if many:
        parser.add_argument(
            "--model",
            nargs="+",
            required=True,
            metavar="MODEL",
            help="the backbones to compare (names as for train), or auto: a curated list from "
            f"small to large ({EMBEDDED_MODEL} first), skipping those not to be had offline",
        )
    else:
        parser.add_argument(
            "--model",
            default=None if model_help else DEFAULT_MODEL,
            help=model_help
            or f"backbone: a timm name (default {DEFAULT_MODEL}), hf-hub:ORG/REPO, "
            f"local-dir:PATH, tv:NAME for torchvision, keras:NAME (Keras applications) or "
            f"keras:PATH.keras, or {EMBEDDED_MODEL} (shipped, offline). "
            "See `headstart backbones`."
            + (
                " Several, as A,B,C, or auto: compared first and the recommended one trained "
                "(see `headstart compare`)."
                if compared
                else ""
            ),
        )
    parser.add_argument(
        "--weights",
        default="default",
        help="'default' (the pretrained weights), 'none' (random init), or a .safetensors "
        "(or weights-only .pth) file; for keras: models a .weights.h5, _notop.h5 or .keras file",
    )
    group = parser.add_argument_group(
        "preprocessing overrides (the weights' own preprocessing is used unless you say otherwise)"
    )
    group.add_argument("--input-size", type=int, help="square input size in pixels")
    group.add_argument("--crop-pct", type=float, help="center crop fraction")
    group.add_argument("--interpolation", help="bilinear, bicubic, nearest, ...")
    group.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
    group.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    group.add_argument(
        "--keras",
        choices=("caffe", "tf", "torch"),
        help="Keras applications' preprocess_input mode, for weights ported from Keras",
    )
    group.add_argument(
        "--resize",
        choices=("crop", "squash"),
        help="crop (default): keep the aspect ratio and center-crop; squash: resize the whole "
        "image to the input size, as Keras' load_img(target_size=...) does",
    )
    group.add_argument(
        "--decode",
        choices=("exact", "fast"),
        help="JPEG decoding: fast (default) DCT-downscales JPEGs over twice the resize target "
        "while decoding; exact decodes every pixel, equal to timm's eval transform. Recorded in "
        "the run and in the cache key",
    )


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from headstart.errors import InvalidParameterError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InvalidParameterError(
            f"{flag} takes numbers separated by commas, got {text!r}."
        ) from None
    if len(values) not in (1, 3):
        raise InvalidParameterError(f"{flag} takes one or three numbers, got {text!r}.")
    return values * 3 if len(values) == 1 else values


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    overrides: dict[str, Any] = {}
    if args.input_size is not None:
        overrides["input_size"] = args.input_size
    if args.crop_pct is not None:
        overrides["crop_pct"] = args.crop_pct
    if args.interpolation:
        overrides["interpolation"] = args.interpolation
    if args.mean:
        overrides["mean"] = _floats(args.mean, "--mean")
    if args.std:
        overrides["std"] = _floats(args.std, "--std")
    if args.keras:
        overrides["keras"] = args.keras
    if getattr(args, "resize", None):
        overrides["resize"] = args.resize
    if getattr(args, "decode", None):
        overrides["decode"] = args.decode
    return overrides or None


def add_split_options(parser: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """How headstart splits DATA that comes without splits, the same for every command, so
    that ``data`` and ``doctor`` show the very split ``train`` uses. ``seed=False`` for a
    command whose ``--seed`` also seeds training."""
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        metavar="F",
        help="share of each class held out for validation when DATA has no val split (default 0.2)",
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="share of each class held out for test when DATA has no splits at all (default 0.1)",
    )
    if seed:
        parser.add_argument(
            "--seed", type=int, default=0, metavar="N", help="seed of the split (default 0)"
        )


def add_csv_options(parser: argparse.ArgumentParser) -> None:
    """--path-column, --label-column, --split-column: the same on every command that reads DATA,
    so a CSV made for something else (``filename,class``) is read as it is, not copied."""
    group = parser.add_argument_group("CSV columns (when DATA is a CSV file)")
    group.add_argument(
        "--path-column", metavar="NAME", help="the column of image paths (default: path)"
    )
    group.add_argument(
        "--label-column", metavar="NAME", help="the column of labels (default: label)"
    )
    group.add_argument(
        "--split-column",
        metavar="NAME",
        help="the column of train/val/test (default: split, if the CSV has one)",
    )
    group.add_argument(
        "--multi-label",
        action="store_true",
        help="read the label column as sets of labels separated by ';' (dog;ball; empty: none) "
        "even if every row holds one; a row with other than one label makes it so anyway",
    )


def csv_columns(args: argparse.Namespace) -> CsvColumns:
    """The ``*_column`` keywords the user gave (none: the CSV's own ``path,label[,split]``)."""
    columns: CsvColumns = {}
    if args.path_column is not None:
        columns["path_column"] = args.path_column
    if args.label_column is not None:
        columns["label_column"] = args.label_column
    if args.split_column is not None:
        columns["split_column"] = args.split_column
    return columns


def data_argument(
    args: argparse.Namespace, *, val_fraction: float, test_fraction: float, seed: int
) -> Any:
    """DATA as given, or read here when CSV columns are named or ``--multi-label`` is given: the
    estimator takes a path or a ``Dataset``, and the columns (and the multi-label reading) travel
    with the dataset (and into the run, for evaluation)."""
    columns = csv_columns(args)
    multi_label = getattr(args, "multi_label", False)
    if not columns and not multi_label:
        return args.data
    from headstart.data import load_dataset

    return load_dataset(
        args.data,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        multi_label=multi_label,
        **columns,
    )


def add_run_options(parser: argparse.ArgumentParser, *, no_cache: bool = True) -> None:
    """Where and how a command runs; ``no_cache=False`` for a command whose point is to fill
    the cache."""
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="what runs the backbone when features are extracted on a CPU: auto (default: the "
        "fastest measured on this backbone, torch unless another wins), torch, onnxruntime "
        "(extra onnx) or openvino (extra openvino). Features equal torch's to 1e-4, checked "
        "once per backbone; an engine that fails the check or is missing falls back to torch",
    )
    add_cache_options(parser, no_cache=no_cache)
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def add_cache_options(parser: argparse.ArgumentParser, *, no_cache: bool = True) -> None:
    """--cache-dir, --no-cache and --workers: for every command that reads images, including
    ``data``, which runs no model but takes the cache's word for files it decoded before."""
    parser.add_argument("--cache-dir", help="feature cache folder (default: user cache dir)")
    if no_cache:
        parser.add_argument(
            "--no-cache", action="store_true", help="do not read or write the cache"
        )
    parser.add_argument(
        "--workers",
        type=int,
        help="image decoding threads (default: one per core; 0: decode in turn)",
    )


def add_tta_option(parser: argparse.ArgumentParser) -> None:
    """--tta, for the commands that predict."""
    parser.add_argument(
        "--tta",
        choices=("none", "flip", "crops"),
        default="none",
        help="test-time augmentation: average the probabilities of the image and its mirror "
        "(flip) or of the centre and four corner crops (crops); default none",
    )


def add_unknown_threshold_option(parser: argparse.ArgumentParser, *, at: str) -> None:
    """--unknown-threshold, for train (the run's) and the commands that predict (an override)."""
    parser.add_argument(
        "--unknown-threshold",
        type=float,
        metavar="T",
        default=0.05 if at == "train" else None,
        help="flag an image unknown (of none of the classes) when its typicality is below T: "
        "the share of held-out known images that are flagged (default "
        + ("0.05: about 95%% of known images accepted)" if at == "train" else "the run's)"),
    )


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def add_class_weight_option(parser: argparse.ArgumentParser) -> None:
    """--class-weight, for train and advise (the Python API also takes a dict of weights)."""
    parser.add_argument(
        "--class-weight",
        choices=CLASS_WEIGHT_CHOICES,
        help="weight each image's loss by its class, for every head and strategy: balanced "
        "(n / (classes x class count), scikit-learn's) or none. Default: none, except that "
        "auto measures balanced when the training classes are imbalanced and keeps it when "
        "held-out macro-F1 improves",
    )


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Strategy and training controls; None means "the strategy's default"."""
    parser.add_argument(
        "--strategy",
        default="auto",
        choices=(*STRATEGY_CHOICES, "auto"),
        help="auto (default): measure the data and the frozen features, pick one of the others "
        "and say why (see `headstart advise`); features: frozen backbone, cached features, "
        "head only; augment: frozen "
        "backbone end to end with augmentation; finetune: head first, then the top stages; "
        "scratch: the same architecture from random init (baseline)",
    )
    parser.add_argument(
        "--head",
        choices=("linear", "mlp"),
        help="linear (the default; auto also measures an MLP and takes it only when it scores "
        "better on held-out images) or mlp",
    )
    parser.add_argument(
        "--C",
        type=float,
        dest="C",
        metavar="C",
        help="the linear head's inverse L2 strength, as scikit-learn's C (default: chosen on "
        "the validation split, or by cross-validation over train + val when it is small)",
    )
    parser.add_argument(
        "--refit",
        choices=("trainval", "none"),
        help="after choosing on validation, train again on train + val (trainval) or keep the "
        "fit on train only (none). Default: features always refits its head; augment, "
        "finetune and scratch repeat their run for the epochs chosen when the validation "
        "images are at least half the training ones (up to 2000 training images)",
    )
    add_class_weight_option(parser)
    parser.add_argument(
        "--calibrate",
        choices=("temperature", "none"),
        default="temperature",
        help="fit a temperature on held-out logits so probabilities match accuracy (default), "
        "or keep the raw softmax (none)",
    )
    parser.add_argument(
        "--unknown-score",
        choices=(
            "mahalanobis",
            "relative_mahalanobis",
            "knn",
            "max_softmax",
            "max_logit",
            "energy",
            "auto",
            "none",
        ),
        default="mahalanobis",
        help="how typicality (whether an image is of any class at all) is scored on the "
        "features: mahalanobis (default, measured best across tasks), another score, auto "
        "(measured on your data by holding out each class in turn) or none",
    )
    add_unknown_threshold_option(parser, at="train")
    group = parser.add_argument_group(
        "training (unset values take the strategy's defaults, recorded in the run)"
    )
    group.add_argument("--epochs", type=int, help="at most this many epochs")
    group.add_argument("--lr", type=float, help="learning rate (of the head, for finetune)")
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    group.add_argument("--schedule", choices=SCHEDULE_CHOICES, help="learning-rate schedule")
    group.add_argument("--warmup-epochs", type=float, help="linear warm-up (cosine schedule)")
    group.add_argument("--grad-clip", type=float, help="max gradient norm")
    group.add_argument("--label-smoothing", type=float, default=0.0)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (CUDA only; on by default there)",
    )
    group.add_argument(
        "--aug-views",
        type=int,
        default=0,
        help="features: cache K augmented views of every training image",
    )
    group.add_argument(
        "--layer", help="features/augment: pool features of this stage (index or module name)"
    )
    group.add_argument(
        "--unfreeze", help="finetune: number of top stages to train, or 'all' (default 2)"
    )
    group.add_argument(
        "--layer-decay", type=float, help="finetune: learning-rate factor per stage downwards"
    )
    group.add_argument(
        "--bn",
        choices=BN_CHOICES,
        help="finetune/scratch: BatchNorm keeps its running statistics (frozen, the finetune "
        "default) or uses batch statistics (train)",
    )


_AUGMENT_FLOATS = ("rotation", "width_shift", "height_shift", "shear", "zoom", "brightness")


def add_augment_options(parser: argparse.ArgumentParser) -> None:
    from headstart.augment import AUGMENT_PRESETS

    group = parser.add_argument_group(
        "augmentation (training images only; validation and test images are never augmented)"
    )
    group.add_argument(
        "--augment",
        choices=AUGMENT_PRESETS,
        help="preset (default: 'default' for augment/finetune/scratch and --aug-views)",
    )
    group.add_argument("--rotation", type=float, help="degrees, uniform in [-r, r]")
    group.add_argument("--width-shift", type=float, help="fraction of the width")
    group.add_argument("--height-shift", type=float, help="fraction of the height")
    group.add_argument("--shear", type=float, help="degrees")
    group.add_argument("--zoom", type=float, help="scale uniform in [1 - z, 1 + z]")
    group.add_argument("--brightness", type=float, help="factor uniform in [1 - b, 1 + b]")
    group.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--vflip", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--magnitude", type=int, help="RandAugment magnitude (0-30)")
    group.add_argument("--fill", choices=("reflect", "nearest", "constant"))


def augment_values(args: argparse.Namespace) -> dict[str, Any] | None:
    """``ImageClassifier(augment=...)``: the preset plus explicit values, or None."""
    values: dict[str, Any] = {}
    for name in (*_AUGMENT_FLOATS, "hflip", "vflip", "magnitude", "fill"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    if not values:
        return None if args.augment is None else {"preset": args.augment}
    return {"preset": args.augment, **values}


def require_run(run: str, *, command: str, others: Sequence[str] = ()) -> None:
    """Refuse, in one line, a RUN argument that is not a finished run folder.

    When RUN is not a run but one of the command's later arguments is, the arguments were most
    likely given in the wrong order (images first): say so and show the command the right way
    round, rather than describe the image folder as a broken run.

    Args:
        run: The command's RUN argument.
        command: The command's name, for the corrected command line.
        others: The command's later positional arguments, in order.

    Raises:
        RunFolderError: ``run`` is not a finished run folder.
    """
    from headstart.errors import RunFolderError
    from headstart.runs import run_folder_problem

    problem = run_folder_problem(Path(run))
    if problem is None:
        return
    given = [run, *others]
    for i, other in enumerate(others, start=1):
        if other and run_folder_problem(Path(other)) is None:
            order = [other, *given[:i], *given[i + 1 :]]
            raise RunFolderError(
                f"'{run}' is not a run folder, but '{other}' is: the run comes first: "
                f"{shlex.join(['headstart', command, *order])}"
            )
    raise RunFolderError(problem)


def load_run(args: argparse.Namespace, *, quiet: bool, others: Sequence[str] = ()) -> Any:
    """The classifier saved in ``args.run``, with the run options every such command takes.

    Args:
        others: The command's positional arguments after RUN (see :func:`require_run`).
    """
    from headstart.estimator import ImageClassifier

    require_run(args.run, command=args.command, others=others)

    return ImageClassifier.load(
        args.run,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        device=args.device,
        engine=args.engine,
        num_workers=args.workers,
        quiet=quiet,
    )
