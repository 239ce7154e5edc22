"""`headstart evaluate RUN DATA`: accuracy, loss, per-class metrics and the confusion matrix."""

from __future__ import annotations

import argparse

from headstart.cli._common import (
    add_csv_options,
    add_run_options,
    add_tta_option,
    csv_columns,
    load_run,
    print_json,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained run on labelled data",
        description="Evaluate the model in RUN on DATA's test split (else val, else all of it).",
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument("data", help="labelled image folder or CSV")
    parser.add_argument("--split", choices=("train", "val", "test"), help="split to evaluate")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--unknown",
        metavar="DIR",
        nargs="+",
        help="images of none of the classes (folders or files): adds how well the run tells "
        "them from the known images (AUROC, false-accept rates)",
    )
    add_tta_option(parser)
    add_csv_options(parser)
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.evaluation import format_metrics

    clf = load_run(args, quiet=args.quiet or args.json, others=[args.data])
    columns = csv_columns(args)
    data = clf.evaluation_dataset(args.data, columns=columns) if columns else args.data
    metrics = clf.evaluate(data, split=args.split, tta=args.tta, unknown=args.unknown)
    if args.json:
        print_json({k: v for k, v in metrics.items() if k not in ("paths", "predicted")})
    else:
        print(f"split: {metrics['split']}")
        print(format_metrics(metrics))
        if metrics["skipped"]:
            print(f"skipped {len(metrics['skipped'])} unreadable file(s)")
    return 0
