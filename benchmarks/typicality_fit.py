"""What fitting the typicality score costs at a few sizes (random features, one process).

The fit runs at the end of every training run, on cached features, so it must stay seconds:

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/typicality_fit.py
    .venv/bin/python benchmarks/typicality_fit.py --smoke   # two tiny sizes, seconds (tests run it)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from headstart.heads.typicality import fit_typicality

SIZES = ((5_000, 768, 10), (5_000, 2_048, 10), (50_000, 768, 100))
SMOKE_SIZES = ((300, 16, 3), (400, 32, 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    print("| images | dimensions | classes | fit s | score 1,000 images s |")
    print("|---|---|---|---|---|")
    for n, d, k in SMOKE_SIZES if args.smoke else SIZES:
        rng = np.random.default_rng(0)
        y = rng.integers(0, k, n)
        x = rng.normal(size=(n, d)).astype(np.float32) + y[:, None] * 0.01
        started = time.perf_counter()
        typicality = fit_typicality(x, y)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        typicality.typicality(x[:1000])
        score = time.perf_counter() - started
        print(f"| {n:,} | {d:,} | {k} | {fit:.1f} | {score:.2f} |", flush=True)


if __name__ == "__main__":
    main()
