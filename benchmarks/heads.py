"""headstart's default head against scikit-learn's LogisticRegressionCV, on the same features.

Three tasks of different kinds, each split into train / val / test per seed:

- ``demo``: the demo dataset (shapes x textures the backbone never saw as classes) through the
  shipped ``headstart-tiny``;
- ``digits``: scikit-learn's handwritten digits (real scans, 8x8, upscaled to 64 px) through
  ``headstart-tiny``, the backbone the project pretrains on its own shapes;
- ``synthetic``: 10,000 x 2,048 features in 37 classes, drawn like pooled CNN features
  (non-negative, correlated, with scales that differ across dimensions by orders of magnitude).

Both sides get the same train + val images and are refitted on them; the test split is untouched.
"hs loss" is headstart's default (the temperature a run fits on the selection's held-out logits
applied), "(raw)" the same head's softmax before it; "ECE raw" and "ECE" are the test split's
expected calibration error before and after that temperature (kept only when a likelihood-ratio
test on the held-out logits supports it), "floor" the ECE a perfectly calibrated model shows on
that many test images (labels drawn from its own probabilities): below it, ECE is noise.
headstart: :func:`headstart.heads.fit_linear` (C chosen on the validation split, or by 5-fold CV
over train + val when it is small, then refitted). scikit-learn: ``StandardScaler`` +
``LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss")`` over train + val, refitted. Also
timed: one plain ``LogisticRegression()`` fit on the same train + val features, the bar the head
fit (all of its choices included) must not exceed. With ``--auto``, the image tasks also train
``ImageClassifier(strategy="auto")`` against ``strategy="features"`` (test accuracy). With
``--mlp``, each task also fits the MLP head (``--head mlp``: AdamW, epochs chosen on the held-out
split, refitted) and prints its test ECE before and after the temperature a run would fit: where a
head is over-confident, calibration has something to fix. With ``--curve``, each seed also refits
the head at 25 fixed values of C (0.001 to 10, no choice) on train + val and prints the test-optimal
C beside the C each side refitted with, and what each lost to that optimum (test labels pick the
optimum, so no method can reach it except by luck: it shows how close each choice came).

    .venv/bin/python benchmarks/heads.py [--seeds 3] [--tasks demo digits synthetic] [--auto]
        [--demo-test 40] [--mlp] [--curve]
    .venv/bin/python benchmarks/heads.py --smoke   # every task and option, tiny (tests run it)

The smoke's curve has 3 values of C, not 25: the same refits, the same line, a fraction of the fits.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Task = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _image_features(data: Path, cache: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from headstart import EMBEDDED_MODEL
    from headstart.backbones import create_backbone
    from headstart.data import load_dataset
    from headstart.features.extract import extract_cached

    dataset = load_dataset(data, val_fraction=0.0, test_fraction=0.0)
    backbone = create_backbone(EMBEDDED_MODEL)
    out = {}
    for split, samples in dataset.splits.items():
        result = extract_cached(
            backbone,
            [s.path for s in samples],
            use_cache=True,
            cache_dir=cache,
            desc=f"{data.name} {split}",
            quiet=True,
        )
        by_path = dict(zip(result.paths, result.features, strict=True))
        kept = [s for s in samples if s.path in by_path]
        out[split] = (
            np.stack([by_path[s.path] for s in kept]).astype(np.float32),
            np.array([s.label for s in kept], np.int64),
        )
    return out


def _resplit(
    pools: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, fractions: tuple[float, float]
) -> Task:
    """All images pooled, then a stratified train / val / test split drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    x = np.concatenate([p[0] for p in pools.values()])
    y = np.concatenate([p[1] for p in pools.values()])
    val_f, test_f = fractions
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_f, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_f / (1 - test_f), stratify=y_rest, random_state=seed
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def demo_task(
    root: Path, test_per_class: int = 40, train_val: tuple[int, int] = (60, 20)
) -> Callable[[int], Task]:
    """The demo data, pooled and split anew per seed: 60 train, 20 val, the rest test a class
    (``--demo-test N`` generates N test images a class instead of 40, from the same generator,
    so that ECE can be measured more finely than the 320 images of the shipped demo allow)."""
    from headstart.synthetic import make_demo_dataset

    folder = root / ("demo" if test_per_class == 40 else f"demo-test{test_per_class}")
    data = make_demo_dataset(folder, n_per_class=(*train_val, test_per_class))
    pools = _image_features(data, root / "cache")
    total = sum(train_val) + test_per_class
    return lambda seed: _resplit(pools, seed, (train_val[1] / total, test_per_class / total))


def _digits_folder(root: Path, pool: int | None = None) -> Path:
    """The digit scans as 64 px PNGs: all, or the first ``pool`` of each digit (smoke runs)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = root / "digits"
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        if pool is not None and np.sum(digits.target[:i] == label) >= pool:
            continue
        folder = out / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:04d}.png"
        if not path.exists():
            grey = (255 - pixels * 16).clip(0, 255).astype(np.uint8)
            Image.fromarray(grey).resize((64, 64), Image.Resampling.BICUBIC).save(path)
    return out


def digits_task(root: Path, pool: int | None = None, per_class: int = 15) -> Callable[[int], Task]:
    pools = _image_features(_digits_folder(root, pool), root / "cache")
    # 15 images a class for training and 15 for validation, as the real-image task.
    return lambda seed: _small(pools, seed, per_class=per_class)


def _small(pools: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, per_class: int) -> Task:
    x = np.concatenate([p[0] for p in pools.values()])
    y = np.concatenate([p[1] for p in pools.values()])
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        train += list(rows[:per_class])
        val += list(rows[per_class : 2 * per_class])
        test += list(rows[2 * per_class :])
    return x[train], y[train], x[val], y[val], x[test], y[test]


def synthetic_features(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled-CNN-like features: ReLU of a correlated low-rank signal, scales spread widely."""
    rng = np.random.default_rng(seed)
    k = 128
    centers = rng.normal(size=(c, k)) * 0.6
    mix = rng.normal(size=(k, d)) * rng.lognormal(0, 1, size=(k, 1)) / np.sqrt(k)
    y = rng.integers(0, c, n)
    z = centers[y] + rng.normal(size=(n, k))
    pre = z @ mix + rng.normal(size=(n, d)) * 0.7 - 0.5
    x = np.maximum(pre, 0) * rng.lognormal(-1, 1, size=d)
    return x.astype(np.float32), y


def synthetic_task(
    root: Path, n: int = 15_000, d: int = 2048, c: int = 37
) -> Callable[[int], Task]:
    del root
    a, b = n * 8 // 15, n * 10 // 15  # 8,000 train, 2,000 val, 5,000 test

    def make(seed: int) -> Task:
        x, y = synthetic_features(n, d, c, seed)
        return x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:]

    return make


def _metrics(proba: np.ndarray, y: np.ndarray, classes: int) -> tuple[float, float]:
    from sklearn.metrics import log_loss

    clipped = np.clip(proba, 1e-12, 1)
    clipped /= clipped.sum(1, keepdims=True)
    return float((proba.argmax(1) == y).mean()), float(
        log_loss(y, clipped, labels=list(range(classes)))
    )


def _ece_floor(proba: np.ndarray, classes: int, draws: int = 20) -> float:
    """The ECE a perfectly calibrated model shows on this many test images: labels drawn from
    the model's own probabilities (mean of ``draws``). Below it, ECE is noise."""
    from headstart.evaluation.calibration import expected_calibration_error

    rng = np.random.default_rng(0)
    p = proba / proba.sum(1, keepdims=True)
    cumulative = p.cumsum(1)
    values = []
    for _ in range(draws):
        u = rng.random((len(p), 1))
        y = np.minimum((u > cumulative).sum(1), classes - 1)
        values.append(expected_calibration_error(p, y))
    return float(np.mean(values))


def test_curve(task: Task, classes: int, hs_C: float, sk_C: float, points: int = 25) -> str:
    """One line: the test-optimal C of refits at fixed C, and how far each side's choice was."""
    import torch

    from headstart.heads import fit_linear
    from headstart.heads.logistic import Protocol

    x_train, y_train, x_val, y_val, x_test, y_test = task
    x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])

    def test_loss(C: float) -> float:
        fit = fit_linear(x_all, y_all, None, None, classes, C=C, protocol=Protocol("none"))
        with torch.no_grad():
            proba = torch.softmax(fit.head(torch.from_numpy(x_test)), 1).numpy()
        return _metrics(proba, y_test, classes)[1]

    curve = {float(C): test_loss(float(C)) for C in np.logspace(-3, 1, points)}
    best = min(curve, key=curve.__getitem__)
    hs, sk = test_loss(hs_C), test_loss(sk_C)
    return (
        f"test-optimal C {best:.3g} (log-loss {curve[best]:.4f}); headstart refitted at "
        f"{hs_C:.3g} (+{hs - curve[best]:.4f}), scikit-learn at {sk_C:.3g} "
        f"(+{sk - curve[best]:.4f})"
    )


def _quiet_cv() -> dict[str, object]:
    """What scikit-learn 1.8+ asks LogisticRegressionCV to be told, with a FutureWarning each
    fit otherwise, set to what its defaults did: ``l1_ratios=(0,)`` is the L2 penalty (the
    default None is deprecated in 1.8), and ``use_legacy_attributes=False`` makes ``C_`` a
    float, which ``np.ravel(...)[0]`` reads as it read the array. Older versions get neither:
    there ``l1_ratios`` without elastic-net warns, and the other is unknown."""
    import inspect

    import sklearn
    from sklearn.linear_model import LogisticRegressionCV

    version = tuple(int(part) for part in sklearn.__version__.split(".")[:2])
    given: dict[str, object] = {}
    if version >= (1, 8):
        given["l1_ratios"] = (0.0,)
    if "use_legacy_attributes" in inspect.signature(LogisticRegressionCV).parameters:
        given["use_legacy_attributes"] = False
    return given


def run_seed(task: Task, classes: int) -> dict[str, float]:
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from headstart.evaluation.calibration import expected_calibration_error, fit_temperature
    from headstart.heads import fit_linear

    x_train, y_train, x_val, y_val, x_test, y_test = task
    x_all, y_all = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    row: dict[str, float] = {}

    began = time.perf_counter()
    fit = fit_linear(x_train, y_train, x_val, y_val, classes)
    row["hs_seconds"] = time.perf_counter() - began
    # What a run does next by default: a temperature fitted on the selection's held-out logits.
    assert fit.heldout_logits is not None and fit.heldout_y is not None  # fit_linear's C walk
    temperature = fit_temperature(fit.heldout_logits, fit.heldout_y)
    with torch.no_grad():
        logits = fit.head(torch.from_numpy(x_test))
        raw = torch.softmax(logits, 1).numpy()
        proba = torch.softmax(logits / temperature, 1).numpy()
    row["hs_acc"], row["hs_loss"] = _metrics(proba, y_test, classes)
    row["hs_raw_loss"] = _metrics(raw, y_test, classes)[1]
    row["ece_raw"] = expected_calibration_error(raw, y_test)
    row["ece"] = expected_calibration_error(proba, y_test)
    row["ece_floor"] = _ece_floor(proba, classes)
    row["hs_C"] = fit.final_C if fit.final_C is not None else fit.C

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        began = time.perf_counter()
        cv = make_pipeline(
            StandardScaler(),
            LogisticRegressionCV(Cs=10, cv=5, scoring="neg_log_loss", max_iter=1000, **_quiet_cv()),
        ).fit(x_all, y_all)
        row["sk_seconds"] = time.perf_counter() - began
        row["sk_acc"], row["sk_loss"] = _metrics(cv.predict_proba(x_test), y_test, classes)
        row["sk_C"] = float(np.ravel(cv[-1].C_)[0])
        began = time.perf_counter()
        LogisticRegression().fit(x_all, y_all)  # scikit-learn's defaults: C=1, lbfgs
        row["single_seconds"] = time.perf_counter() - began
    return row


def mlp_calibration(task: Task, classes: int, seed: int) -> dict[str, float]:
    """The MLP head's test ECE and log-loss before and after the run's temperature."""
    import torch

    from headstart.evaluation.calibration import calibrate_temperature, expected_calibration_error
    from headstart.heads import HeadTrainingConfig, fit_head

    x_train, y_train, x_val, y_val, x_test, y_test = task
    fit = fit_head(
        "mlp", x_train, y_train, x_val, y_val, classes, HeadTrainingConfig(seed=seed), quiet=True
    )
    assert fit.heldout_logits is not None and fit.heldout_y is not None
    temperature = calibrate_temperature(fit.heldout_logits, fit.heldout_y)
    with torch.no_grad():
        logits = fit.head.eval()(torch.from_numpy(x_test))
    raw = torch.softmax(logits, 1).numpy()
    calibrated = torch.softmax(logits / temperature.temperature, 1).numpy()
    accuracy, loss_raw = _metrics(raw, y_test, classes)
    return {
        "acc": accuracy,
        "loss_raw": loss_raw,
        "loss": _metrics(calibrated, y_test, classes)[1],
        "ece_raw": expected_calibration_error(raw, y_test),
        "ece": expected_calibration_error(calibrated, y_test),
        "floor": _ece_floor(calibrated, classes),
        "T": temperature.temperature,
    }


def auto_vs_features(data: Path, cache: Path, seed: int) -> dict[str, float]:
    from headstart import EMBEDDED_MODEL, ImageClassifier

    out = {}
    for strategy in ("auto", "features"):
        clf = ImageClassifier(
            EMBEDDED_MODEL, strategy=strategy, seed=seed, quiet=True, cache_dir=cache
        ).fit(data)
        out[f"{strategy}_acc"] = clf.metrics_["test"]["accuracy"]
        if strategy == "auto" and clf.advice_ is not None:
            out["auto_choice"] = clf.advice_.explain().splitlines()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--tasks", nargs="+", default=["demo", "digits", "synthetic"], choices=TASKS
    )
    parser.add_argument("--auto", action="store_true", help="also auto vs features (images)")
    parser.add_argument("--demo-test", type=int, default=40, help="demo test images a class")
    parser.add_argument("--keep", type=Path, help="folder for data and cache (default: temp)")
    parser.add_argument(
        "--mlp", action="store_true", help="also the MLP head's ECE, raw and calibrated"
    )
    parser.add_argument("--curve", action="store_true", help="also the test-optimal C per seed")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    tasks, demo_sizes, digits_pool, curve_points = TASKS, {}, None, 25
    if args.smoke:  # every task and option, tiny; --auto on one seed of the demo data
        tasks, demo_sizes, digits_pool = SMOKE_TASKS, {"train_val": (6, 4)}, 8
        args.tasks, args.seeds, args.demo_test = list(TASKS), 2, 2
        args.auto = args.mlp = args.curve = True
        curve_points = 3
        args.keep = Path(tempfile.mkdtemp(prefix="headstart-heads-smoke-"))
    root = args.keep or Path(tempfile.mkdtemp(prefix="headstart-heads-"))
    root.mkdir(parents=True, exist_ok=True)
    header = (
        f"{'task':<10} {'hs acc':>7} {'sk acc':>7} {'hs loss':>8} {'(raw)':>8} {'sk loss':>8} "
        f"{'hs s':>6} {'skCV s':>7} {'LR s':>6} {'hs/LR':>6} {'ECE raw':>8} {'ECE':>6} "
        f"{'floor':>6}"
    )
    print(header)
    differences: dict[str, list[dict[str, float]]] = {}
    for name in args.tasks:
        if name == "demo":
            make, classes = demo_task(root, args.demo_test, **demo_sizes), 8
        else:
            make, classes = tasks[name](root)
        rows = [run_seed(make(seed), classes) for seed in range(args.seeds)]
        if args.curve:
            for seed, row in enumerate(rows):
                line = test_curve(make(seed), classes, row["hs_C"], row["sk_C"], curve_points)
                print(f"{name:<10} seed {seed}: {line}", flush=True)
        mean: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        print(
            f"{name:<10} {mean['hs_acc']:7.4f} {mean['sk_acc']:7.4f} {mean['hs_loss']:8.4f} "
            f"{mean['hs_raw_loss']:8.4f} "
            f"{mean['sk_loss']:8.4f} {mean['hs_seconds']:6.2f} {mean['sk_seconds']:7.2f} "
            f"{mean['single_seconds']:6.2f} {mean['hs_seconds'] / mean['single_seconds']:6.2f} "
            f"{mean['ece_raw']:8.4f} {mean['ece']:6.4f} {mean['ece_floor']:6.4f}",
            flush=True,
        )
        differences[name] = rows
        if args.mlp:
            mlp = [mlp_calibration(make(seed), classes, seed) for seed in range(args.seeds)]
            m = {k: float(np.mean([r[k] for r in mlp])) for k in mlp[0]}
            print(
                f"{name:<10} MLP head: acc {m['acc']:.4f}, log-loss {m['loss_raw']:.4f} -> "
                f"{m['loss']:.4f}, ECE {m['ece_raw']:.4f} -> {m['ece']:.4f} (floor "
                f"{m['floor']:.4f}), temperature {m['T']:.2f}",
                flush=True,
            )
    if args.seeds > 1:
        print("\nheadstart minus scikit-learn, per seed: mean +- standard error of the mean")
        for name, rows in differences.items():
            print(f"{name:<10} " + "   ".join(_paired(rows, key) for key in ("acc", "loss")))
    if args.auto:
        from headstart.synthetic import make_demo_dataset

        demo_counts = (6, 4, 2) if args.smoke else (60, 20, 40)
        folders = {
            "demo": make_demo_dataset(root / "demo", n_per_class=demo_counts),
            "digits": _digits_folder(root, digits_pool),
        }
        for name, data in list(folders.items())[: 1 if args.smoke else None]:
            for seed in range(1 if args.smoke else args.seeds):
                result = auto_vs_features(data, root / "cache", seed)
                print(f"{name} seed {seed}: {result}", flush=True)
    if args.smoke:
        shutil.rmtree(root)
    return 0


def _paired(rows: list[dict[str, float]], key: str) -> str:
    """``hs_key - sk_key`` over the seeds (each seed's split is shared): mean and its error."""
    diff = np.array([r[f"hs_{key}"] - r[f"sk_{key}"] for r in rows])
    error = diff.std(ddof=1) / np.sqrt(len(diff))
    return f"{key} {diff.mean():+.4f} +- {error:.4f} (better on {_better(diff, key)}/{len(diff)})"


def _better(diff: np.ndarray, key: str) -> int:
    return int((diff > 0).sum() if key == "acc" else (diff < 0).sum())


def _with_classes(
    make: Callable[[Path], Callable[[int], Task]], classes: int
) -> Callable[[Path], tuple[Callable[[int], Task], int]]:
    return lambda root: (make(root), classes)


TASKS: dict[str, Any] = {
    "demo": _with_classes(demo_task, 8),
    "digits": _with_classes(digits_task, 10),
    "synthetic": _with_classes(synthetic_task, 37),
}
SMOKE_TASKS: dict[str, Any] = {  # the same tasks at sizes of seconds (demo's come from main)
    "demo": TASKS["demo"],
    "digits": _with_classes(functools.partial(digits_task, pool=8, per_class=3), 10),
    "synthetic": _with_classes(functools.partial(synthetic_task, n=300, d=64, c=5), 5),
}

if __name__ == "__main__":
    sys.exit(main())
