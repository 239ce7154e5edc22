"""Extraction speed, measured side by side in one run.

Prints, on the same 500x500 JPEG files with resnet18 (random init: speed does not depend on the
weights): the images per second of a pure forward pass on ready tensors, of headstart's extraction
from the JPEG files (decoding in threads, overlapping the forward pass), their ratio, and the
speedup
of a cached re-run over the cold one.

    .venv/bin/python benchmarks/extract.py [--images 256] [--batch-size 32] [--workers N]
    .venv/bin/python benchmarks/extract.py --smoke   # 8 images, once (tests run it)
        [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from headstart.backbones import Backbone, create_backbone
from headstart.features import FeatureCache, extract_features
from headstart.features.batches import default_num_threads


def make_jpegs(folder: Path, n: int, size: int = 500) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    base = rng.integers(0, 255, (size // 10, size // 10, 3), dtype=np.uint8)
    for i in range(n):
        small = np.roll(base, i, axis=0) ^ np.uint8(i % 255)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        path = folder / f"{i:05d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def pure_forward_rate(backbone: Backbone, tensors: torch.Tensor, batch_size: int) -> float:
    module = backbone.module.eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        module(tensors[:batch_size].contiguous(memory_format=torch.channels_last))  # warm-up
        start = time.perf_counter()
        for i in range(0, len(tensors), batch_size):
            module(tensors[i : i + batch_size].contiguous(memory_format=torch.channels_last))
        return len(tensors) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing pairs")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.batch_size, args.repeats = 8, 4, 1

    backbone = create_backbone(args.model, weights="none")
    workers = default_num_threads() if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        tensors = torch.stack([backbone.preprocess(Image.open(p).convert("RGB")) for p in paths])
        # Warm the DataLoader machinery once so every extraction timing starts alike.
        extract_features(
            backbone,
            paths[: args.batch_size],
            batch_size=args.batch_size,
            num_workers=workers,
            quiet=True,
        )
        # Interleaved repeats, medians: on a shared machine a single pair of timings can land
        # in different load; alternating the two keeps the ratio fair.
        forwards, extractions = [], []
        for _ in range(args.repeats):
            forwards.append(pure_forward_rate(backbone, tensors, args.batch_size))
            start = time.perf_counter()
            extract_features(
                backbone, paths, batch_size=args.batch_size, num_workers=workers, quiet=True
            )
            extractions.append(len(paths) / (time.perf_counter() - start))
        forward, extraction = float(np.median(forwards)), float(np.median(extractions))

        with FeatureCache(Path(tmp) / "cache") as cache:
            start = time.perf_counter()
            cold = extract_features(
                backbone,
                paths,
                cache=cache,
                batch_size=args.batch_size,
                num_workers=workers,
                quiet=True,
            )
            cold_s = time.perf_counter() - start
            start = time.perf_counter()
            warm = extract_features(
                backbone,
                paths,
                cache=cache,
                batch_size=args.batch_size,
                num_workers=workers,
                quiet=True,
            )
            warm_s = time.perf_counter() - start
        assert cold.n_computed == len(paths) and warm.n_computed == 0
        np.testing.assert_array_equal(cold.features, warm.features)

    print(
        f"model {args.model}, {args.images} JPEGs 500x500, batch {args.batch_size}, "
        f"{workers} decoding thread(s), {torch.get_num_threads()} torch threads, "
        f"median of {args.repeats} interleaved repeats"
    )
    print(f"pure forward on ready tensors : {forward:8.1f} img/s")
    print(f"extraction from JPEG files    : {extraction:8.1f} img/s")
    print(f"ratio extraction / forward    : {extraction / forward:8.2f}   (target >= 0.9)")
    print(f"cold run with cache writes    : {cold_s:8.2f} s")
    print(f"cached re-run                 : {warm_s:8.3f} s")
    print(f"cached speedup                : {cold_s / warm_s:8.1f}x  (target >= 50)")


if __name__ == "__main__":
    main()
