"""Images of none of the classes: how well each typicality score flags them (issue 24).

Every task has known classes (a linear head and the scores are fitted on their labelled images,
never on a test image) and unknown images (of no known class), all through the shipped
``headstart-tiny`` backbone and headstart's feature cache:

- ``digits-near``: scikit-learn's handwritten digits (8x8 scans upscaled to 64 px, random ink and
  paper colours), 5 digits known and the other 5 unknown (seed 0: 0-4 known; other seeds draw
  the split). Near unknowns: same domain, same style.
- ``demo-near``: the demo dataset (8 classes of shapes x textures), 6 known, 2 unknown.
- ``digits-noise``: the 5 known digits against uniform noise images (far unknowns).
- ``demo-far``: all 8 demo classes against flat colours and uniform noise (far unknowns).
- ``digits-pretrained-near``: issue 24's own task. A small CNN is pretrained (seeded, a minute
  on a CPU) on the 5 digits that are *not* known, as a backbone pretrained on other classes of
  the domain is; the known 5 digits go through its pooled features, and the unknowns are the
  digits it was pretrained on, which excite it more than the known ones do.
- ``digits-pretrained-noise``: the same features, against uniform noise scans.

The known images are split 70/30 (stratified, seeded) into labelled (train; the head and the
scores choose by 5-fold CV as a run with no validation split does) and test. Per score: AUROC of
telling known test images from unknown ones, and the false-accept rate (share of unknowns
accepted) at the cut that accepts 95% of known test images. ``headstart`` is
:func:`headstart.heads.typicality.fit_typicality` with its defaults; for it also the share of
known test images accepted at the default threshold (target 95% +- 2) and the share of unknowns
flagged there. ``auto`` is the score chosen by holding out one known class at a time
(:func:`~headstart.heads.typicality.choose_score`), without any unknown image. Means over seeds.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/openset.py [--seeds 3] [--keep DIR]
    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/openset.py --smoke   # tests run it
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _tiny_data import load_all
from sklearn.metrics import roc_auc_score

from headstart.heads.logistic import fit_linear
from headstart.heads.typicality import DEFAULT_SCORE, SCORES, Typicality, fit_typicality

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


@dataclass
class Task:
    x: np.ndarray  # known images' features
    y: np.ndarray  # their labels, 0..k-1
    unknown: np.ndarray  # features of images of no known class


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


SMOKE = Sizes(per_class=12, far=12, epochs=1)


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
    rng = np.random.default_rng([seed, 24])
    if name.startswith("digits-pretrained"):
        known = _known_digits(seed)
        feats = _pretrained(tuple(int(k) for k in known), seed, sizes)
        inside = np.isin(feats["y"], known)
        unknown = feats["x"][~inside] if name.endswith("near") else feats["noise"]
        return Task(feats["x"][inside], _remap(feats["y"][inside], known), unknown)
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
    return Task(x[inside], _remap(y[inside], known), unknown)


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


def run_task(task: Task, seed: int) -> dict[str, dict[str, float]]:
    train, test = _split(task.y, seed)
    tx, ty = task.x[train], task.y[train]
    k = int(task.y.max()) + 1
    fit = fit_linear(tx, ty, None, None, k, seed=seed)
    with torch.no_grad():
        head = fit.head.double()
        logits_known = head(torch.from_numpy(task.x[test]).double()).numpy()
        logits_unknown = head(torch.from_numpy(task.unknown).double()).numpy()
    truth = np.concatenate([np.ones(len(test)), np.zeros(len(task.unknown))])
    out: dict[str, dict[str, float]] = {}
    fitted: dict[str, Typicality] = {
        name: fit_typicality(tx, ty, score=name, heldout_logits=fit.heldout_logits, seed=seed)
        for name in SCORES
    }
    fitted["auto"] = fit_typicality(
        tx, ty, score="auto", heldout_logits=fit.heldout_logits, C=fit.C, seed=seed
    )
    fitted["headstart"] = fit_typicality(tx, ty, seed=seed)
    for name, typ in fitted.items():
        known = typ.raw(task.x[test], logits_known)
        unknown = typ.raw(task.unknown, logits_unknown)
        out[name] = {
            "auroc": float(roc_auc_score(truth, np.concatenate([known, unknown]))),
            "far95": _far95(known, unknown),
            "accepted": float(np.mean(~typ.unknown(task.x[test], logits_known))),
            "flagged": float(np.mean(typ.unknown(task.unknown, logits_unknown))),
        }
    out["auto"]["chosen"] = SCORES.index(fitted["auto"].score)
    out["accuracy"] = {"value": float(np.mean(logits_known.argmax(1) == task.y[test]))}
    return out


TASKS = (
    "digits-near",
    "demo-near",
    "digits-noise",
    "demo-far",
    "digits-pretrained-near",
    "digits-pretrained-noise",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write images and features here, reuse them")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    sizes = Sizes()
    if args.smoke:
        sizes, args.tasks, args.seeds, args.keep = SMOKE, list(TASKS), 1, None
    methods = [*SCORES, "auto", "headstart"]
    with tempfile.TemporaryDirectory() as tmp:
        sets = load_all(args.keep or Path(tmp), sizes.per_class, sizes.far)
    rows = []
    for name in args.tasks:
        started = time.perf_counter()
        sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        chosen: Counter[str] = Counter()
        for seed in range(args.seeds):
            result = run_task(make_task(name, sets, seed, sizes), seed)
            for method, figures in result.items():
                for key, value in figures.items():
                    sums[method][key].append(value)
            chosen[SCORES[int(result["auto"]["chosen"])]] += 1
        mean = {m: {k: float(np.mean(v)) for k, v in f.items()} for m, f in sums.items()}
        rows.append((name, mean, chosen, time.perf_counter() - started))
    header = "| task | test acc | " + " | ".join(NAMES.get(m, m) for m in methods)
    print(f"AUROC / false-accept rate at 95% of known test images accepted, {args.seeds} seeds")
    print(header + " | auto chose | known accepted | unknown flagged | s |")
    print("|---" * (len(methods) + 6) + "|")
    for name, mean, chosen, seconds in rows:
        cells = [f"{mean[m]['auroc']:.3f} / {mean[m]['far95']:.2f}" for m in methods]
        picks = ", ".join(f"{NAMES[c]} x{n}" for c, n in chosen.most_common())
        hs = mean["headstart"]
        print(
            f"| {name} | {mean['accuracy']['value']:.3f} | "
            + " | ".join(cells)
            + f" | {picks} | {hs['accepted']:.3f} | {hs['flagged']:.3f} | {seconds:.0f} |"
        )
    print()
    print("Share of known test images accepted at the default threshold, per score")
    print("| task | " + " | ".join(NAMES.get(m, m) for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for name, mean, _, _ in rows:
        print(f"| {name} | " + " | ".join(f"{mean[m]['accepted']:.3f}" for m in methods) + " |")


if __name__ == "__main__":
    main()
