"""`headstart data DATA`: what headstart sees in a dataset, before any training.

Shows the layout it detected, the classes with their counts per split, how the split was made and
every skipped file with its reason, so a data problem is found in a second rather than after a
long run. The counts are the ones training will use: files are decoded as training decodes them
(after the split), except those the feature cache knows decoded before, so a warm ``data`` costs
a ``stat`` per file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.cli._common import (
    add_cache_options,
    add_csv_options,
    add_split_options,
    csv_columns,
    print_json,
)

if TYPE_CHECKING:
    from headstart.data import Dataset

__all__ = ["register", "run"]

NO_LABEL = "(no label)"

# Skipped files listed in full before the rest is summarised as "... N more".
_MAX_SKIPPED_SHOWN = 20


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "data",
        help="show the classes, splits and skipped files of a dataset",
        description="Read a dataset as training would and show its layout, classes, images per "
        "split and the files that would be skipped, with reasons. Every image is decoded, as "
        "training decodes it, except those the feature cache knows decoded before.",
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="folder of class folders (DATA/<class>/*), of split folders "
        "(DATA/train/<class>/*, DATA/val/<class>/*), or a CSV with path,label[,split] columns",
    )
    add_split_options(parser)
    add_csv_options(parser)
    check = parser.add_mutually_exclusive_group()
    check.add_argument(
        "--verify",
        action="store_true",
        help="decode every image, also those the feature cache knows decoded before",
    )
    check.add_argument(
        "--quick",
        action="store_true",
        help="read file headers only (fast for millions of images, but a truncated or corrupt "
        "file is counted until training decodes and skips it)",
    )
    add_cache_options(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.data import load_dataset, verify_dataset
    from headstart.data.multilabel import label_facts

    vouched: dict[Path, str] = {}
    dataset = load_dataset(
        args.data,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        vouch=None if args.verify or args.no_cache else _voucher(args.cache_dir, vouched),
        multi_label=args.multi_label,
        **csv_columns(args),
    )
    if not args.quick:
        dataset = verify_dataset(
            dataset, known=vouched, workers=args.workers, quiet=args.quiet or args.json
        )
    facts = label_facts(dataset) if dataset.multi_label else None
    if args.json:
        print_json(dataset.summary() | ({} if facts is None else {"label_facts": facts}))
        return 0

    print(f"dataset:  {dataset.root}")
    print(f"layout:   {dataset.layout}")
    if dataset.columns:
        named = (f"{key.removesuffix('_column')} {name!r}" for key, name in dataset.columns.items())
        print(f"columns:  {', '.join(named)}")
    spec = dataset.split_spec
    if spec is None:
        print("split:    as given by the data")
    else:
        print(
            f"split:    made by headstart (val_fraction {spec['val_fraction']}, "
            f"test_fraction {spec['test_fraction']}, seed {spec['seed']})"
        )
    if facts is None:
        print(f"classes:  {len(dataset.classes)}")
        print()
        for line in _table(dataset.classes, dataset.counts()):
            print(line)
    else:
        print(f"labels:   {len(dataset.classes)}, several an image (positive images per split)")
        print()
        for line in _multi_label_lines(dataset, facts):
            print(line)

    skipped = dataset.skipped
    if skipped:
        print()
        print(f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}:")
        for item in skipped[:_MAX_SKIPPED_SHOWN]:
            print(f"  {item.path}: {item.reason}")
        if len(skipped) > _MAX_SKIPPED_SHOWN:
            print(f"  ... {len(skipped) - _MAX_SKIPPED_SHOWN} more")
    return 0


def _table(
    classes: list[str], counts: dict[str, dict[str, int]], heading: str = "class"
) -> list[str]:
    """Class rows with one right-aligned column per split, a total column and a total row."""
    splits = list(counts)
    cells = [[heading, *splits, "total"]]
    for name in classes:
        values = [counts[split][name] for split in splits]
        cells.append([name, *map(str, values), str(sum(values))])
    totals = [sum(counts[split].values()) for split in splits]
    cells.append(["total", *map(str, totals), str(sum(totals))])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (value.rjust(width) for value, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    return [fmt(row) for row in cells]


def _multi_label_lines(dataset: Dataset, facts: dict[str, Any]) -> list[str]:
    """Positive images per label and split, images with no label, then what to look at."""
    from headstart.data.multilabel import MIN_VAL_POSITIVES

    counts = {
        split: {**per_label, NO_LABEL: facts["unlabelled"][split]}
        for split, per_label in facts["positives"].items()
    }
    lines = _table([*dataset.classes, NO_LABEL], counts, "label")[:-1]  # positives do not add up
    images = ", ".join(f"{len(samples)} {split}" for split, samples in dataset.splits.items())
    lines += ["", f"images: {images}"]
    if facts["few_to_validate"]:
        lines.append(
            f"too few validation positives (< {MIN_VAL_POSITIVES}) to choose a threshold on: "
            + ", ".join(facts["few_to_validate"])
        )
    for a, b in facts["always_together"]:
        lines.append(f"{a!r} and {b!r} are on exactly the same images: nothing can tell them apart")
    return lines


def _voucher(
    cache_dir: str | None, found: dict[Path, str]
) -> Callable[[Sequence[Path]], Mapping[Path, str]]:
    """Discovery's voucher, as training's: files the cache knows decoded whole, unchanged since,
    are not opened; they are collected in ``found`` so that the decode check skips them too."""
    from headstart.features.cache import decoded_in, default_cache_dir

    folder = Path(cache_dir) if cache_dir else default_cache_dir()

    def vouch(paths: Sequence[Path]) -> Mapping[Path, str]:
        decoded = decoded_in(folder, paths)
        found.update(decoded)
        return decoded

    return vouch
