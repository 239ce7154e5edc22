"""`headstart train DATA`: train with a strategy and write the run folder; `--resume RUN` continues.

The arguments are stored in ``RUN/train_args.json`` before training starts, so ``headstart train
--resume RUN`` needs nothing else after a crash, a ``kill -9`` or Ctrl-C: end-to-end strategies
continue from the checkpoint of the last complete epoch (``RUN/checkpoint``) and end as the
uninterrupted run would have; ``features`` reruns its head training, seconds on cached features.

A train that fails before its first checkpoint (a typo in DATA, a model not to be had offline, an
option the strategy refuses) leaves nothing behind: what it created is removed, and a folder it
wrote into is as it was. ``--out`` must be new or empty: a finished run, an unfinished one or
other files in it are refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from headstart.cli._common import (
    Undo,
    add_augment_options,
    add_csv_options,
    add_model_options,
    add_run_options,
    add_split_options,
    add_training_options,
    augment_values,
    data_argument,
    preprocess_overrides,
)

__all__ = ["register", "run"]

CHECKPOINT_FOLDER = "checkpoint"
# Options that change how a resumed run executes, not what it computes.
_RESUME_OVERRIDES = ("quiet", "device", "workers")
_NOT_STORED = ("func", "resume", "overwrite")
# Options added after --resume existed, each with the value that reproduces what a run started
# before it did, for a stored run that lacks it: the parser's default is what a new run does and
# may differ (a refit, a calibration, a typicality score the older run had none of), and a resumed
# run must end as it would have, its checkpoint's fingerprint included
# (strategies/_settings.py SETTINGS_ADDED). A new option goes here too.
_BEFORE_IT_EXISTED: dict[str, Any] = {
    "resize": None,  # crop
    "decode": None,  # fast, as every JPEG was decoded before the choice
    "C": None,
    "refit": "none",
    "calibrate": "none",
    "class_weight": None,
    "unknown_score": "none",
    "unknown_threshold": 0.05,  # unused without a score
    "path_column": None,
    "label_column": None,
    "split_column": None,
    "multi_label": False,
    "engine": "torch",
}
# The files a run's save writes only sometimes: a replaced run's own would outlive it.
_SOMETIMES_WRITTEN = ("curves.png", "metrics.json", "typicality.safetensors")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier on an image folder or CSV",
        description="Train a classifier on DATA (train/ val/ [test/] class folders, plain class "
        "folders split for you, or a CSV with path,label[,split]) and write a run folder with "
        "the model, history, curves and metrics. `headstart train --resume RUN` continues an "
        "interrupted run.",
    )
    parser.add_argument("data", nargs="?", help="image folder or CSV file")
    parser.add_argument("--out", help="run folder, new or empty (default: runs/<data>-<timestamp>)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train into --out even if it holds a run (its files are replaced) or other files "
        "(they are left alone)",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN",
        help="continue the interrupted run in RUN with its own arguments (RUN/train_args.json)",
    )
    add_model_options(parser, compared=True)
    add_training_options(parser)
    add_augment_options(parser)
    add_split_options(parser, seed=False)  # --seed is a training option: it seeds both
    add_csv_options(parser)
    add_run_options(parser)
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    parser.set_defaults(func=partial(run, defaults=defaults))


def run(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> int:
    from headstart.runs import release_run_folders

    try:
        return _train(args, defaults)
    finally:
        release_run_folders()


def _train(args: argparse.Namespace, defaults: dict[str, Any] | None) -> int:
    from headstart import distributed
    from headstart.checkpoint import CHECKPOINT_INDEX, remove_checkpoint
    from headstart.evaluation import format_metrics
    from headstart.reporting import write_report
    from headstart.runs import CONFIG_NAME

    # Under torchrun: every rank trains, rank 0 alone reads and writes the run folder.
    device = distributed.init_from_env(args.device)
    resume = bool(args.resume)
    prepared = distributed.run_on_main(lambda: _prepare(args, defaults or {}))
    if prepared is None:
        if distributed.is_main():
            _finish_saved_run(Path(args.resume), quiet=args.quiet)
            print(f"{args.resume} is finished (config.json written); nothing to resume.")
        distributed.shutdown()
        return 0
    args, out, undo = prepared
    if device != args.device:
        args = argparse.Namespace(**{**vars(args), "device": device})
    index = out / CHECKPOINT_FOLDER / CHECKPOINT_INDEX
    before = _stamp(index)
    try:
        clf = _classifier(args, out / CHECKPOINT_FOLDER, resume)
        data = data_argument(
            args, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed
        )
        comparison = _compare_first(clf, data, quiet=args.quiet)
        clf.fit(data)
    except (Exception, KeyboardInterrupt) as exc:
        # Nothing to resume unless a checkpoint was written: leave the folder as it was, without
        # the checkpoint folder a failed first checkpoint left (empty, or with no index), which
        # would make the folder refuse the same command again. Ctrl-C too (while features are
        # extracted, say): the same command then starts again, from the cached features.
        if undo is not None and distributed.is_main() and _stamp(index) == before:
            if before is None:
                shutil.rmtree(out / CHECKPOINT_FOLDER, ignore_errors=True)
            undo.undo()
        elif isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(f"continue with `headstart train --resume {out}`") from exc
        raise
    # An error above ends this rank; torchrun then stops the others.
    main = distributed.is_main()
    distributed.shutdown()
    if not main:
        return 0
    if getattr(args, "overwrite", False) and (out / CONFIG_NAME).is_file():
        _remove_previous_run(out)
    clf.save(out)
    if comparison is not None:
        from headstart.compare import write_comparison

        write_comparison(comparison, out)  # before the report, which shows it
    report = write_report(out, data=args.data, clf=clf, quiet=args.quiet)
    if not clf.interrupted_:
        remove_checkpoint(out / CHECKPOINT_FOLDER)
    skipped = clf.dataset_.get("skipped", [])
    if skipped:
        print(
            f"skipped {len(skipped)} unreadable file(s), listed in {out / 'skipped.csv'}",
            file=sys.stderr,
        )
    selection = getattr(clf, "selection_", None)
    if selection:
        from headstart.heads.fitting import describe_selection

        print(describe_selection(selection))
    if clf.history_:
        print(f"kept epoch {clf.best_epoch_} of {len(clf.history_)} (lowest {clf.monitor_})")
    for split in ("val", "test"):
        metrics = clf.metrics_.get(split)
        if metrics and metrics.get("multi_label"):
            print(f"{split} mAP {metrics['mAP']:.4f} (n={metrics['n']})")
        elif metrics:
            print(f"{split} accuracy {metrics['accuracy']:.4f} (n={metrics['n']})")
    if "test" in clf.metrics_ and not args.quiet:
        print(format_metrics(clf.metrics_["test"]))
    print(f"run folder: {out} (open {report.name})")
    if clf.interrupted_:
        print(
            f"interrupted: saved the best model so far (epoch {clf.best_epoch_}); continue with "
            f"`headstart train --resume {out}`",
            file=sys.stderr,
        )
        return 130
    return 0


def _finish_saved_run(out: Path, *, quiet: bool) -> None:
    """Do what a run killed after saving its model left undone: its report, and removing its
    checkpoint.

    ``train`` saves the model (config.json, which marks the run finished) before it writes the
    report and removes the checkpoint, the slow part being the report. A kill in between left a
    run that ``--resume`` called finished, with no report.html and a checkpoint folder (the size
    of the model and its optimizer state, twice) that nothing would ever remove.
    """
    from headstart.checkpoint import remove_checkpoint
    from headstart.reporting import REPORT_NAME, write_report

    if not (out / REPORT_NAME).is_file():
        write_report(out, quiet=quiet)
    remove_checkpoint(out / CHECKPOINT_FOLDER)


def _prepare(
    args: argparse.Namespace, defaults: dict[str, Any]
) -> tuple[argparse.Namespace, Path, Undo | None] | None:
    """The arguments to train with and the run folder, stored there before training starts,
    and how to undo that should training fail (None for a resumed run: it stays resumable).

    None: ``--resume`` names a finished run. Under torchrun rank 0 alone calls this (the run
    folder's timestamped default name must be one for all ranks) and broadcasts the result.
    """
    from headstart.errors import InvalidParameterError
    from headstart.runs import ARGS_NAME, hold_run_folder

    if args.resume:
        out = Path(args.resume)
        hold_run_folder(out, f"--resume {out}")
        if args.data:
            raise InvalidParameterError(
                f"--resume {out} continues a run with its own data; give no DATA "
                f"(got {args.data!r})."
            )
        if args.overwrite:
            raise InvalidParameterError(
                f"--resume {out} continues the run in {out} and --overwrite starts one over; "
                "give one of them."
            )
        stored = _resumed_args(args, out, defaults)
        return None if stored is None else (stored, out, None)
    if not args.data:
        raise InvalidParameterError(
            "Give DATA (an image folder or CSV) to train on, or --resume RUN to continue."
        )
    out = Path(args.out) if args.out else _default_out(args.data)
    if out.exists() and not out.is_dir():
        raise InvalidParameterError(
            f"--out {out} is a file; the run folder must be a folder (new or existing)."
        )
    # First: a run in progress is no unfinished run to --resume.
    hold_run_folder(out, f"--out {out}", or_else=", or choose another --out")
    if not args.overwrite:
        _refuse_occupied(out)
    undo = Undo.before_writing(out, [out / ARGS_NAME])
    _write_args(args, out)
    hold_run_folder(out, f"--out {out}", or_else=", or choose another --out")  # now it exists
    return args, out, undo


def _refuse_occupied(out: Path) -> None:
    """Refuse an --out that holds a run or other files: training there would silently replace a
    finished run, restart an unfinished one, or mix a run into a folder of something else (an
    image folder given as --out by mistake)."""
    from headstart.errors import RunFolderError
    from headstart.runs import ARGS_NAME, CONFIG_NAME

    entries = (
        sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.is_dir() else []
    )
    if not entries:
        return
    if _finished(out):
        raise RunFolderError(
            f"--out {out} holds a finished run; choose another --out, or pass --overwrite to "
            "replace it."
        )
    if (out / CONFIG_NAME).is_file() or (out / ARGS_NAME).is_file():
        raise RunFolderError(
            f"--out {out} holds an unfinished run; continue it with `headstart train --resume "
            f"{out}`, or pass --overwrite to start it over."
        )
    more = f" and {len(entries) - 1} more" if len(entries) > 1 else ""
    raise RunFolderError(
        f"--out {out} is not empty and not a run folder (it holds {entries[0]!r}{more}); choose "
        "a new or empty folder, or pass --overwrite to write the run into it."
    )


def _remove_previous_run(out: Path) -> None:
    """Before an --overwrite run saves: the replaced run's config.json first (a folder caught
    half-saved is then no finished run, not the old config over new weights), and the files
    the new run might not write. The rest are all rewritten; nothing else in the folder goes."""
    from headstart.runs import CONFIG_NAME

    for name in (CONFIG_NAME, *_SOMETIMES_WRITTEN):
        (out / name).unlink(missing_ok=True)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is and when it was written, to tell whether a command wrote it (an
    atomic write is a new file: a new inode); None if absent."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _compare_first(clf: Any, data: Any, *, quiet: bool) -> Any:
    """``--model A,B,C`` (or ``auto``): compare the backbones on the data first
    (:mod:`headstart.compare`) and train on the recommended one, whose features the comparison
    has just cached. None for one model. A run holds one backbone, so a concatenation that
    scores better is reported, never trained on."""
    from headstart import distributed
    from headstart.compare import wants_comparison

    if not wants_comparison(clf.model):
        return None
    comparison = clf.compare(data, [clf.model])
    # Every rank trains the same backbone: rank 0's choice (timings may differ between ranks).
    chosen = distributed.broadcast(comparison.recommended)
    if distributed.is_main() and not quiet:
        print(comparison.table())
        print(f"training on {chosen}")
    clf.set_params(model=chosen)
    return comparison


def _classifier(args: argparse.Namespace, checkpoint_dir: Path, resume: bool) -> Any:
    from headstart.estimator import ImageClassifier

    return ImageClassifier(
        args.model,
        weights=args.weights,
        head=args.head,
        strategy=args.strategy,
        preprocess=preprocess_overrides(args),
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed,
        label_smoothing=args.label_smoothing,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        grad_clip=args.grad_clip,
        augment=augment_values(args),
        aug_views=args.aug_views,
        layer=args.layer,
        unfreeze=args.unfreeze,
        layer_decay=args.layer_decay,
        bn=args.bn,
        amp=args.amp,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        device=args.device,
        engine=args.engine,
        num_workers=args.workers,
        quiet=args.quiet,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        # A resumed run's stored arguments are merged over the values that reproduce runs from
        # before these options existed (_BEFORE_IT_EXISTED) and the parser's defaults, so such
        # runs have them too; a plain read keeps a renamed or dropped flag an error instead of
        # a silent default.
        C=args.C,
        refit=None if args.refit is None else args.refit == "trainval",
        calibrate=args.calibrate,
        class_weight=args.class_weight,
        unknown_score=args.unknown_score,
        unknown_threshold=args.unknown_threshold,
    )


def _write_args(args: argparse.Namespace, out: Path) -> None:
    """Store the arguments before training, with paths made absolute (resume from anywhere)."""
    from headstart.runs import ARGS_NAME, write_json

    stored = {k: v for k, v in vars(args).items() if k not in _NOT_STORED}
    stored["data"] = str(Path(args.data).resolve())
    stored["out"] = str(out)
    if stored.get("cache_dir"):
        stored["cache_dir"] = str(Path(stored["cache_dir"]).resolve())
    weights = Path(str(args.weights)).expanduser()
    if str(args.weights).lower() not in ("default", "none") and weights.is_file():
        stored["weights"] = str(weights.resolve())
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / ARGS_NAME, {"format_version": 1, "args": stored})


def _resumed_args(
    args: argparse.Namespace, out: Path, defaults: dict[str, Any]
) -> argparse.Namespace | None:
    """The run's stored arguments, with this invocation's quiet/device/workers when given."""
    from headstart.errors import RunFolderError
    from headstart.runs import ARGS_NAME

    given = [
        name
        for name, value in vars(args).items()
        if name not in (*_NOT_STORED, *_RESUME_OVERRIDES, "data")
        and name in defaults
        and value != defaults[name]
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(given))
        raise RunFolderError(
            f"--resume {out} takes the run's own arguments from {out / ARGS_NAME}; remove "
            f"{flags} (only --quiet, --device and --workers may change)."
        )
    path = out / ARGS_NAME
    try:
        stored = json.loads(path.read_text())["args"]
    except FileNotFoundError:
        raise RunFolderError(
            f"Cannot resume '{out}': it has no {ARGS_NAME}; pass the folder `headstart train` "
            "was writing (its --out)."
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunFolderError(f"Cannot resume '{out}': {path} is damaged ({exc}).") from exc
    if _finished(out):
        return None
    merged = {**defaults, **_BEFORE_IT_EXISTED, **stored}
    for name in _RESUME_OVERRIDES:
        value = getattr(args, name)
        if value != defaults.get(name):
            merged[name] = value
    merged.pop("func", None)
    return argparse.Namespace(**merged)


def _finished(out: Path) -> bool:
    """A run folder whose config.json records a training that was not interrupted."""
    from headstart.errors import RunFolderError
    from headstart.runs import read_config

    try:
        training = read_config(out)["headstart"]["training"]
    except (RunFolderError, KeyError, TypeError):
        return False
    return not training.get("interrupted", False)


def _default_out(data: str) -> Path:
    """runs/<data>-<timestamp>, with -2, -3... should a run started in the same second have it."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{Path(data).stem or 'data'}-{stamp}"
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out
