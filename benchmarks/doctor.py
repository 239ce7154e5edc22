"""Speed of ``headstart doctor`` without a model, on many small varied JPEGs.

Writes N synthetic 64x64 JPEGs (varied shapes, textures, backgrounds and noise, so every hash
differs) in 10 class folders, plants a few exact and resized copies, then times ``diagnose`` on
them: one SHA-256, one full decode and one perceptual hash per image, plus the all-pairs
near-duplicate search. Prints images per second, total seconds, and what was found.

    .venv/bin/python benchmarks/doctor.py [--images 10000] [--workers N] [--keep DIR]
    .venv/bin/python benchmarks/doctor.py --smoke   # 80 images of 32 px (tests run it)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.doctor import diagnose
from headstart.synthetic import SHAPES, TEXTURES, make_image

_CLASSES = 10
_PLANTED = 20  # exact copies into another class, and resized copies into the same class


def make_dataset(root: Path, n: int, size: int) -> None:
    """``root/class_K/img_NNNNN.jpg`` plus planted duplicates; skipped if already complete."""
    marker = root / f".complete-{n}-{size}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    for k in range(_CLASSES):
        (root / f"class_{k}").mkdir(parents=True)
    for i in range(n):
        k = i % _CLASSES
        rng = np.random.default_rng([7, i])
        pixels = make_image(rng, SHAPES[k % len(SHAPES)], TEXTURES[k % len(TEXTURES)], size)
        Image.fromarray(pixels).save(root / f"class_{k}" / f"img_{i:05d}.jpg", quality=90)
    for j in range(_PLANTED):
        source = root / f"class_{j % _CLASSES}" / f"img_{j:05d}.jpg"
        other = root / f"class_{(j + 1) % _CLASSES}" / f"copy_{j:05d}.jpg"
        shutil.copy(source, other)
        with Image.open(source) as img:
            small = img.resize((size * 3 // 4, size * 3 // 4), Image.Resampling.BILINEAR)
            small.save(source.with_name(f"small_{j:05d}.jpg"), quality=75)
    marker.touch()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    parser.add_argument("--keep", type=Path, help="write the images here and reuse them")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.size = 4 * _PLANTED, 32

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "data"
        started = time.perf_counter()
        make_dataset(root, args.images, args.size)
        print(f"dataset: {root} (written in {time.perf_counter() - started:.1f} s)")

        started = time.perf_counter()
        report = diagnose(root, num_workers=args.workers, quiet=True)
        seconds = time.perf_counter() - started

    n = report.stats["images"]
    dupes = report.stats["duplicates"]
    workers = "auto" if args.workers is None else args.workers
    print(f"images:  {n} ({args.size}x{args.size} JPEG), workers {workers}")
    print(f"total:   {seconds:.2f} s, {n / seconds:.0f} images/s")
    print(
        f"found:   {dupes['exact_groups']} exact groups, {dupes['near_groups']} near groups "
        f"(planted {_PLANTED} + {_PLANTED}); findings {report.severity_counts()}"
    )


if __name__ == "__main__":
    main()
