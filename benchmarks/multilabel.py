"""Several labels an image: headstart's multi-label head against scikit-learn's (issue 25).

Two tasks, each split 70/15/15 into train/val/test by headstart's seeded iterative
stratification (a new split for each seed):

- ``digit-grids``: 2x2 grids of scikit-learn's handwritten digit scans (8x8, upscaled to 32 px a
  cell, black ink on white), labels = the digits present (1 to 4 of the 10), 1,500 grids drawn
  per seed-independent pool; features of the shipped ``headstart-tiny`` backbone through
  headstart's feature cache (the digits of ``benchmarks/_tiny_data.py``).
- ``synthetic``: scikit-learn's ``make_multilabel_classification`` (2,000 images, 100 features,
  10 labels, 2 labels an image on average), a task on features alone.

``headstart`` is :func:`headstart.heads.multilabel.fit_multilabel` with its defaults: train and
val given apart, as a run gives them (each label's L2 strength chosen on held-out images, then
refitted on train + val; a threshold a label chosen on held-out images). The reference is
``OneVsRestClassifier(LogisticRegressionCV(Cs=13 from 1e-4 to 1e2, 5-fold, log-loss))`` on
standardised features, fitted on train + val together (LogisticRegressionCV refits on all it is
given) and predicting at 0.5. Test images are used by neither. Per tool: mAP (mean over labels of
average precision), micro-F1 and macro-F1 at each tool's own thresholds, exact match (the whole
label set right), and fit seconds. Means over seeds.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/multilabel.py [--seeds 3] [--keep DIR]
    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/multilabel.py --smoke   # tests run it
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from _tiny_data import digit_images, tiny_features
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import average_precision_score, f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from headstart.data.iterative_split import iterative_split
from headstart.heads.multilabel import fit_multilabel

GRIDS = 1500
SYNTHETIC = 2000


def digit_grids(
    root: Path, grids: int = GRIDS, per_class: int | None = None, labels: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 label matrix of ``grids`` 2x2 grids of digit scans (cached as
    ``grids.npz``), drawn from every scan or the first ``per_class`` of each digit, of the
    digits below ``labels`` (smoke runs shrink all three)."""
    saved = root / "grids.npz"
    if saved.exists():
        with np.load(saved) as data:
            return data["x"], data["y"]
    from PIL import Image

    paths, digits = digit_images(root, per_class=per_class)
    paths, digits = (
        [p for p, d in zip(paths, digits, strict=True) if d < labels],
        digits[digits < labels],
    )
    rng = np.random.default_rng(2011)
    cells = [Image.open(p).convert("RGB").resize((32, 32)) for p in paths]
    out, y = [], np.zeros((grids, labels), np.int64)
    for i in range(grids):
        picked = rng.choice(len(cells), 4, replace=False)
        grid = Image.new("RGB", (64, 64))
        for k, j in enumerate(picked):
            grid.paste(cells[j], ((k % 2) * 32, (k // 2) * 32))
        path = root / "grids" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(path)
        out.append(path)
        y[i, digits[picked]] = 1
    x = tiny_features(out, root / "cache")
    np.savez(saved, x=x, y=y)
    return x, y


def synthetic(n: int = SYNTHETIC, labels: int = 10) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_multilabel_classification

    x, y = make_multilabel_classification(
        n_samples=n, n_features=100, n_classes=labels, n_labels=2, random_state=0
    )
    return x.astype(np.float32), y.astype(np.int64)


def scores(y: np.ndarray, proba: np.ndarray, predicted: np.ndarray, seconds: float) -> dict:
    return {
        "mAP": float(average_precision_score(y, proba, average="macro")),
        "micro-F1": float(f1_score(y, predicted, average="micro", zero_division=0)),
        "macro-F1": float(f1_score(y, predicted, average="macro", zero_division=0)),
        "exact": float((predicted == y).all(1).mean()),
        "seconds": seconds,
    }


def run(x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, dict]:
    sets = [np.flatnonzero(row).tolist() for row in y]
    split = np.array(
        iterative_split(sets, y.shape[1], val_fraction=0.15, test_fraction=0.15, seed=seed)
    )
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    started = time.perf_counter()
    fit = fit_multilabel(x[tr], y[tr], x[va], y[va], seed=seed)
    ours = time.perf_counter() - started
    proba = fit.predict_proba(x[te])
    out = {"headstart": scores(y[te], proba, proba >= fit.thresholds, ours)}
    fit_at_half = proba >= 0.5
    out["headstart at 0.5"] = scores(y[te], proba, fit_at_half, ours)

    both = np.concatenate([tr, va])
    reference = make_pipeline(
        StandardScaler(),
        OneVsRestClassifier(
            LogisticRegressionCV(
                Cs=np.logspace(-4, 2, 13),
                cv=5,
                scoring="neg_log_loss",
                max_iter=2000,
                l1_ratios=(0.0,),
                use_legacy_attributes=False,
            )
        ),
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(x[both], y[both])
    theirs = time.perf_counter() - started
    proba = reference.predict_proba(x[te])
    out["sklearn OvR(LRCV)"] = scores(y[te], proba, proba >= 0.5, theirs)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep the images and features here")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    grids, per_class, n, labels = (GRIDS, None, SYNTHETIC, 10)
    if args.smoke:
        args.seeds, args.keep = 1, None
        grids, per_class, n, labels = 60, 8, 120, 3
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        tasks = {
            "digit-grids": digit_grids(root, grids, per_class, labels),
            "synthetic": synthetic(n, labels),
        }
        for name, (x, y) in tasks.items():
            totals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            for seed in range(args.seeds):
                for tool, figures in run(x, y, seed).items():
                    for key, value in figures.items():
                        totals[tool][key].append(value)
            print(
                f"\n{name}: {len(y)} images, {y.shape[1]} labels, {y.sum(1).mean():.2f} an image;"
                f" means over {args.seeds} seeds"
            )
            keys = ["mAP", "micro-F1", "macro-F1", "exact", "seconds"]
            print(f"{'':20s}" + "".join(f"{k:>10s}" for k in keys))
            for tool, figures in totals.items():
                print(f"{tool:20s}" + "".join(f"{np.mean(figures[k]):10.4f}" for k in keys))


if __name__ == "__main__":
    main()
