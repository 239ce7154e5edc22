"""`headstart predict RUN PATH...`: labels for image files and folders."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from headstart.cli._common import (
    add_run_options,
    add_tta_option,
    add_unknown_threshold_option,
    load_run,
    print_json,
)

if TYPE_CHECKING:  # the CLI's help must not import torch
    from headstart.predictions import Prediction

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict the class of images",
        description="Predict images (files or folders) with the model in RUN, using exactly "
        "the preprocessing it was trained with. Exit code 1 if any file could not be read, 2 if "
        "the paths hold no files at all.",
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument("paths", nargs="+", help="image files or folders")
    parser.add_argument("--top-k", type=int, default=1, help="how many classes to list")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    add_tta_option(parser)
    add_unknown_threshold_option(parser, at="predict")
    parser.add_argument(
        "--reject",
        action="store_true",
        help="print 'unknown' as the label of images flagged unknown (of none of the classes)",
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import HeadstartError, InvalidParameterError

    if args.top_k < 1:
        raise InvalidParameterError(f"--top-k must be at least 1, got {args.top_k}.")
    clf = load_run(args, quiet=args.quiet or args.json, others=args.paths)
    if clf.typicality_ is None and (args.reject or args.unknown_threshold is not None):
        given = "--reject" if args.reject else "--unknown-threshold"
        from headstart.fitted import missing_typicality

        raise InvalidParameterError(
            f"{given} needs a run with a typicality score, and {args.run} has none "
            f"({missing_typicality(clf.unknowns_)})."
        )
    predictions = clf.predict_files(
        args.paths, top_k=args.top_k, tta=args.tta, unknown_threshold=args.unknown_threshold
    )
    if not predictions:  # only empty folders: most likely the wrong ones
        given = ", ".join(repr(p) for p in args.paths)
        raise HeadstartError(
            f"No files found in {given}; pass image files or folders that hold them."
        )
    if args.json:
        print_json([_as_json(p, args.reject) for p in predictions])
    else:
        for p in predictions:
            print(_as_line(p, args.top_k, args.reject))
    return 1 if any(p.error is not None for p in predictions) else 0


def _as_json(p: Prediction, reject: bool) -> dict[str, object]:
    out = p.to_dict()
    if reject and p.unknown:
        out["label"] = "unknown"
    return out


def _as_line(p: Prediction, top_k: int, reject: bool) -> str:
    """One tab-separated line: the path, the class (or classes) and, for a run with a
    typicality score, how typical the image is, marked UNKNOWN below the threshold. For a
    multi-label run: the path, the image's labels ("(none)" for none) and their probabilities."""
    if p.error is not None:
        return f"{p.path}\terror: {p.error}"
    if p.labels is not None and p.probabilities is not None:  # a multi-label run
        proba = dict(p.probabilities)
        found = ", ".join(f"{name} {proba[name]:.3f}" for name in p.labels)
        return f"{p.path}\t{', '.join(p.labels) or '(none)'}\t" + (
            found or f"most probable {p.label} {p.probability:.3f}"
        )
    if top_k > 1:
        line = f"{p.path}\t" + ", ".join(f"{name} {prob:.3f}" for name, prob in p.top_k)
    else:
        label = "unknown" if reject and p.unknown else p.label
        line = f"{p.path}\t{label}\t{p.probability:.3f}"
    if p.typicality is not None:
        line += f"\ttypicality {p.typicality:.3f}" + ("\tUNKNOWN" if p.unknown else "")
    return line
