"""Images of none of the classes: how well each typicality score flags them (issue 24).

Every task has known classes (a linear head and the scores are fitted on their labelled
images, never on a test image) and unknown images (of no known class). The default score
(:data:`~headstart.heads.typicality.DEFAULT_SCORE`, Mahalanobis) and its threshold were chosen
on this script's development tasks and seeds, so the tasks and seeds come in two sides that
never mix in one run, as in ``benchmarks/head_rules.py``:

- ``development`` (``--side development``), seeds 0-4: the tasks the default was chosen on.
  Its figures show what the choice was made on, never evidence for it. All through the shipped
  ``headstart-tiny`` backbone and headstart's feature cache, except the last two:

  - ``digits-near``: scikit-learn's handwritten digits (8x8 scans upscaled to 64 px, black on
    white), 5 digits known and the other 5 unknown (seed 0: 0-4 known; other seeds draw the
    split). Near unknowns: same domain, same style.
  - ``demo-near``: the demo dataset (8 classes of shapes x textures), 6 known, 2 unknown.
  - ``digits-noise``: the 5 known digits against uniform noise images (far unknowns).
  - ``demo-far``: all 8 demo classes against flat colours and uniform noise (far unknowns).
  - ``digits-pretrained-near``: issue 24's own task. A small CNN is pretrained (seeded, a
    minute on a CPU) on the 5 digits that are *not* known, as a backbone pretrained on other
    classes of the domain is; the known 5 digits go through its pooled features, and the
    unknowns are the digits it was pretrained on, which excite it more than the known ones do.
  - ``digits-pretrained-noise``: the same features, against uniform noise scans.

- ``report`` (the default), seeds 200-209 (100-109 went to ``head_rules.py``), on tasks that
  chose nothing; a task may give several rows, one per kind of unknown, from one fit:

  - ``wine``, ``iris``: scikit-learn's tabular data (178 x 13 and 150 x 4, 3 classes each),
    one class held out as unknown (class ``seed % 3``, so each takes its turn), the features
    z-scored by the known training rows' mean and spread. Real features, no backbone, tiny.
  - ``digits``: the digits through ``headstart-tiny`` on known/unknown splits no development
    seed drew (row ``digits-new-splits``; 10 distinct splits, in an order drawn once).
  - ``digits-colour``: the digits with a seeded random pen and paper colour per scan, through
    ``headstart-tiny`` (images the development side never used), split as ``digits``; unknowns
    the other 5 digits (``digits-colour-near``), 300 flat colours (``digits-colour-flat``: much
    like blank paper of a random colour) or 300 uniform noise images (``digits-colour-noise``).
  - ``synth64``, ``synth512``: synthetic feature rows of 64 and 512 dimensions, pooled-CNN-like
    (a ReLU of Gaussian classes in a 32-d latent space mixed up to the width, as
    ``head_rules.py``'s), 10 classes of 200 rows, a new draw per seed; 6 classes known. Near
    unknowns: the other 4 classes (``-near``). Far: 600 noise rows, each feature's values
    drawn from known-class rows but every column shuffled apart, so each value is typical and
    only the row's pattern is not (``-far``).

The known images are split 70/30 (stratified, seeded) into labelled (train; the head and the
scores choose by 5-fold CV as a run with no validation split does) and test. Per score: AUROC
of telling known test images from unknown ones, and the false-accept rate (share of unknowns
accepted) at the cut that accepts 95% of known test images. ``headstart`` is
:func:`headstart.heads.typicality.fit_typicality` with its defaults; for it also the share of
known test images accepted at the default threshold (target 95% +- 2) and the share of unknowns
flagged there. ``auto`` is the score chosen by holding out one known class at a time
(:func:`~headstart.heads.typicality.choose_score`), without any unknown image; with two known
classes (wine, iris) it cannot measure and falls back to the default. Means +- standard error
over seeds, then the development figures' claims checked against the side's own figures.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/openset.py [--side report]
        [--seeds N] [--tasks ...] [--keep DIR]
    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/openset.py --smoke   # tests run it
"""

from __future__ import annotations

import argparse
import functools
import itertools
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _tiny_data import digit_images, far_images, load_all, saved_sets, tiny_features
from sklearn.metrics import roc_auc_score

from headstart.heads.logistic import fit_linear
from headstart.heads.typicality import (
    DEFAULT_SCORE,
    DEFAULT_THRESHOLD,
    SCORES,
    Typicality,
    fit_typicality,
)

NAMES = {
    "max_softmax": "MSP",
    "max_logit": "max logit",
    "energy": "energy",
    "knn": "kNN",
    "mahalanobis": "Mahalanobis",
    "relative_mahalanobis": "rel. Mahalanobis",
    "auto": "auto (held-out class)",
    "headstart": f"headstart ({DEFAULT_SCORE})",
}
METHODS = (*SCORES, "auto", "headstart")
DEVELOPMENT_SEEDS = tuple(range(5))
REPORT_SEEDS = tuple(range(200, 210))
# What the development figures (BENCHMARKS.md, "Images of none of the classes") claimed of the
# default, checked on every run against the side's own figures.
CLAIM_GAP = 0.01  # its AUROC within this of the best of the six scores, on every task
CLAIM_ACCEPTED = (0.93, 0.97)  # known test images accepted at the default threshold: 95 +- 2%


@dataclass
class Task:
    x: np.ndarray  # known images' features
    y: np.ndarray  # their labels, 0..k-1
    unknowns: dict[str, np.ndarray]  # row name -> features of images of no known class
    standardise: bool = False  # z-score by the known training rows (tabular features)


def _remap(y: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(known), y)


def _known_digits(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 24])
    return np.arange(5) if seed == 0 else np.sort(rng.permutation(10)[:5])


@dataclass(frozen=True)
class Sizes:
    """How much of each image set a run uses: every image (the default), or a few for --smoke."""

    per_class: int | None = None  # digits and demo images a class (None: all)
    far: int = 300  # noise and flat images, each
    epochs: int = 30  # pretraining epochs of the digits CNN
    synthetic: int = 200  # synthetic rows a class


SMOKE = Sizes(per_class=12, far=12, epochs=1, synthetic=12)


@functools.lru_cache(maxsize=1)  # the near and noise tasks of a seed share the pretraining
def _pretrained(known: tuple[int, ...], seed: int, sizes: Sizes) -> dict[str, np.ndarray]:
    return pretrained_digit_features(np.array(known), seed, sizes)


def pretrained_digit_features(
    known: np.ndarray, seed: int, sizes: Sizes = Sizes()
) -> dict[str, np.ndarray]:
    """Pooled 128-d features of every digit scan (and of noise scans) through a small CNN
    pretrained on the digits that are not ``known``: a backbone pretrained on other classes of
    the same domain, as in issue 24. Seeded; about a minute on one CPU thread."""
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.nn import functional as F

    digits = load_digits()
    kept = np.arange(len(digits.target))
    if sizes.per_class is not None:  # the first ones of each digit
        rank = np.array([np.sum(digits.target[:i] == t) for i, t in enumerate(digits.target)])
        kept = np.flatnonzero(rank < sizes.per_class)
    target = digits.target[kept]
    images = torch.from_numpy(digits.images[kept] / 16.0).float()[:, None]
    labels = torch.from_numpy(target)
    noise = torch.from_numpy(np.random.default_rng([seed, 5]).uniform(0, 1, (sizes.far, 1, 8, 8)))

    def block(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )

    torch.manual_seed(seed)
    body = nn.Sequential(
        block(1, 32, 1), block(32, 64, 2), block(64, 128, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    pretrain = ~np.isin(target, known)
    others = np.flatnonzero(~np.isin(np.arange(10), known))
    x = F.interpolate(images[pretrain], size=16, mode="bilinear")
    y = torch.from_numpy(np.searchsorted(others, labels[pretrain].numpy()))
    classifier = nn.Linear(128, len(others))
    optimizer = torch.optim.AdamW([*body.parameters(), *classifier.parameters()], lr=3e-3)
    for _ in range(sizes.epochs):
        order = torch.randperm(len(x))
        for batch in order.split(64):
            optimizer.zero_grad()
            F.cross_entropy(classifier(body(x[batch])), y[batch]).backward()
            optimizer.step()
    body.eval()
    with torch.no_grad():

        def features(t: torch.Tensor) -> np.ndarray:
            return body(F.interpolate(t.float(), size=16, mode="bilinear")).numpy()

        return {"x": features(images), "y": target, "noise": features(noise)}


def make_task(
    name: str, sets: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, sizes: Sizes = Sizes()
) -> Task:
    """A development task: the known images and one set of unknowns (the row ``name``)."""
    rng = np.random.default_rng([seed, 24])
    if name.startswith("digits-pretrained"):
        known = _known_digits(seed)
        feats = _pretrained(tuple(int(k) for k in known), seed, sizes)
        inside = np.isin(feats["y"], known)
        unknown = feats["x"][~inside] if name.endswith("near") else feats["noise"]
        return Task(feats["x"][inside], _remap(feats["y"][inside], known), {name: unknown})
    if name.startswith("digits"):
        x, y = sets["digits"]
        known = _known_digits(seed)
    else:
        x, y = sets["demo"]
        known = np.arange(8) if name == "demo-far" else np.sort(rng.permutation(8)[:6])
    inside = np.isin(y, known)
    if name.endswith("near"):
        unknown = x[~inside]
    elif name == "digits-noise":
        unknown = sets["noise"][0]
    else:
        unknown = np.concatenate([sets["flat"][0], sets["noise"][0]])
    return Task(x[inside], _remap(y[inside], known), {name: unknown})


def report_digits(seed: int) -> np.ndarray:
    """The known digits of a report seed: the splits of 10 digits into 5 known and 5 unknown
    that no development seed drew, in an order drawn once, one a report seed (two of seeds
    200-209 would draw a development split by ``_known_digits``, and two the same one)."""
    used = {tuple(int(d) for d in _known_digits(s)) for s in DEVELOPMENT_SEEDS}
    splits = [c for c in itertools.combinations(range(10), 5) if c not in used]
    order = np.random.default_rng(REPORT_SEEDS[0]).permutation(len(splits))
    return np.array(splits[order[(seed - REPORT_SEEDS[0]) % len(splits)]])


def _tabular(name: str, seed: int) -> Task:
    from sklearn import datasets

    data = getattr(datasets, f"load_{name}")()
    x, y = data.data.astype(np.float32), data.target
    held = seed % 3  # each class takes its turn as the unknown
    known = np.flatnonzero(np.arange(3) != held)
    inside = np.isin(y, known)
    return Task(x[inside], _remap(y[inside], known), {name: x[~inside]}, standardise=True)


SYNTH_CLASSES, SYNTH_KNOWN, SYNTH_LATENT = 10, 6, 32
SYNTH_SEPARATION = 0.7  # set on seeds 0-2 (no report seed): head test accuracy 0.8-0.9


def synthetic_task(width: int, seed: int, per_class: int) -> Task:
    """Pooled-CNN-like features of Gaussian classes (as ``head_rules.py``'s: a latent point per
    class, mixed up to ``width`` features by a random matrix whose directions' scales spread
    over orders of magnitude, then a ReLU and a per-feature gain), a new draw per seed. The
    first :data:`SYNTH_KNOWN` classes are known, the others the near unknowns; the far ones
    are known-class rows with every column shuffled apart (``width`` in the rows' name)."""
    rng = np.random.default_rng([seed, width])
    k = SYNTH_LATENT
    centres = rng.normal(size=(SYNTH_CLASSES, k)) * SYNTH_SEPARATION
    mix = rng.normal(size=(k, width)) * rng.lognormal(0, 1, size=(k, 1)) / np.sqrt(k)
    gain = rng.lognormal(-1, 1, size=width)

    def draw(labels: np.ndarray) -> np.ndarray:
        z = centres[labels] + rng.normal(size=(len(labels), k))
        pre = z @ mix + rng.normal(size=(len(labels), width)) * 0.7 - 0.5
        return (np.maximum(pre, 0) * gain).astype(np.float32)

    y = np.repeat(np.arange(SYNTH_CLASSES), per_class)
    x = draw(y)
    inside = y < SYNTH_KNOWN
    rows = draw(rng.integers(0, SYNTH_KNOWN, 3 * per_class))
    far = np.stack([rng.permutation(column) for column in rows.T], axis=1)
    name = f"synth{width}"
    return Task(x[inside], y[inside], {f"{name}-near": x[~inside], f"{name}-far": far})


def load_report_sets(root: Path, sizes: Sizes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``headstart-tiny`` features of the report side's images (digits black on white and in
    colour, noise and flat colours), cached as ``report-features.npz`` beside the development
    side's ``features.npz``."""

    def build() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        cache = root / "cache"
        digits, digit_y = digit_images(root, per_class=sizes.per_class)
        colour, colour_y = digit_images(root, colour=True, per_class=sizes.per_class)
        noise, flat = far_images(root, sizes.far)
        return {
            "digits": (tiny_features(digits, cache), digit_y),
            "digits-colour": (tiny_features(colour, cache), colour_y),
            "flat": (tiny_features(flat, cache), np.full(len(flat), -1)),
            "noise": (tiny_features(noise, cache), np.full(len(noise), -1)),
        }

    return saved_sets(root / "report-features.npz", build)


def make_report_task(
    name: str, sets: dict[str, tuple[np.ndarray, np.ndarray]], seed: int, sizes: Sizes = Sizes()
) -> Task:
    """A report task: the known images and each of its sets of unknowns (one row each)."""
    if name in ("wine", "iris"):
        return _tabular(name, seed)
    if name.startswith("synth"):
        return synthetic_task(int(name[len("synth") :]), seed, sizes.synthetic)
    x, y = sets[name]
    known = report_digits(seed)
    inside = np.isin(y, known)
    task = Task(x[inside], _remap(y[inside], known), {})
    if name == "digits":
        task.unknowns["digits-new-splits"] = x[~inside]
    else:
        task.unknowns[f"{name}-near"] = x[~inside]
        task.unknowns[f"{name}-flat"] = sets["flat"][0]
        task.unknowns[f"{name}-noise"] = sets["noise"][0]
    return task


def _split(y: np.ndarray, seed: int, test: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 7])
    train, held = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        cut = round(len(members) * test)
        held.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _far95(known: np.ndarray, unknown: np.ndarray) -> float:
    """Share of unknowns accepted at the cut that accepts 95% of known test images."""
    cut = np.quantile(known, 0.05)
    return float(np.mean(unknown >= cut))


def run_task(task: Task, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """One seed of a task: per row (set of unknowns), per method, its figures; the head and
    the scores are fitted once for all rows."""
    train, test = _split(task.y, seed)
    x, unknowns = task.x, task.unknowns
    if task.standardise:  # by the labelled rows alone, as a user's preprocessing would be
        mean, spread = x[train].mean(axis=0), x[train].std(axis=0)
        spread = np.where(spread > 0, spread, 1.0)
        x = ((x - mean) / spread).astype(np.float32)
        unknowns = {k: ((v - mean) / spread).astype(np.float32) for k, v in unknowns.items()}
    tx, ty = x[train], task.y[train]
    k = int(task.y.max()) + 1
    fit = fit_linear(tx, ty, None, None, k, seed=seed)
    with torch.no_grad():
        head = fit.head.double()

        def logits(rows: np.ndarray) -> np.ndarray:
            return head(torch.from_numpy(rows).double()).numpy()

        logits_known = logits(x[test])
        logits_unknown = {row: logits(rows) for row, rows in unknowns.items()}
    fitted: dict[str, Typicality] = {
        name: fit_typicality(tx, ty, score=name, heldout_logits=fit.heldout_logits, seed=seed)
        for name in SCORES
    }
    fitted["auto"] = fit_typicality(
        tx, ty, score="auto", heldout_logits=fit.heldout_logits, C=fit.C, seed=seed
    )
    fitted["headstart"] = fit_typicality(tx, ty, seed=seed)
    accuracy = float(np.mean(logits_known.argmax(1) == task.y[test]))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for row, rows in unknowns.items():
        truth = np.concatenate([np.ones(len(test)), np.zeros(len(rows))])
        out: dict[str, dict[str, float]] = {}
        for name, typ in fitted.items():
            known = typ.raw(x[test], logits_known)
            unknown = typ.raw(rows, logits_unknown[row])
            out[name] = {
                "auroc": float(roc_auc_score(truth, np.concatenate([known, unknown]))),
                "far95": _far95(known, unknown),
                "accepted": float(np.mean(~typ.unknown(x[test], logits_known))),
                "flagged": float(np.mean(typ.unknown(rows, logits_unknown[row]))),
            }
        out["auto"]["chosen"] = SCORES.index(fitted["auto"].score)
        out["accuracy"] = {"value": accuracy}
        results[row] = out
    return results


@dataclass(frozen=True)
class Side:
    """The tasks of one side, how to build them, and its seeds."""

    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    load: Callable[[Path, Sizes], dict[str, tuple[np.ndarray, np.ndarray]]]
    make: Callable[[str, dict[str, tuple[np.ndarray, np.ndarray]], int, Sizes], Task]
    far_rows: tuple[str, ...] = field(default=())  # rows whose unknowns are far (noise)


SIDES = {
    "development": Side(
        tasks=(
            "digits-near",
            "demo-near",
            "digits-noise",
            "demo-far",
            "digits-pretrained-near",
            "digits-pretrained-noise",
        ),
        seeds=DEVELOPMENT_SEEDS,
        load=lambda root, sizes: load_all(root, sizes.per_class, sizes.far),
        make=make_task,
        far_rows=("digits-noise", "demo-far", "digits-pretrained-noise"),
    ),
    "report": Side(
        tasks=("wine", "iris", "digits", "digits-colour", "synth64", "synth512"),
        seeds=REPORT_SEEDS,
        load=load_report_sets,
        make=make_report_task,
        far_rows=("digits-colour-flat", "digits-colour-noise", "synth64-far", "synth512-far"),
    ),
}
TASKS = SIDES["development"].tasks  # the development side's, as before the sides


@dataclass
class Row:
    """One row of the tables: a task's set of unknowns, with its figures over seeds."""

    name: str
    values: dict[str, dict[str, list[float]]]
    chosen: Counter[str]
    seconds: float  # of the task's fits, shared by its rows

    def mean(self, method: str, key: str) -> float:
        return float(np.mean(self.values[method][key]))

    def error(self, method: str, key: str) -> float:
        """Standard error of the mean over seeds (NaN with one seed)."""
        v = self.values[method][key]
        return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")

    def cell(self, method: str, key: str, digits: int = 3) -> str:
        return f"{self.mean(method, key):.{digits}f} ± {self.error(method, key):.{digits}f}"


def measure(
    side: Side, names: Sequence[str], seeds: Sequence[int], sizes: Sizes, root: Path
) -> list[Row]:
    """Every task of ``names`` on every seed: one row per set of unknowns, its figures over the
    seeds (a task's rows share its fits, so its seconds are theirs together)."""
    sets = side.load(root, sizes)
    rows = []
    for name in names:
        started = time.perf_counter()
        values: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        chosen: dict[str, Counter[str]] = defaultdict(Counter)
        for seed in seeds:
            for row, result in run_task(side.make(name, sets, seed, sizes), seed).items():
                for method, figures in result.items():
                    for key, value in figures.items():
                        values[row][method][key].append(value)
                chosen[row][SCORES[int(result["auto"]["chosen"])]] += 1
        seconds = time.perf_counter() - started
        rows += [Row(row, values[row], chosen[row], seconds) for row in values]
        print(f"{name}: {seconds:.0f} s", flush=True)
    return rows


def best_score(row: Row) -> str:
    """The score of the six with the highest mean AUROC (``auto`` is a choice among them)."""
    return max(SCORES, key=lambda s: row.mean(s, "auroc"))


def claims(rows: Sequence[Row], far_rows: Sequence[str]) -> list[str]:
    """The development figures' claims about the default, each checked on these rows' means."""
    gap = [
        r for r in rows if r.mean(best_score(r), "auroc") - r.mean("headstart", "auroc") > CLAIM_GAP
    ]
    low, high = CLAIM_ACCEPTED
    off = [r for r in rows if not low <= r.mean("headstart", "accepted") <= high]
    far = [r for r in rows if r.name in far_rows]
    missed = [r for r in far if r.mean("headstart", "flagged") < 1.0]

    def verdict(failed: Sequence[Row], of: Sequence[Row], say: Callable[[Row], str]) -> str:
        if not of:
            return "no row to check"
        if not failed:
            return f"holds on all {len(of)} rows"
        return f"FAILS on {len(failed)} of {len(of)} rows: " + "; ".join(map(say, failed))

    return [
        f"1. the default's AUROC is within {CLAIM_GAP} of the best of the six scores on every "
        "task: "
        + verdict(
            gap,
            rows,
            lambda r: (
                f"{r.name} {r.mean('headstart', 'auroc'):.3f} against "
                f"{NAMES[best_score(r)]} {r.mean(best_score(r), 'auroc'):.3f}"
            ),
        ),
        f"2. the default threshold accepts {low:.0%}-{high:.0%} of known test images (95 +- 2%): "
        + verdict(off, rows, lambda r: f"{r.name} {r.cell('headstart', 'accepted')}"),
        "3. the default flags every far unknown (development: every noise and flat-colour "
        "image): " + verdict(missed, far, lambda r: f"{r.name} {r.cell('headstart', 'flagged')}"),
    ]


def print_report(rows: Sequence[Row], side: Side, label: str, seeds: Sequence[int]) -> None:
    names = [NAMES[m] for m in METHODS]
    print(f"\nside: {label}, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)})")
    for key, title in (
        ("auroc", "AUROC (known test images against unknown ones)"),
        ("far95", "false-accept rate at the cut that accepts 95% of known test images"),
        ("accepted", f"share of known test images accepted at the threshold {DEFAULT_THRESHOLD}"),
    ):
        print(f"\n{title}, mean ± standard error over seeds")
        print("| row | test acc | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 2) + "|")
        for r in rows:
            cells = [r.cell(m, key, 2 if key == "far95" else 3) for m in METHODS]
            print(f"| {r.name} | {r.mean('accuracy', 'value'):.3f} | " + " | ".join(cells) + " |")
    print(f"\nThe default ({DEFAULT_SCORE}) at its threshold ({DEFAULT_THRESHOLD}), the best score")
    columns = (
        "default AUROC",
        "best of the six",
        "known accepted",
        "unknown flagged",
        "auto chose",
    )
    print("| row | " + " | ".join(columns) + " | s |")
    print("|---" * 7 + "|")
    for r in rows:
        best = best_score(r)
        picks = ", ".join(f"{NAMES[c]} x{n}" for c, n in r.chosen.most_common())
        print(
            f"| {r.name} | {r.cell('headstart', 'auroc')} | {NAMES[best]} "
            f"{r.mean(best, 'auroc'):.3f} | {r.cell('headstart', 'accepted')} | "
            f"{r.cell('headstart', 'flagged')} | {picks} | {r.seconds:.0f} |"
        )
    print("\nThe development figures' claims, on these figures:")
    print("\n".join(claims(rows, side.far_rows)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=sorted(SIDES), default="report")
    parser.add_argument("--tasks", nargs="+", help="tasks of the side (default: all)")
    parser.add_argument("--seeds", type=int, help="the first N seeds of the side (default: all)")
    parser.add_argument("--keep", type=Path, help="write images and features here, reuse them")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    side = SIDES[args.side]
    names = args.tasks or list(side.tasks)
    foreign = [n for n in names if n not in side.tasks]
    if foreign:
        parser.error(
            f"task(s) {', '.join(foreign)} are not on the {args.side} side; "
            f"its tasks: {', '.join(side.tasks)}"
        )
    if args.seeds is not None and not 1 <= args.seeds <= len(side.seeds):
        parser.error(f"--seeds takes 1 to {len(side.seeds)} (the {args.side} side's seeds)")
    with tempfile.TemporaryDirectory(prefix="headstart-openset-") as temporary:
        root = args.keep or Path(temporary)
        root.mkdir(parents=True, exist_ok=True)
        if args.smoke:  # both sides, one seed each, every task at tiny sizes: still never mixed
            for label, each in SIDES.items():
                rows = measure(each, each.tasks, each.seeds[:1], SMOKE, root)
                print_report(rows, each, f"smoke, {label}", each.seeds[:1])
            return
        seeds = side.seeds[: args.seeds]
        print_report(measure(side, names, seeds, Sizes(), root), side, args.side, seeds)


if __name__ == "__main__":
    main()
