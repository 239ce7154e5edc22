"""`headstart doctor DATA [--model M]`: check a dataset before anyone trains on it.

Prints the findings of :func:`headstart.doctor.diagnose`, errors first, or the whole report with
``--json``. The exit code is for scripts and CI: 0 when nothing serious was found, 1 when at least
one finding is an error (leakage, conflicting labels, an empty class, a broken image), and 2 for a
usage mistake, as every command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from headstart._text import count_noun, format_duration
from headstart.cli._common import (
    add_csv_options,
    add_model_options,
    add_run_options,
    add_split_options,
    csv_columns,
    preprocess_overrides,
    print_json,
)

if TYPE_CHECKING:
    from headstart.doctor import Finding, Report

__all__ = ["register", "run"]

# Findings of one code shown before "... N more"; paths of one finding likewise.
_MAX_PER_CODE = 10
_MAX_PATHS = 6


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check a dataset for broken files, duplicates, leakage and label noise",
        description="Read DATA as training would and list its problems, errors first: broken "
        "or mislabelled files, empty and imbalanced classes, duplicates across classes or "
        "splits, tiny and grayscale images. With --model, also the preprocessing the weights "
        "expect, overrides that disagree with it, and images whose label the model's features "
        "doubt. Exit code 1 when an error-severity finding is present, 0 otherwise.",
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="folder of class folders, of split folders (train/, val/, test/), or a CSV with "
        "path,label[,split] columns",
    )
    # The model checks are opt-in: without --model the doctor needs no weights at all.
    add_model_options(
        parser,
        model_help="also check against this backbone (timm name, tv:NAME, local-dir:PATH, ...): "
        "its preprocessing, input size and label-noise candidates from its features",
    )
    # The split options of `train`, so the doctor checks the very split a run would use.
    add_split_options(parser)
    add_csv_options(parser)
    parser.add_argument(
        "--near-threshold",
        type=int,
        default=None,
        metavar="BITS",
        help="largest perceptual-hash distance (of 64 bits) of near duplicates (default 12; "
        "lower is stricter)",
    )
    parser.add_argument(
        "--exact-only", action="store_true", help="look for byte-identical duplicates only"
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    add_run_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.doctor import DEFAULT_NEAR_THRESHOLD, diagnose

    threshold = DEFAULT_NEAR_THRESHOLD if args.near_threshold is None else args.near_threshold
    report = diagnose(
        args.data,
        model=args.model,
        weights=args.weights,
        preprocess_overrides=preprocess_overrides(args),
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        near_threshold=None if args.exact_only else threshold,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        num_workers=args.workers,
        device=args.device,
        engine=args.engine,
        quiet=args.quiet,
        columns=csv_columns(args) or None,
        multi_label=args.multi_label,
    )
    if args.json:
        print_json(report.to_dict())
    else:
        print("\n".join(_render(report)))
    return 1 if report.has_errors else 0


def _render(report: Report) -> list[str]:
    """The report as lines for a terminal: header, counts, preprocessing, findings, summary."""
    from headstart.doctor import SEVERITIES

    stats = report.stats
    lines = [
        f"dataset:  {report.root}",
        f"layout:   {report.layout}, {len(report.classes)} classes, {stats['images']} images"
        + (f" ({stats['unreadable']} unreadable)" if stats["unreadable"] else "")
        + (f", {count_noun(stats['skipped'], 'other file')} skipped" if stats["skipped"] else ""),
        "",
        *_table(report.classes, stats["counts"]),
    ]
    width, height = stats.get("width"), stats.get("height")
    if width and height:
        lines.append("")
        lines.append(
            f"sizes:    {width['min']:g}..{width['max']:g} x {height['min']:g}..{height['max']:g} "
            f"px (median {width['median']:g}x{height['median']:g}); formats "
            + ", ".join(f"{k} {v}" for k, v in stats["formats"].items())
        )
        modes: dict[str, int] = {}
        for per_split in stats["modes"].values():
            for mode, n in per_split.items():
                modes[mode] = modes.get(mode, 0) + n
        gray = sum(stats["grayscale"].values())
        lines.append(
            "colour:   modes "
            + ", ".join(f"{k} {v}" for k, v in sorted(modes.items(), key=lambda kv: -kv[1]))
            + f"; {gray} grayscale by content"
        )
    if report.expected_preprocess is not None:
        lines += ["", f"preprocessing {report.model} expects:"]
        lines += ["  " + line for line in report.expected_preprocess.describe().splitlines()]
    noise = stats.get("label_noise")
    if noise and "cv_accuracy" in noise:
        lines += [
            "",
            f"features: the linear head (C chosen and calibrated as a run does) on {report.model} "
            f"features reaches {100 * noise['cv_accuracy']:.1f}% {noise['folds']}-fold "
            f"cross-validated accuracy on {noise['images']} images",
        ]
    view = stats.get("pretrained_view")
    if view:
        tops = ", ".join(f"{t['class']} {t['images']}" for t in view["top_classes"])
        lines += [
            "",
            f"pretrained view: {view['classifier']} on {view['images']} images sees {tops} "
            f"(mean top probability {view['mean_max_probability']:.2f})",
        ]

    counts = report.severity_counts()
    for severity in SEVERITIES:
        group = [f for f in report.findings if f.severity == severity]
        if not group:
            continue
        lines += ["", f"{_count(len(group), severity)}:"]
        shown: dict[str, int] = {}
        for finding in group:
            shown[finding.code] = shown.get(finding.code, 0) + 1
            if shown[finding.code] <= _MAX_PER_CODE:
                lines += _finding_lines(finding, lambda p: _shown(p, report.root))
        for code, n in shown.items():
            if n > _MAX_PER_CODE:
                lines.append(f"  ... {n - _MAX_PER_CODE} more [{code}] (--json lists all)")
    verdict = "errors found: fix them before training" if report.has_errors else "no errors"
    summary = ", ".join(_count(counts[s], s) for s in SEVERITIES)
    lines += ["", f"{summary} ({format_duration(stats['seconds'])}); {verdict}"]
    return lines


def _shown(path: Path, root: Path) -> str:
    """A path relative to the dataset (a CSV's paths relative to its folder), else whole."""
    base = root.parent if root.is_file() else root
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _count(n: int, severity: str) -> str:
    return f"{n} {severity}" + ("s" if n != 1 and severity != "info" else "")


def _finding_lines(finding: Finding, show: Callable[[Path], str]) -> list[str]:
    lines = [f"  [{finding.code}] {finding.message}"]
    if len(finding.paths) > 1:
        for path in finding.paths[:_MAX_PATHS]:
            lines.append(f"      {show(path)}")
        if len(finding.paths) > _MAX_PATHS:
            lines.append(f"      ... {len(finding.paths) - _MAX_PATHS} more")
    return lines


def _table(classes: list[str], counts: dict[str, dict[str, int]]) -> list[str]:
    """Class rows with one right-aligned column per split and a total column."""
    splits = list(counts)
    cells = [["class", *splits, "total"]]
    for name in classes:
        values = [counts[split][name] for split in splits]
        cells.append([name, *map(str, values), str(sum(values))])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for row in cells:
        rest = (v.rjust(w) for v, w in zip(row[1:], widths[1:], strict=True))
        lines.append("  ".join([row[0].ljust(widths[0]), *rest]))
    return lines
