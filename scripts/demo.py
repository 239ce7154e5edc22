"""`make demo`: real transfer learning, offline, in a few minutes on a laptop CPU.

1. Generates the demo dataset (shapes x textures the shipped backbone never saw) if missing.
2. Trains on `headstart-tiny`, the backbone shipped in the package, with the preprocessing its
   weights define; `--strategy auto` measures the data, picks the strategy and says why. Then it
   evaluates on the test split and writes the run folder with its report.html.
3. Trains the same head on random-init features of the same architecture, so you see in one
   table what the pretraining buys.

    .venv/bin/python scripts/demo.py [--data demo-data] [--out runs/demo]
    .venv/bin/python scripts/demo.py --smoke   # 4 images a class, temp folders, seconds
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from headstart import EMBEDDED_MODEL, ImageClassifier
from headstart.errors import HeadstartError
from headstart.reporting import write_report
from headstart.synthetic import make_demo_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo-data", help="where the demo dataset lives")
    parser.add_argument("--out", default="runs/demo", help="run folder to write")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data in a temporary folder (for tests)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            demo(Path(tmp) / "data", Path(tmp) / "run", quiet=True, counts=(4, 2, 2))
            return 0
    demo(Path(args.data), Path(args.out), quiet=args.quiet)
    return 0


def demo(
    data: Path, out: Path, *, quiet: bool, counts: tuple[int, int, int] = (60, 20, 40)
) -> dict[str, float]:
    """The three steps; ``counts`` (train, val, test images a class) shrink only for --smoke.

    Returns the test accuracies the README quotes (``pretrained``, ``random_init``), so that
    tests/test_demo.py can hold the README to what this code measures.
    """
    started = time.monotonic()
    print(f"[1/3] demo dataset in {data}/ (generated once, seeded)")
    make_demo_dataset(data, n_per_class=counts)

    print(f"[2/3] training on {EMBEDDED_MODEL} (--strategy auto)")
    clf = ImageClassifier(EMBEDDED_MODEL, quiet=quiet).fit(data)
    run = clf.save(out)
    report = write_report(run, data=data, clf=clf)
    print(clf.preprocess_.describe())

    print("[3/3] the same head on random-init features of the same architecture")
    baseline = ImageClassifier(
        EMBEDDED_MODEL, weights="none", strategy=clf.settings_.strategy, quiet=quiet
    ).fit(data)

    rows = [("pretrained (headstart-tiny)", clf), ("random init, same architecture", baseline)]
    print()
    # A head refitted on train + val has no val metrics of its own: the held-out accuracy of its
    # selection step (validation or cross-validation) stands in, named as such.
    print(f"{'features':<32} {'held-out acc':>12} {'test acc':>9}")
    for name, model in rows:
        val = (model.metrics_.get("val") or {}).get("accuracy")
        if val is None:
            val = (model.selection_ or {}).get("val_accuracy")
        held = f"{val:12.3f}" if val is not None else f"{'n/a':>12}"
        print(f"{name:<32} {held} {model.metrics_['test']['accuracy']:9.3f}")
    gain = clf.metrics_["test"]["accuracy"] - baseline.metrics_["test"]["accuracy"]
    print(f"pretraining buys {100 * gain:+.1f} points of test accuracy")
    print()
    print(
        f"test accuracy: {clf.metrics_['test']['accuracy']:.3f} "
        f"(n={clf.metrics_['test']['n']}, {len(clf.classes_)} classes)"
    )
    print(f"run folder:    {run}")
    print(f"report:        {report}")
    print(f"demo took {time.monotonic() - started:.0f} s")
    return {
        "pretrained": float(clf.metrics_["test"]["accuracy"]),
        "random_init": float(baseline.metrics_["test"]["accuracy"]),
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HeadstartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
