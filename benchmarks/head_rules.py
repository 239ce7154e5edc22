"""The linear head's rules, each against the head without it, on tasks that never chose them.

Three rules of :func:`headstart.heads.fit_linear` were chosen by their *test* log-loss on the
demo and digits splits of seeds 0-5 (and, for the shortcut, on the 100,000-image warm-run
features and the 10,000 x 2,048 synthetic task), the same splits BENCHMARKS.md then reported
(issue 28). The first of them, refitting with the penalty per image of the fits that chose ``C``
(``final_C = C * n_sel / n``), lost here and was removed (BENCHMARKS.md, "The head's rules on
tasks that never chose them"); the two measured now:

- ``vertex``: the walk ends on the vertex of the parabola in ``log C`` through its best point
  and neighbours; off, on the best point tried.
- ``clear_gain``: on large fits (more than ``CHEAP_VALUES`` feature values), a settled point
  that beats the best by more than 1% is taken without a second, converged solve; off, every
  such point is solved to convergence. A fit-time rule, judged on time at equal loss; on
  cheaper fits it never applies, so it is measured on the ``large-*`` tasks only.

So the tasks and seeds come in two sides that never mix in one run:

- ``development`` (``--side development``): ``demo`` and ``digits`` (``benchmarks/heads.py``'s,
  the demo with 240 test images a class) and ``synthetic`` (10,000 x 2,048, 37 classes), seeds
  0-5. The rules were chosen here; its figures show what they were chosen on, never evidence.
- ``report`` (the default): seeds 100-109 and tasks none of the rules was chosen or tuned on:

  - ``wine`` and ``breast-cancer``: scikit-learn's bundled tabular data (178 x 13, 3 classes;
    569 x 30, 2 classes), 50/20/30 train / val / test: real features, tiny, cross-validated.
  - ``digits-colour``: the digits with a seeded random pen and paper colour per scan, through
    the shipped ``headstart-tiny``: other features of other images, far harder (60 train and 20
    val a class: a validation split).
  - ``digits-cnn``: five digits through a small CNN pretrained (by ``benchmarks/openset.py``'s
    code, seed 100) on the other five: another backbone (10 train and 10 val a class).
  - ``synth-256x5``, ``synth-768x20``: pooled-CNN-like synthetic features of two widths and
    class counts, harder than ``heads.py``'s (cross-validated; validation split).
  - ``imbalanced``: 384-d synthetic features, 12 classes, class frequencies falling 20:1 in
    train, val and test alike.
  - ``large-val``, ``large-cv``: synthetic fits past ``CHEAP_VALUES`` (6,500 x 1,024, 15 classes,
    on a validation split; 3,000 x 1,536, 30 classes, by 5-fold CV), where the walk's coarse grid
    and the shortcut apply; their fits take 10-30 s each, so they run on the first 5 seeds.

Per task and seed the head is fitted with every rule (the default) and once with each rule that
applies switched off, on the same split and features. The figures are the head's own test
log-loss (softmax, no temperature: the rules act before it) and accuracy, the fit's seconds and its
L-BFGS iterations (which, unlike seconds, do not depend on the machine's load). Then, per rule,
the paired difference "with minus without" over every task and seed: its mean +- standard error,
and on how many pairs the rule was better, worse, or changed nothing (``|difference| <= 1e-6``).

    .venv/bin/python benchmarks/head_rules.py [--side report] [--seeds 10] [--tasks ...]
        [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Task = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
RULES = ("vertex", "clear_gain")
DEVELOPMENT_SEEDS = tuple(range(6))
REPORT_SEEDS = tuple(range(100, 110))
TIE = 1e-6


@dataclass(frozen=True)
class Spec:
    """A task: ``load(root)`` prepares its data once and returns ``split(seed)``."""

    load: Callable[[Path], Callable[[int], Task]]
    classes: int
    seeds: int | None = None  # at most this many of the side's seeds (the costliest tasks)


def _sibling(name: str) -> Any:
    """Another benchmark script as a module: run as a script, or by ``runpy`` as the smoke test
    does, this folder need not be on the import path."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


def _split(x: np.ndarray, y: np.ndarray, seed: int, val: float, test: float) -> Task:
    """A stratified train / val / test split of ``x`` drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test, stratify=y, random_state=seed
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val / (1 - test), stratify=y_rest, random_state=seed
    )
    return x_train, y_train, x_val, y_val, x_test, y_test


def _per_class(x: np.ndarray, y: np.ndarray, seed: int, train: int, val: int) -> Task:
    """``train`` and ``val`` images a class drawn with ``seed``; every other image is test."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        parts[0] += list(rows[:train])
        parts[1] += list(rows[train : train + val])
        parts[2] += list(rows[train + val :])
    tr, va, te = (np.array(p) for p in parts)
    return x[tr], y[tr], x[va], y[va], x[te], y[te]


def _tabular(name: str) -> Callable[[Path], Callable[[int], Task]]:
    def load(root: Path) -> Callable[[int], Task]:
        from sklearn import datasets

        del root
        data = getattr(datasets, f"load_{name}")()
        x, y = data.data.astype(np.float32), data.target.astype(np.int64)
        return lambda seed: _split(x, y, seed, 0.2, 0.3)

    return load


def _digits_colour(root: Path) -> Callable[[int], Task]:
    tiny = _sibling("_tiny_data")
    paths, y = tiny.digit_images(root, colour=True)
    x = tiny.tiny_features(paths, root / "cache")
    return lambda seed: _per_class(x, y, seed, 60, 20)


def _digits_cnn(root: Path) -> Callable[[int], Task]:
    known = np.array([1, 3, 4, 7, 9])  # pretrained on 0, 2, 5, 6 and 8
    saved = root / "digits-cnn.npz"  # the pretraining takes a minute: kept with --keep
    if not saved.exists():
        feats = _sibling("openset").pretrained_digit_features(known, 100)
        np.savez(saved, x=feats["x"], y=feats["y"])
    with np.load(saved) as feats:
        inside = np.isin(feats["y"], known)
        x = feats["x"][inside].astype(np.float32)
        y = np.searchsorted(known, feats["y"][inside]).astype(np.int64)
    return lambda seed: _per_class(x, y, seed, 10, 10)


def synthetic(
    n: int, d: int, c: int, rng: np.random.Generator, separation: float, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled-CNN-like features (as ``benchmarks/heads.py``'s: ReLU of a correlated low-rank
    signal, scales spread over orders of magnitude), with the classes' separation and
    frequencies given, so that a task is neither solved nor hopeless."""
    k = 64
    centers = rng.normal(size=(c, k)) * separation
    mix = rng.normal(size=(k, d)) * rng.lognormal(0, 1, size=(k, 1)) / np.sqrt(k)
    y = rng.choice(c, n, p=weights / weights.sum())
    z = centers[y] + rng.normal(size=(n, k))
    pre = z @ mix + rng.normal(size=(n, d)) * 0.7 - 0.5
    x = np.maximum(pre, 0) * rng.lognormal(-1, 1, size=d)
    return x.astype(np.float32), y.astype(np.int64)


def _synthetic(
    tag: int, sizes: tuple[int, int, int], d: int, c: int, separation: float, skew: float = 1.0
) -> Callable[[Path], Callable[[int], Task]]:
    """A new draw of the task per seed (``tag`` keeps tasks of the same seed independent);
    ``skew`` is the ratio of the most to the least frequent class."""

    def load(root: Path) -> Callable[[int], Task]:
        del root

        def split(seed: int) -> Task:
            rng = np.random.default_rng([seed, tag])
            weights = skew ** -(np.arange(c) / max(1, c - 1))
            x, y = synthetic(sum(sizes), d, c, rng, separation, weights)
            a, b = sizes[0], sizes[0] + sizes[1]
            return x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:]

        return split

    return load


def _development(name: str, classes: int) -> Spec:
    def load(root: Path) -> Callable[[int], Task]:
        heads = _sibling("heads")
        if name == "demo":
            return heads.demo_task(root, 240)
        return heads.TASKS[name](root)[0]

    return Spec(load, classes)


SIDES: dict[str, dict[str, Spec]] = {
    "development": {
        "demo": _development("demo", 8),
        "digits": _development("digits", 10),
        "synthetic": _development("synthetic", 37),
    },
    "report": {
        "wine": Spec(_tabular("wine"), 3),
        "breast-cancer": Spec(_tabular("breast_cancer"), 2),
        "digits-colour": Spec(_digits_colour, 10),
        "digits-cnn": Spec(_digits_cnn, 5),
        "synth-256x5": Spec(_synthetic(1, (400, 100, 2000), 256, 5, 0.25), 5),
        "synth-768x20": Spec(_synthetic(2, (1000, 400, 2000), 768, 20, 0.35), 20),
        "imbalanced": Spec(_synthetic(3, (1500, 400, 2000), 384, 12, 0.35, skew=20.0), 12),
        "large-val": Spec(_synthetic(4, (4000, 1000, 2000), 1024, 15, 0.3), 15, seeds=5),
        "large-cv": Spec(_synthetic(5, (2200, 0, 2000), 2048, 10, 0.4), 10, seeds=5),
    },
}
SMOKE: dict[str, Spec] = {
    "wine": SIDES["report"]["wine"],
    "synth-tiny": Spec(_synthetic(6, (150, 50, 200), 32, 3, 0.4), 3),
    # Just past CHEAP_VALUES (4,000,000), so the shortcut's switch is exercised too.
    "large-tiny": Spec(_synthetic(7, (1900, 450, 100), 1720, 2, 0.4), 2),
}


def applicable(task: Task) -> list[str]:
    """The rules that can change this task's fit (the shortcut acts on large fits only)."""
    from headstart.heads.logistic import CHEAP_VALUES

    x_train, _, x_val, *_ = task
    large = (len(x_train) + len(x_val)) * x_train.shape[1] > CHEAP_VALUES
    return [rule for rule in RULES if rule != "clear_gain" or large]


def measure(task: Task, classes: int, without: Sequence[str], seed: int) -> dict[str, float]:
    """One fit of the default head with the rules ``without`` switched off, and its test figures."""
    import torch

    from headstart.heads import fit_linear

    x_train, y_train, x_val, y_val, x_test, y_test = task
    began = time.perf_counter()
    fit = fit_linear(
        x_train,
        y_train,
        x_val,
        y_val,
        classes,
        seed=seed,
        _without=without,  # type: ignore[arg-type]
    )
    seconds = time.perf_counter() - began
    with torch.no_grad():
        logits = fit.head(torch.from_numpy(x_test)).double()
    picked = torch.log_softmax(logits, 1).gather(1, torch.from_numpy(y_test)[:, None])
    return {
        "loss": float(-picked.mean()),
        "acc": float((logits.argmax(1).numpy() == y_test).mean()),
        "seconds": seconds,
        "iterations": float(fit.iterations),
        "C": float(fit.final_C if fit.final_C is not None else fit.C),
    }


def run_task(spec: Spec, root: Path, seeds: Sequence[int]) -> list[dict[str, dict[str, float]]]:
    """Per seed: ``{"all": figures, rule: figures without that rule, ...}``. The order of the
    fits rotates with the seed, so that a drift in the machine's load favours no one."""
    split = spec.load(root)
    rows = []
    for i, seed in enumerate(seeds[: spec.seeds]):
        task = split(seed)
        configs = ["all", *applicable(task)]
        configs = configs[i % len(configs) :] + configs[: i % len(configs)]
        row = {}
        for config in configs:
            without = [] if config == "all" else [config]
            row[config] = measure(task, spec.classes, without, seed)
        rows.append(row)
    return rows


def _mean(rows: list[dict[str, dict[str, float]]], config: str, key: str) -> float:
    return float(np.mean([r[config][key] for r in rows if config in r]))


def print_task(name: str, rows: list[dict[str, dict[str, float]]]) -> None:
    for config in ["all", *RULES]:
        if config not in rows[0]:
            continue
        label = "every rule" if config == "all" else f"no {config}"
        print(
            f"{name:<14} {label:<14} {_mean(rows, config, 'loss'):8.4f} "
            f"{_mean(rows, config, 'acc'):7.4f} {_mean(rows, config, 'seconds'):7.2f} "
            f"{_mean(rows, config, 'iterations'):7.0f}",
            flush=True,
        )


def paired(results: dict[str, list[dict[str, dict[str, float]]]], rule: str, key: str) -> str:
    """``with - without`` the rule over every task and seed it applies to: mean +- standard
    error, and the pairs where the rule was better / worse / changed nothing."""
    diff = np.array(
        [r["all"][key] - r[rule][key] for rows in results.values() for r in rows if rule in r]
    )
    if len(diff) == 0:
        return f"{key}: no task it applies to"
    error = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    sign = -1 if key == "acc" else 1  # lower is better, except for accuracy
    better = int((sign * diff < -TIE).sum())
    worse = int((sign * diff > TIE).sum())
    return (
        f"{key} {diff.mean():+.4f} +- {error:.4f} "
        f"(better {better}, worse {worse}, same {len(diff) - better - worse} of {len(diff)})"
    )


def per_task(results: dict[str, list[dict[str, dict[str, float]]]], rule: str) -> list[str]:
    """One line a task: the mean test log-loss difference ``with - without`` and its counts."""
    lines = []
    for name, rows in results.items():
        diff = np.array([r["all"]["loss"] - r[rule]["loss"] for r in rows if rule in r])
        if len(diff):
            better, worse = int((diff < -TIE).sum()), int((diff > TIE).sum())
            lines.append(
                f"{'':<11} {name:<14} loss {diff.mean():+.4f} (better {better}, worse {worse}, "
                f"same {len(diff) - better - worse})"
            )
    return lines


def time_ratio(results: dict[str, list[dict[str, dict[str, float]]]], rule: str) -> str:
    """Seconds and iterations of the fits with the rule over those without it (sums)."""
    pairs = [r for rows in results.values() for r in rows if rule in r]
    parts = []
    for key in ("seconds", "iterations"):
        on = sum(r["all"][key] for r in pairs)
        off = sum(r[rule][key] for r in pairs)
        parts.append(f"{key} {on:.6g} / {off:.6g} = {on / off:.2f}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=sorted(SIDES), default="report")
    parser.add_argument("--seeds", type=int, help="the first N seeds of the side (default: all)")
    parser.add_argument("--tasks", nargs="+", help="tasks of the side (default: all)")
    parser.add_argument("--keep", type=Path, help="folder for data and cache (default: temp)")
    parser.add_argument("--smoke", action="store_true", help="tiny tasks, one seed: seconds")
    args = parser.parse_args(argv)
    side = SMOKE if args.smoke else SIDES[args.side]
    if args.smoke:
        seeds: Sequence[int] = REPORT_SEEDS[:1]
    else:
        seeds = DEVELOPMENT_SEEDS if args.side == "development" else REPORT_SEEDS
    seeds = seeds[: args.seeds] if args.seeds else seeds
    names = args.tasks or list(side)
    unknown = [n for n in names if n not in side]
    if unknown:
        parser.error(
            f"task(s) {', '.join(unknown)} are not on the {args.side} side; "
            f"its tasks: {', '.join(side)}"
        )
    with tempfile.TemporaryDirectory(prefix="headstart-head-rules-") as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        report(side, names, seeds, root, "smoke" if args.smoke else args.side)
    return 0


def report(
    side: dict[str, Spec], names: list[str], seeds: Sequence[int], root: Path, label: str
) -> None:
    """Fit every task and seed, and print the table and the paired differences."""
    print(f"side: {label}, seeds {seeds[0]}-{seeds[-1]}", flush=True)
    print(f"{'task':<14} {'fit':<14} {'loss':>8} {'acc':>7} {'s':>7} {'iters':>7}")
    # One untimed fit first: the first fit of a process pays for torch's lazy set-up.
    measure(SMOKE["synth-tiny"].load(root)(0), 3, [], 0)
    results = {}
    for name in names:
        results[name] = run_task(side[name], root, seeds)
        print_task(name, results[name])
    print("\nwith the rule minus without it, every task and seed (loss and acc: test split)")
    for rule in RULES:
        print(f"{rule:<11} " + "   ".join(paired(results, rule, k) for k in ("loss", "acc")))
        if any(rule in r for rows in results.values() for r in rows):
            print(f"{'':<11} {time_ratio(results, rule)}")
            print("\n".join(per_task(results, rule)))


if __name__ == "__main__":
    sys.exit(main())
