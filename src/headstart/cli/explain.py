"""`headstart explain RUN IMAGE`: where the model looked for a class (a Grad-CAM overlay)."""

from __future__ import annotations

import argparse
from pathlib import Path

from headstart.cli._common import require_run

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="show where the model looked in an image (class-activation map)",
        description="Write a PNG with IMAGE as the network sees it (resized and cropped) and a "
        "Grad-CAM class-activation map over it: where the evidence for a class is. The class is "
        "the predicted one unless --class names another.",
    )
    parser.add_argument("run", help="run folder written by `headstart train`")
    parser.add_argument("image", help="image file")
    parser.add_argument("--class", dest="class_name", metavar="C", help="class to explain")
    parser.add_argument("--out", required=True, metavar="PNG", help="PNG file to write")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.errors import DataError
    from headstart.estimator import ImageClassifier
    from headstart.reporting.explain import explain_image, side_by_side

    require_run(args.run, command="explain", others=[args.image])
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise DataError(f"--out must be a .png file, got {str(out)!r}.")
    clf = ImageClassifier.load(args.run, quiet=args.quiet)
    classes = [args.class_name] if args.class_name else None
    (explanation,) = explain_image(clf, args.image, classes=classes)
    from headstart.runs import atomic_write

    atomic_write(out, side_by_side(explanation))
    print(
        f"{args.image}: predicted {explanation.predicted}; map of {explanation.class_name} "
        f"(probability {explanation.probability:.3f}), Grad-CAM on {explanation.layer}"
    )
    print(f"wrote {out}")
    return 0
