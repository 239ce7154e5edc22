"""Imbalanced classes: the head unweighted, with ``class_weight="balanced"``, and what auto keeps.

The demo data (headstart.synthetic, 8 classes) with one class cut to a tenth of its training and
validation images (6 of 60 and 2 of 20: the largest class then has 10x the smallest's images),
the test split left whole (40 per class), so the small class's recall is measured on 40 images,
not 4. Each seed cuts a different class (seed s cuts class s) and a different tenth of it. Three
rows per seed, on the shipped headstart-tiny backbone with cached features:

- ``unweighted``: ``--strategy features`` (the linear head, C chosen on held-out data);
- ``balanced``: the same with ``--class-weight balanced``;
- ``auto``: ``--strategy auto``, which measures balanced weights on imbalanced data and keeps
  them only when held-out macro-F1 improves; the row says what it chose.

Printed: test accuracy, balanced accuracy, macro-F1 and the small class's recall on the whole
(balanced) test split, and macro-F1 on a test split as imbalanced as training ("macro-F1 as
trained"): the small class's row of the confusion matrix scaled by ``--keep``, its exact expected
value, which a test split cut to 4 images would only estimate noisily. Auto's held-out macro-F1
is measured on images distributed like training, so it estimates the second number, not the
first; which one matters depends on the images the model will meet.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/imbalance.py [--seeds N] [--keep 0.1]
        [--work DIR]
    .venv/bin/python benchmarks/imbalance.py --smoke   # 10 images a class, one seed (tests)

``--work`` reuses a folder of an earlier run (its demo data, cut copies and feature cache).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _cut(demo: Path, out: Path, small: str, keep: float, seed: int) -> Path:
    """A copy of ``demo`` (hard links) where class ``small`` keeps ``keep`` of its train and val
    images, chosen with ``seed``; test stays whole."""
    if out.is_dir():
        return out
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        for folder in sorted((demo / split).iterdir()):
            files = sorted(folder.glob("*.jpg"))
            if folder.name == small and split != "test":
                n = max(2, round(keep * len(files)))
                files = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
            target = out / split / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for f in files:
                os.link(f, target / f.name)
    return out


def _row(clf: Any, data: Path, small: str, keep: float) -> dict[str, Any]:
    metrics = clf.evaluate(data, split="test")
    cm = np.asarray(metrics["confusion_matrix"], np.float64)
    cm[metrics["classes"].index(small)] *= keep  # the test split as imbalanced as training
    hits = np.diag(cm)
    precision = np.divide(hits, cm.sum(0), out=np.zeros(len(cm)), where=cm.sum(0) > 0)
    recall = hits / cm.sum(1)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(cm)), where=both > 0)
    return {
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "macro_f1": metrics["macro_f1"],
        "small_recall": metrics["per_class"][small]["recall"],
        "macro_f1_as_trained": float(f1.mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds (each cuts another class)")
    parser.add_argument("--keep", type=float, default=0.1, help="share the small class keeps")
    parser.add_argument("--work", type=Path, help="folder of an earlier run to reuse")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds = 1
        with tempfile.TemporaryDirectory() as tmp:
            compare(Path(tmp), args.seeds, args.keep, n_per_class=(10, 5, 2), size=64)
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="headstart-imbalance-"))
    compare(work, args.seeds, args.keep)


def compare(
    work: Path,
    seeds: int,
    keep: float,
    n_per_class: tuple[int, int, int] = (60, 20, 40),
    size: int = 128,
) -> None:
    """The three rows per seed on the demo data (``n_per_class`` and ``size`` shrink only for
    --smoke), then their means and what auto chose."""
    from headstart import EMBEDDED_MODEL, ImageClassifier
    from headstart.synthetic import make_demo_dataset

    demo = make_demo_dataset(work / "demo", n_per_class=n_per_class, size=size)
    classes = sorted(p.name for p in (demo / "train").iterdir())
    cache = work / "cache"
    rows: dict[str, list[dict[str, Any]]] = {"unweighted": [], "balanced": [], "auto": []}
    header = (
        f"{'seed':>4}  {'small class':<16} {'row':<11} {'acc':>6} {'bal acc':>7} {'macro-F1':>8}"
        f" {'small recall':>12} {'macro-F1 as trained':>19}"
    )
    print(header)
    notes = []
    for seed in range(seeds):
        small = classes[seed % len(classes)]
        data = _cut(demo, work / f"cut{seed}-{keep:g}", small, keep, seed)
        common: dict[str, Any] = dict(num_workers=None, quiet=True, cache_dir=cache, seed=seed)
        fits = {
            "unweighted": ImageClassifier(EMBEDDED_MODEL, strategy="features", **common),
            "balanced": ImageClassifier(
                EMBEDDED_MODEL, strategy="features", class_weight="balanced", **common
            ),
            "auto": ImageClassifier(EMBEDDED_MODEL, **common),
        }
        for name, clf in fits.items():
            clf.fit(data)
            row = _row(clf, data, small, keep)
            rows[name].append(row)
            print(f"{seed:>4}  {small:<16} {_line(name, row)}", flush=True)
        settings, advice = fits["auto"].settings_, fits["auto"].advice_
        measured = [r for r in advice.reasons if "macro-F1" in r] if advice else []
        notes.append(
            f"seed {seed}: auto chose {settings.strategy}, head {settings.head}, layer "
            f"{settings.layer}, aug_views {settings.aug_views}, class_weight "
            f"{settings.class_weight}" + "".join(f"\n    {m}" for m in measured)
        )
    print("\nmean over seeds")
    for name, values in rows.items():
        mean = {k: float(np.mean([v[k] for v in values])) for k in values[0]}
        print(f"      {'':<16} {_line(name, mean)}")
    print("", *notes, sep="\n")


def _line(name: str, row: dict[str, float]) -> str:
    return (
        f"{name:<11} {row['accuracy']:6.3f} {row['balanced_accuracy']:7.3f} "
        f"{row['macro_f1']:8.3f} {row['small_recall']:12.3f} {row['macro_f1_as_trained']:19.3f}"
    )


if __name__ == "__main__":
    main()
