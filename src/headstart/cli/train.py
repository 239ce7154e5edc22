"""`headstart train DATA`: extract (or reuse) features, train the head, write the run folder."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from headstart.cli._common import add_model_options, add_run_options, preprocess_overrides

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a classifier on an image folder or CSV",
        description="Train a classifier on DATA (train/ val/ [test/] class folders, plain class "
        "folders split for you, or a CSV with path,label[,split]) and write a run folder with "
        "the model, history, curves and metrics.",
    )
    parser.add_argument("data", help="image folder or CSV file")
    parser.add_argument("--out", help="run folder (default: runs/<data>-<timestamp>)")
    add_model_options(parser)
    parser.add_argument(
        "--strategy",
        default="features",
        choices=("features",),
        help="features: frozen backbone, cached features, head only",
    )
    parser.add_argument("--head", default="linear", choices=("linear", "mlp"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="validation share when DATA has no val split",
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.1, help="test share when DATA has no splits at all"
    )
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.estimator import ImageClassifier
    from headstart.evaluation import format_metrics

    clf = ImageClassifier(
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
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        device=args.device,
        num_workers=args.workers,
        quiet=args.quiet,
    )
    clf.fit(args.data)
    out = Path(args.out) if args.out else _default_out(args.data)
    clf.save(out)
    skipped = clf.dataset_.get("skipped", [])
    if skipped:
        print(
            f"skipped {len(skipped)} unreadable file(s), listed in {out / 'skipped.csv'}",
            file=sys.stderr,
        )
    print(f"kept epoch {clf.best_epoch_} of {len(clf.history_)} (lowest {clf.monitor_})")
    for split in ("val", "test"):
        metrics = clf.metrics_.get(split)
        if metrics:
            print(f"{split} accuracy {metrics['accuracy']:.4f} (n={metrics['n']})")
    if "test" in clf.metrics_ and not args.quiet:
        print(format_metrics(clf.metrics_["test"]))
    print(f"run folder: {out}")
    return 0


def _default_out(data: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(data).stem or 'data'}-{stamp}"
