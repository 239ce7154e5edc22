"""Does test-time augmentation pay, and what does it cost? (``--tta none|flip|crops``)

Trains ``headstart-tiny`` with the ``features`` strategy on two tasks made by
``headstart.synthetic`` (the demo data, 60 training images a class, and the same classes with 20
training images a class and another seed), then evaluates the test split with each TTA mode
from a cold start (no feature cache, so every view costs its forward pass). Prints test
accuracy, log loss, wall and CPU seconds (all threads), and the cost relative to no TTA in CPU
seconds, which a busy machine distorts less than wall time.

    .venv/bin/python benchmarks/tta.py [--keep DIR]
    .venv/bin/python benchmarks/tta.py --smoke   # one tiny task, seconds (tests run it)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from headstart import ImageClassifier
from headstart.synthetic import make_demo_dataset

TASKS = {
    "demo (60/class)": {"seed": 0, "n_per_class": (60, 20, 40)},
    "few (20/class)": {"seed": 1, "n_per_class": (20, 20, 40)},
}
SMOKE_TASKS = {"smoke (4/class)": {"seed": 0, "n_per_class": (4, 2, 2), "size": 64}}
MODES = ("none", "flip", "crops")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the datasets here and reuse them")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    tasks: dict[str, dict[str, Any]] = SMOKE_TASKS if args.smoke else TASKS
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        print(
            f"{'task':<17} {'tta':<6} {'accuracy':>8} {'log loss':>8} {'wall s':>7} "
            f"{'CPU s':>7} {'cost':>5}"
        )
        for task, params in tasks.items():
            data = make_demo_dataset(root / task.split()[0], **params)
            run = root / f"run-{task.split()[0]}"
            ImageClassifier(
                "headstart-tiny", strategy="features", quiet=True, cache_dir=root / "cache"
            ).fit(data).save(run)
            base = None
            for mode in MODES:
                clf = ImageClassifier.load(run, cache=False, quiet=True)
                started, cpu_started = time.perf_counter(), time.process_time()
                metrics = clf.evaluate(data, split="test", tta=mode)
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
                base = base or cpu
                print(
                    f"{task:<17} {mode:<6} {metrics['accuracy']:>8.4f} {metrics['loss']:>8.4f} "
                    f"{wall:>7.2f} {cpu:>7.2f} {cpu / base:>4.1f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
