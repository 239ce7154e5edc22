"""`headstart export RUN`: the model with its preprocessing, for another runtime, checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from headstart.cli._common import Undo, require_run

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to ONNX or TorchScript, with its preprocessing",
        description="Export the model in RUN (backbone, head, calibration, softmax) to ONNX or "
        "TorchScript, with a sidecar JSON (OUT.json) that states the classes, the preprocessing "
        "and the input contract. Before writing, the exported model runs on sample images and "
        "must give `headstart predict`'s probabilities to 1e-4; otherwise nothing is written.",
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="default: onnx"
    )
    parser.add_argument(
        "--out", help="model file to write (default RUN/model.onnx or RUN/model.torchscript.pt)"
    )
    parser.add_argument(
        "--input",
        choices=("float", "uint8"),
        default="float",
        help="float (default): float32 [N,3,H,W], the tensor `headstart preprocess` writes; "
        "uint8: uint8 [N,H,W,3] RGB after resize and crop, normalisation inside the model",
    )
    parser.add_argument(
        "--sample",
        nargs="+",
        metavar="IMAGE",
        help="images for the parity check (default: the run's own data, else generated images)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import RunFolderError
    from headstart.export import export_run

    # export_run makes --out's folders before its parity check: a failed export removes them.
    undo = Undo.before_writing(Path(args.out).parent) if args.out else None
    try:
        result = export_run(
            args.run,
            format=args.format,
            out=args.out,
            input=args.input,
            sample_images=args.sample,
            quiet=args.quiet,
        )
    except Exception as exc:
        if undo is not None:
            undo.undo()
        if isinstance(exc, RunFolderError):
            # Checked after export_run's own checks, which come first (a missing extra): the
            # message every command gives for a folder that is not a finished run.
            require_run(args.run, command="export")
        raise
    print(f"wrote {result.path} ({result.format}, {result.input} input)")
    print(f"wrote {result.sidecar} (classes, preprocessing, input contract)")
    print(
        f"parity: max |probability - predict| = {result.max_abs_diff:.2e} on "
        f"{result.images_checked} sample images"
    )
    if result.typicality_max_abs_diff is not None:
        print(
            f"parity: max |typicality - predict| = {result.typicality_max_abs_diff:.2e} "
            "(second output `typicality`; the sidecar holds its threshold)"
        )
    return 0
