"""`headstart info RUN`: what the model is, how it was trained and how well it did."""

from __future__ import annotations

import argparse
from typing import Any

from headstart._text import format_duration
from headstart.cli._common import print_json, require_run

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "info", help="describe a trained run", description="Describe the model in a run folder."
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument("--json", action="store_true", help="print the headstart config as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import RunFolderError
    from headstart.runs import read_config

    require_run(args.run, command="info")
    hs = read_config(args.run)["headstart"]
    if args.json:
        print_json(hs)
        return 0
    try:
        lines = _describe(args.run, hs)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        # read_config checked the file is headstart's; a value in it that cannot be shown was
        # damaged or edited by hand (tests/test_fuzz_runs.py changes each one).
        what = " ".join(str(exc).split())
        raise RunFolderError(
            f"{args.run}/config.json is damaged ({type(exc).__name__}: {what}); retrain the run "
            "or restore the file."
        ) from None
    print("\n".join(lines))
    return 0


def _describe(run: str, hs: dict[str, Any]) -> list[str]:
    """The lines of the description, all built before any is printed: a damaged value fails
    the command in one line instead of half a description and a traceback."""
    from headstart.preprocess import Preprocess
    from headstart.reporting.summary import (
        describe_strategy,
        describe_unknowns,
        format_settings,
        solved_by_lbfgs,
    )
    from headstart.runs import plain_timm

    lines: list[str] = []
    backbone, training, data = hs["backbone"], hs.get("training", {}), hs.get("data", {})
    lines.append(f"run:        {run}")
    lines.append(f"classes:    {len(hs['classes'])}: {', '.join(hs['classes'])}")
    lines.append(
        f"backbone:   {backbone.get('model')} ({backbone.get('family')}, "
        f"{backbone.get('architecture')}), weights {backbone.get('weights')}"
    )
    chosen = " (chosen by --strategy auto)" if hs.get("advice") else ""
    lines.append(f"strategy:   {describe_strategy(hs)}{chosen}")
    lines.append(
        "plain timm: {}, {}".format("yes" if plain_timm(hs)[0] else "no", plain_timm(hs)[1])
    )
    kept = (
        []
        if solved_by_lbfgs(hs) or not training.get("epochs_run")
        else [f"best epoch {training.get('best_epoch')} of {training.get('epochs_run')}"]
    )
    seconds = training.get("seconds")
    took = [format_duration(seconds)] if isinstance(seconds, (int, float)) else []
    lines.append(f"training:   {', '.join([*kept, format_settings(hs), *took])}")
    if training.get("selection"):
        from headstart.heads.fitting import describe_selection

        label = "chosen:  " if (training.get("selection") or {}).get("end_to_end") else "head fit:"
        lines.append(f"{label}   {describe_selection(training['selection'])}")
    refit = (training.get("details") or {}).get("refit")
    if isinstance(refit, dict):
        done = f"{refit.get('epochs')} epoch(s) on train + val" if refit.get("done") else "none"
        lines.append(f"refit:      {done}, {refit.get('reason')}")
    calibration = hs.get("calibration") or {}
    if calibration.get("method") == "temperature":
        lines.append(
            f"calibrated: temperature {calibration['temperature']:.3f}, fitted on "
            f"{calibration.get('fitted_on')} ({calibration.get('n')} images)"
        )
        if calibration.get("test"):
            lines.append(f"            {calibration['test']}")
    lines.append(f"unknowns:   {describe_unknowns(hs)}")
    counts = data.get("counts", {})
    images = data.get("images") or {s: sum(c.values()) for s, c in counts.items()}
    for split, n in images.items():  # "images": multi-label data, whose counts are positives
        lines.append(f"data {split + ':':<6} {n} images")
    if data.get("skipped"):
        lines.append(f"skipped:    {len(data['skipped'])} file(s)")
    for split, metrics in hs.get("metrics", {}).items():
        if metrics.get("n") and metrics.get("multi_label"):
            lines.append(
                f"{split + ' mAP:':<11} {metrics['mAP']:.4f} (n={metrics['n']}, "
                f"micro-F1 {metrics['f1_micro']:.4f})"
            )
        elif metrics.get("n"):
            lines.append(
                f"{split + ' acc:':<11} {metrics['accuracy']:.4f} (n={metrics['n']}, "
                f"loss {metrics['loss']:.4f})"
            )
    lines.append("preprocessing:")
    for line in Preprocess.from_dict(hs["preprocess"]).describe().splitlines():
        lines.append(f"  {line}")
    return lines
