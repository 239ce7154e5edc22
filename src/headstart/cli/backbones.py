"""`headstart backbones [PATTERN]`: the recommended backbones, and how to name any other."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

_NAMING = """\
Any other backbone works by name:
  timm models      NAME.TAG, e.g. resnet50.a1_in1k (find more: headstart backbones 'convnext*')
  Hugging Face     hf-hub:ORG/REPO, a timm model on the Hub (config.json + model.safetensors)
  a local folder   local-dir:PATH, a folder with config.json + model.safetensors, or a run
  torchvision      tv:NAME[.WEIGHTS], e.g. tv:resnet50.IMAGENET1K_V2
Weights: --weights default (pretrained), none (random init), or PATH.safetensors."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backbones",
        help="list recommended backbones and how to name others",
        description="List the shipped, default and recommended backbones; with PATTERN, the "
        "timm and torchvision pretrained weights whose names match it (wildcards allowed).",
    )
    parser.add_argument(
        "pattern", nargs="?", help="e.g. 'convnext*' or '*dinov2*': search pretrained names"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.backbones import list_backbones

    rows = list_backbones(args.pattern)
    if not rows:
        print(f"No pretrained backbone matches {args.pattern!r}.")
        return 1
    width = max(len(name) for name, _ in rows)
    print(f"{'NAME':<{width}}  DESCRIPTION")
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    if not args.pattern:
        print()
        print(_NAMING)
    return 0
