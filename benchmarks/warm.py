"""Cold and warm ``headstart train --strategy features`` side by side, and the import floor.

Writes N small synthetic JPEGs (varied shapes and textures, 64 px, 10 classes; the doctor
benchmark's generator), then runs the real command in fresh processes, as a user would:

- the import floor, ``python -c "import torch, timm"`` with the interpreter's final garbage
  collections skipped (``gc.freeze`` as the last exit handler), as the ``headstart`` command
  skips them (``headstart.cli.main.entry``): what any process using them pays, like for like,
  measured beside each warm run (the machine's speed drifts). Without the skip the floor would
  include about 2 s of exit collection that headstart never pays, and "above the floor" would
  read about 2 s too low;
- a cold run (empty feature cache: every image hashed, decoded once, run through the backbone);
- warm runs (same data, same cache, a new run folder each time): the time above the floor is
  what headstart itself costs once everything is cached.

With ``--scale K`` it repeats the cold and warm runs on K times the images, so the warm excess
of the two sizes can be compared: as a ratio, and as the seconds each added image costs (the
ratio alone rewards a slow start: the smaller the fixed cost, the larger the ratio of the same
per-image cost). Prints one table.

    .venv/bin/python benchmarks/warm.py [--images 5000] [--scale 20] [--repeats 3] [--keep DIR]
    .venv/bin/python benchmarks/warm.py --smoke   # 30 images, once: every code path, for tests
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.synthetic import SHAPES, TEXTURES, make_image

_CLASSES = 10
# The floor, like for like with ``headstart.cli.main.entry``: gc.freeze registered before the
# imports, so it runs after every exit handler they register and the final collections find
# nothing to walk.
FLOOR_CODE = "import atexit, gc; atexit.register(gc.freeze); import torch, timm"


def make_dataset(root: Path, n: int, size: int = 64) -> Path:
    """``root/class_K/img_NNNNNNN.jpg``, written once and reused (a marker says complete)."""
    marker = root / f".complete-{n}-{size}"
    if marker.exists():
        return root
    for k in range(_CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        k = i % _CLASSES
        path = root / f"class_{k}" / f"img_{i:07d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng([7, i])
        pixels = make_image(rng, SHAPES[k % len(SHAPES)], TEXTURES[k % len(TEXTURES)], size)
        Image.fromarray(pixels).save(path, quality=90)
    marker.touch()
    return root


CPU: list[float] = []  # CPU seconds (user + system) of each timed command, in order


def timed(argv: list[str]) -> float:
    """Wall seconds of a command; its CPU seconds go to ``CPU`` (steadier on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return wall


def train(data: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "headstart",
        "train",
        str(data),
        "--model",
        "headstart-tiny",
        "--strategy",
        "features",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "-q",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--scale", type=int, default=0, help="also K times the images (0: not)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the images here and reuse them")
    parser.add_argument(
        "--smoke", action="store_true", help="30 images, one repeat, no scale (for tests)"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.scale, args.repeats = 30, 0, 1

    floor_argv = [sys.executable, "-c", FLOOR_CODE]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keep = args.keep or work / "data"
        rows = []
        sizes = [args.images] + ([args.images * args.scale] if args.scale else [])
        for n in sizes:
            started = time.perf_counter()
            data = make_dataset(keep / str(n), n)
            written = time.perf_counter() - started
            cache = work / f"cache-{n}"
            cold = timed(train(data, work / f"cold-{n}", cache))
            # The floor is measured beside each warm run, in turn: a shared machine's speed
            # drifts by a third within minutes, and the excess is the difference of the two.
            pairs = []
            for i in range(args.repeats):
                floor = timed(floor_argv), CPU[-1]
                warm = timed(train(data, work / f"warm-{n}-{i}", cache)), CPU[-1]
                pairs.append((floor, warm))
            row = [statistics.median(p[k][j] for p in pairs) for k in (0, 1) for j in (0, 1)]
            rows.append((n, cold, *row))
            print(f"{n} images: written {written:.0f} s, cold {cold:.1f} s, warm {row[2]:.2f} s")
        print(
            "\n| images | cold run | import floor (wall, CPU) | warm run (wall, CPU) | warm above "
            "the floor (wall) | CPU above the floor's CPU | excess vs the first (wall, CPU) | "
            "each image past the first size (wall, CPU) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        first_wall, first_cpu = rows[0][4] - rows[0][2], rows[0][5] - rows[0][3]
        for n, cold, floor_wall, floor_cpu, warm_wall, warm_cpu in rows:
            wall, cpu = warm_wall - floor_wall, warm_cpu - floor_cpu
            added = n - rows[0][0]
            us_wall, us_cpu = (
                (x * 1e6 / added if added else 0.0) for x in (wall - first_wall, cpu - first_cpu)
            )
            per_image = f"{us_wall:.0f} us, {us_cpu:.0f} us" if added else "-"
            print(
                f"| {n:,} | {cold:.1f} s | {floor_wall:.2f} s, {floor_cpu:.2f} s | "
                f"{warm_wall:.2f} s, {warm_cpu:.2f} s | {wall:.2f} s | {cpu:.2f} s | "
                f"{wall / first_wall:.1f}x, {cpu / first_cpu:.1f}x | {per_image} |"
            )


if __name__ == "__main__":
    main()
