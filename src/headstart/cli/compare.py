"""`headstart compare DATA --model A B C`: which backbone for this data, measured, not looked up."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from headstart.cli._common import (
    add_csv_options,
    add_model_options,
    add_run_options,
    add_split_options,
    data_argument,
    preprocess_overrides,
    print_json,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare backbones on this data and recommend one",
        description="Extract each backbone's features (cached, so training afterwards reuses "
        "them), score the linear head on them by the held-out protocol training uses (the same "
        "images and folds for all), and print held-out accuracy and log-loss, extraction speed "
        "on this machine, feature width, parameters and input size, plus the concatenation of "
        "the best two. Recommends the lowest held-out log-loss (with --budget: of those whose "
        "extraction of the whole dataset fits) and writes compare.json and compare.png.",
    )
    parser.add_argument("data", help="image folder or CSV file")
    add_model_options(parser, many=True)
    parser.add_argument(
        "--budget",
        type=float,
        metavar="SECONDS",
        help="recommend the best backbone that extracts the whole dataset within this many "
        "seconds on this machine",
    )
    parser.add_argument(
        "--out",
        help="folder for compare.json and compare.png (default: runs/<data>-compare-<timestamp>)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_split_options(parser)
    add_csv_options(parser)
    add_run_options(parser, no_cache=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.compare import write_comparison
    from headstart.estimator import ImageClassifier

    clf = ImageClassifier(
        weights=args.weights,
        preprocess=preprocess_overrides(args),
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        cache_dir=args.cache_dir,
        device=args.device,
        engine=args.engine,
        num_workers=args.workers,
        quiet=args.quiet or args.json,
    )
    data = data_argument(
        args, val_fraction=args.val_fraction, test_fraction=args.test_fraction, seed=args.seed
    )
    comparison = clf.compare(data, args.model, budget=args.budget)
    out = Path(args.out) if args.out else default_out(args.data, "compare")
    json_path, png_path = write_comparison(comparison, out)
    if args.json:
        print_json({**comparison.to_dict(), "files": [str(json_path), str(png_path)]})
        return 0
    print(comparison.table())
    print(f"comparison: {json_path}\npicture: {png_path}")
    return 0


def default_out(data: str, what: str) -> Path:
    """runs/<data>-<what>-<timestamp>, with -2, -3... should one started in the same second
    have it (the naming of train's run folders)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{Path(data).stem or 'data'}-{what}-{stamp}"
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out
