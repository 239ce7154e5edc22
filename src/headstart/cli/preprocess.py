"""`headstart preprocess IMAGE`: show a model's preprocessing and the exact tensor it makes.

The check a user runs when predictions look wrong, or before re-implementing preprocessing
elsewhere (docs/why.md, stories 1 and 9): what size, crop, scale, mean and std the weights
expect, and the array headstart would feed the network, saved for comparison.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from headstart.cli._common import add_model_options, preprocess_overrides

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="show a model's preprocessing and apply it to one image",
        description="Resolve the preprocessing MODEL's weights expect (from their config alone, "
        "without downloading the weights), apply it to IMAGE, print it with the tensor's "
        "statistics, and optionally save the float32 CHW array with --save.",
    )
    parser.add_argument("image", help="image file to preprocess")
    parser.add_argument("--save", metavar="OUT.npy", help="write the float32 CHW array (np.save)")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from headstart.backbones import resolve_model_preprocess
    from headstart.data import load_image
    from headstart.errors import DataError

    preprocess = resolve_model_preprocess(
        args.model, weights=args.weights, overrides=preprocess_overrides(args)
    )
    image = load_image(args.image, draft_size=preprocess.draft_size)
    array = preprocess(image).numpy()
    print(preprocess.describe())
    print(
        f"tensor:        {'x'.join(map(str, array.shape))} float32 (CHW), min {array.min():.4f}, "
        f"max {array.max():.4f}, mean {array.mean():.4f}"
    )
    if args.save:
        out = Path(args.save)
        if out.suffix != ".npy":
            out = out.with_name(out.name + ".npy")  # what np.save would write anyway
        try:
            np.save(out, array)
        except OSError as exc:
            raise DataError(
                f"Cannot write {out} ({exc.strerror or exc}); pass --save in an existing, "
                "writable folder."
            ) from None
        print(f"saved:         {out}")
    return 0
