"""`headstart predict RUN PATH...`: labels for image files and folders."""

from __future__ import annotations

import argparse

from headstart.cli._common import add_run_options, add_tta_option, load_run, print_json

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
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import HeadstartError, InvalidParameterError

    if args.top_k < 1:
        raise InvalidParameterError(f"--top-k must be at least 1, got {args.top_k}.")
    clf = load_run(args, quiet=args.quiet or args.json, others=args.paths)
    predictions = clf.predict_files(args.paths, top_k=args.top_k, tta=args.tta)
    if not predictions:  # only empty folders: most likely the wrong ones
        given = ", ".join(repr(p) for p in args.paths)
        raise HeadstartError(
            f"No files found in {given}; pass image files or folders that hold them."
        )
    if args.json:
        print_json([p.to_dict() for p in predictions])
    else:
        for p in predictions:
            if p.error is not None:
                print(f"{p.path}\terror: {p.error}")
            elif args.top_k > 1:
                tops = ", ".join(f"{name} {prob:.3f}" for name, prob in p.top_k)
                print(f"{p.path}\t{tops}")
            else:
                print(f"{p.path}\t{p.label}\t{p.probability:.3f}")
    return 1 if any(p.error is not None for p in predictions) else 0
