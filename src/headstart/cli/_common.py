"""Options shared by several commands, defined once so they read the same everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_model_options", "add_run_options", "print_json", "preprocess_overrides"]


def add_model_options(parser: argparse.ArgumentParser) -> None:
    from headstart.backbones import DEFAULT_MODEL, EMBEDDED_MODEL

    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"backbone: a timm name (default {DEFAULT_MODEL}), hf-hub:ORG/REPO, "
        f"local-dir:PATH, tv:NAME for torchvision, or {EMBEDDED_MODEL} (shipped, offline). "
        "See `headstart backbones`.",
    )
    parser.add_argument(
        "--weights",
        default="default",
        help="'default' (the pretrained weights), 'none' (random init), or a .safetensors "
        "(or weights-only .pth) file",
    )
    group = parser.add_argument_group(
        "preprocessing overrides (the weights' own preprocessing is used unless you say otherwise)"
    )
    group.add_argument("--input-size", type=int, help="square input size in pixels")
    group.add_argument("--crop-pct", type=float, help="center crop fraction")
    group.add_argument("--interpolation", help="bilinear, bicubic, nearest, ...")
    group.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406")
    group.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    group.add_argument(
        "--keras",
        choices=("caffe", "tf", "torch"),
        help="Keras applications' preprocess_input mode, for weights ported from Keras",
    )


def _floats(text: str, flag: str) -> tuple[float, ...]:
    from headstart.errors import HeadstartError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise HeadstartError(f"{flag} takes numbers separated by commas, got {text!r}.") from None
    if len(values) not in (1, 3):
        raise HeadstartError(f"{flag} takes one or three numbers, got {text!r}.")
    return values * 3 if len(values) == 1 else values


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any] | None:
    overrides: dict[str, Any] = {}
    if args.input_size is not None:
        overrides["input_size"] = args.input_size
    if args.crop_pct is not None:
        overrides["crop_pct"] = args.crop_pct
    if args.interpolation:
        overrides["interpolation"] = args.interpolation
    if args.mean:
        overrides["mean"] = _floats(args.mean, "--mean")
    if args.std:
        overrides["std"] = _floats(args.std, "--std")
    if args.keras:
        overrides["keras"] = args.keras
    return overrides or None


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    parser.add_argument("--cache-dir", help="feature cache folder (default: user cache dir)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--workers", type=int, help="image decoding processes")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
