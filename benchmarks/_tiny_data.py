"""Images and their ``headstart-tiny`` features for the benchmarks that score heads on them
(``benchmarks/openset.py``, ``benchmarks/noise.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def digit_images(
    root: Path, colour: bool = False, per_class: int | None = None
) -> tuple[list[Path], np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (8x8 scans) upscaled to 64 px as RGB: real
    images of one domain, ten classes. Black ink on white paper, or with ``colour`` a seeded
    random pen and paper per image (the same digits, harder features). ``per_class`` keeps the
    first that many of each digit (smoke runs); each kept image is the one a full run writes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = root / ("digits-colour" if colour else "digits")
    rng = np.random.default_rng(0)
    paths, labels = [], []
    seen = np.zeros(10, np.int64)
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        ink = (pixels / 16.0)[..., None]
        paper, pen = rng.integers(0, 256, (2, 3)) if colour else ([255] * 3, [0] * 3)
        if per_class is not None and seen[label] >= per_class:
            continue
        seen[label] += 1
        rgb = (np.array(paper) * (1 - ink) + np.array(pen) * ink).clip(0, 255).astype(np.uint8)
        path = out / f"digit_{label}" / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).resize((64, 64), Image.Resampling.BICUBIC).save(path)
        paths.append(path)
        labels.append(label)
    return paths, np.array(labels, np.int64)


def demo_images(root: Path, per_class: int | None = None) -> tuple[list[Path], np.ndarray]:
    """The demo dataset (8 classes of shapes x textures, 120 images a class), all splits; with
    ``per_class``, that many training images a class and no other split (smoke runs)."""
    from headstart.data import load_dataset
    from headstart.synthetic import make_demo_dataset

    if per_class is None:
        demo = make_demo_dataset(root / "demo")
    else:
        demo = make_demo_dataset(root / "demo", n_per_class=(per_class, 0, 0), size=64)
    dataset = load_dataset(demo, val_fraction=0.0, test_fraction=0.0)
    samples = [s for split in dataset.splits.values() for s in split]
    return [s.path for s in samples], np.array([s.label for s in samples], np.int64)


def far_images(root: Path, n: int = 300) -> tuple[list[Path], list[Path]]:
    """Images of no class: uniform noise (per pixel) and flat colours, ``n`` of each, 64 px."""
    from PIL import Image

    rng = np.random.default_rng(24)
    noise, flat = [], []
    for i in range(n):
        path = root / "noise" / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        noise.append(path)
        path = root / "flat" / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            colour = rng.integers(0, 256, 3, dtype=np.uint8)
            Image.fromarray(np.broadcast_to(colour, (64, 64, 3)).copy()).save(path)
        flat.append(path)
    return noise, flat


def tiny_features(paths: list[Path], cache: Path) -> np.ndarray:
    """Pooled features of the shipped backbone, through headstart's own feature cache."""
    from headstart import EMBEDDED_MODEL
    from headstart.backbones import create_backbone
    from headstart.features.extract import extract_cached

    backbone = create_backbone(EMBEDDED_MODEL)
    result = extract_cached(
        backbone, paths, use_cache=True, cache_dir=cache, desc="features", quiet=True
    )
    if list(result.paths) != paths:
        raise RuntimeError("an image could not be read")
    return np.asarray(result.features, np.float32)


def load_all(
    root: Path, per_class: int | None = None, far: int = 300
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Features and labels (-1: of no class) of every image set, cached as ``features.npz``.
    ``per_class`` keeps that many digits and demo images a class (None: all), ``far`` that many
    noise and flat images each (smoke runs shrink both)."""

    def build() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        digits, digit_y = digit_images(root, per_class=per_class)
        demo, demo_y = demo_images(root, per_class)
        noise, flat = far_images(root, far)
        cache = root / "cache"
        return {
            "digits": (tiny_features(digits, cache), digit_y),
            "demo": (tiny_features(demo, cache), demo_y),
            "noise": (tiny_features(noise, cache), np.full(len(noise), -1)),
            "flat": (tiny_features(flat, cache), np.full(len(flat), -1)),
        }

    return saved_sets(root / "features.npz", build)


def saved_sets(
    saved: Path, build: Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (features, labels) sets from ``saved`` (an ``.npz``), or built and saved there: a
    second run of a benchmark extracts nothing."""
    if saved.exists():
        with np.load(saved) as data:
            return {k[2:]: (data[k], data["y_" + k[2:]]) for k in data.files if k[:2] == "x_"}
    sets = build()
    arrays = {f"x_{k}": v[0] for k, v in sets.items()} | {f"y_{k}": v[1] for k, v in sets.items()}
    np.savez(saved, **arrays)  # type: ignore[arg-type]
    return sets


if __name__ == "__main__":
    import sys

    for name, (x, y) in load_all(Path(sys.argv[1])).items():
        print(name, x.shape, np.bincount(y + 1))
