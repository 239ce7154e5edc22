"""`headstart advise DATA`: which strategy `auto` would pick, and why, without training."""

from __future__ import annotations

import argparse

from headstart.cli._common import (
    add_class_weight_option,
    add_csv_options,
    add_model_options,
    add_run_options,
    data_argument,
    preprocess_overrides,
    print_json,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "advise",
        help="measure the data and say which strategy fits it",
        description="Count images per class and probe how well the frozen features separate "
        "the classes (a cross-validated linear probe on cached features, last stage and an "
        "earlier one), then print the strategy `--strategy auto` would pick and why. The "
        "features extracted go to the cache, so training afterwards does not redo them.",
    )
    parser.add_argument("data", help="image folder or CSV file")
    add_model_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    add_class_weight_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_csv_options(parser)
    add_run_options(parser, no_cache=False)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.estimator import ImageClassifier

    clf = ImageClassifier(
        args.model,
        weights=args.weights,
        preprocess=preprocess_overrides(args),
        seed=args.seed,
        cache_dir=args.cache_dir,
        device=args.device,
        engine=args.engine,
        num_workers=args.workers,
        quiet=args.quiet or args.json,
        class_weight=args.class_weight,
    )
    data = data_argument(
        args, val_fraction=clf.val_fraction, test_fraction=clf.test_fraction, seed=args.seed
    )
    advice = clf.advise(data)
    if args.json:
        print_json(advice.to_dict())
    else:
        print(advice.explain())
    return 0
