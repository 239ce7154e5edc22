"""Choosing the linear head's C on a sample of a large training set, against the full walk.

Past ``WALK_MAX_IMAGES`` (20,000) labelled images, ``fit_linear`` walks the C grid on a stratified
sample and takes the sample's C as the train split's. This script measures that choice on real
cached features: for each seed, a fresh 70/20/10 split of every image, then

- ``full``: the walk on every training image (the sample turned off);
- ``sample``: the default (the walk on the sample, its C transferred as it is);
- ``per image``: the sample's C transferred with the same penalty per image instead (the final
  fit's C scaled by sample size / train + val size), the rule the refit from train to train + val
  uses.

It prints the fit time, the chosen and final C, and the test log-loss and accuracy of each.

The features come from the feature cache, so extract them first, e.g. with the data and cache of
``benchmarks/warm.py --images 5000 --scale 20 --keep DIR`` (a cold run of 100,000 images takes
about 9 minutes on 2 cores):

    .venv/bin/python benchmarks/walk_sample.py DIR/100000 --cache CACHE [--seeds 3]
    .venv/bin/python benchmarks/walk_sample.py --smoke   # 96 demo images, a sample of 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import headstart.heads.logistic as logistic
from headstart import EMBEDDED_MODEL
from headstart.backbones import create_backbone
from headstart.data import load_dataset
from headstart.features.extract import extract_cached


def features(data: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    dataset = load_dataset(data, val_fraction=0.0, test_fraction=0.0)
    samples = dataset.splits["train"]
    result = extract_cached(
        create_backbone(EMBEDDED_MODEL),
        [s.path for s in samples],
        use_cache=True,
        cache_dir=cache,
        desc="features",
        quiet=True,
    )
    row = {p: i for i, p in enumerate(result.paths)}
    kept = [s for s in samples if s.path in row]
    x = result.features[[row[s.path] for s in kept]]
    return np.ascontiguousarray(x, np.float32), np.array([s.label for s in kept], np.int64)


def test_scores(head: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    with torch.no_grad():
        logits = head(torch.from_numpy(x))
    loss = float(F.cross_entropy(logits, torch.from_numpy(y)))
    return loss, float((logits.argmax(1).numpy() == y).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", help="a class-folder dataset in the cache")
    parser.add_argument("--cache", type=Path, help="its feature cache folder")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--sample", type=int, default=logistic.WALK_MAX_IMAGES, help="images the walk samples"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds: demo images in a temp folder, every code path, for tests",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        from headstart.synthetic import make_demo_dataset

        with tempfile.TemporaryDirectory() as tmp:
            data = make_demo_dataset(Path(tmp) / "demo", n_per_class=(12, 0, 0), size=64)
            measure(*features(data, Path(tmp) / "cache"), seeds=1, cap=40)
        return
    if args.data is None or args.cache is None:
        parser.error("DATA and --cache are required (or --smoke)")
    measure(*features(args.data, args.cache), seeds=args.seeds, cap=args.sample)


def measure(x: np.ndarray, y: np.ndarray, *, seeds: int, cap: int) -> None:
    """The three ways of choosing C, per seed, on a fresh 70/20/10 split of ``x``."""
    classes = int(y.max()) + 1
    print(f"{len(y):,} images, {x.shape[1]} dimensions, {classes} classes; sample of {cap:,}\n")
    print("seed  walk        fit s   C       final C  test loss  test acc")
    default = logistic.WALK_MAX_IMAGES
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(y))
        a, b = int(0.7 * len(y)), int(0.9 * len(y))
        tr, va, te = order[:a], order[a:b], order[b:]
        rows = {}
        for name, walk_cap in (("full", 10**12), ("sample", cap)):
            logistic.WALK_MAX_IMAGES = walk_cap
            started = time.perf_counter()
            fit = logistic.fit_linear(x[tr], y[tr], x[va], y[va], classes, seed=seed)
            rows[name] = (time.perf_counter() - started, fit.C, fit.final_C, fit.head)
        logistic.WALK_MAX_IMAGES = default
        sampled = min(cap, len(tr))
        per_image_C = rows["sample"][1] * sampled / (len(tr) + len(va))
        given = logistic.fit_linear(x[tr], y[tr], x[va], y[va], classes, C=per_image_C)
        rows["per image"] = (float("nan"), rows["sample"][1], given.final_C, given.head)
        for name, (seconds, C, final_C, head) in rows.items():
            loss, accuracy = test_scores(head, x[te], y[te])
            print(
                f"{seed:<5} {name:<11} {seconds:6.2f}  {C:<7.3g} {final_C or C:<8.3g} "
                f"{loss:.4f}     {accuracy:.4f}"
            )


if __name__ == "__main__":
    main()
