"""`headstart report RUN [DATA]`: (re)build the run's report.html and print where it is."""

from __future__ import annotations

import argparse

from headstart.cli._common import add_csv_options, add_run_options, csv_columns, load_run

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the run's report.html: curves, confusion matrix, mistakes as pictures",
        description="Write RUN/report.html, one self-contained page (opens offline) with the "
        "run's data, preprocessing, curves, metrics and the images it got wrong, evaluated on "
        "DATA (default: the training data, if it is still where the run recorded it).",
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument("data", nargs="?", help="labelled image folder or CSV to show images of")
    add_csv_options(parser)
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.reporting import write_report

    clf = load_run(args, quiet=args.quiet, others=[args.data] if args.data else [])
    columns = csv_columns(args) or None
    print(write_report(args.run, data=args.data, clf=clf, quiet=args.quiet, columns=columns))
    return 0
