"""Time and peak memory of each stage of a warm ``features`` run, from 10k to a million images.

Stages, each in a fresh process so its peak resident memory (``ru_maxrss``) is its own:

- ``discovery``: ``load_dataset`` on real files (class folders of tiny distinct JPEGs; real
  files only up to ``--max-files``, since creating a million files on a shared 2-core machine
  takes longer than the rest together);
- ``digests``: the cache's file check, ``FeatureCache.digests``, once files are known (one
  ``stat`` and one indexed lookup per file: what a warm run pays);
- ``features``: cache lookup of N digests and loading their 1024-d vectors into one array
  (``present`` + ``read_into``, what ``extract_features`` does on a warm run), from a cache of
  synthetic entries (a million by default: 4 GB of float32);
- ``head``: the default linear head's whole fit on N x 1024 features
  (``headstart.heads.fit_linear``: C chosen on the validation tenth, then refitted), the call the
  ``features`` strategy makes; the "epochs" column holds its L-BFGS iterations
  (``--head-epochs`` is kept for old command lines and ignored).

Prints a table per stage and the growth from the smallest size to the largest.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--max-files 200000]
        [--work DIR] [--head-epochs 1]
    .venv/bin/python benchmarks/scale.py --smoke   # 100 and 200 images, every stage (tests)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1024
CLASSES = 10
NAMESPACE = "scale-benchmark"
_CHUNK = 10_000
SIGNAL = 0.08  # class centres' spread against unit noise per dimension (Bayes ~83%)


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def make_files(root: Path, n: int) -> None:
    """``root/class_K/img_N.jpg``: one tiny JPEG with a distinct tail after its end marker (the
    decoder ignores it; every file has its own digest). Reused when already complete."""
    marker = root / f".complete-{n}"
    if marker.exists():
        return
    base = _tiny_jpeg()
    for k in range(CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = root / f"class_{i % CLASSES}" / f"img_{i:07d}.jpg"
        path.write_bytes(base + i.to_bytes(8, "big"))
    marker.touch()


def make_cache(folder: Path, n: int) -> None:
    """``n`` synthetic entries in a feature cache: digest ``i`` -> a 1024-d vector of class
    ``i % 10`` (unit noise around the class's centre; the Bayes accuracy is about 83%), so the
    head fit has something to learn and its C walk does the work it does on real features."""
    from headstart.features.cache import FeatureCache

    marker = folder / f".complete-classes-{n}"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    centers = (rng.standard_normal((CLASSES, DIM)) * SIGNAL).astype(np.float32)
    with FeatureCache(folder) as cache:
        for start in range(0, n, _CHUNK):
            block = rng.standard_normal((min(_CHUNK, n - start), DIM), dtype=np.float32)
            block += centers[(start + np.arange(len(block))) % CLASSES]
            cache.put_many(NAMESPACE, {_digest(start + i): row for i, row in enumerate(block)})
    marker.touch()


def _digest(i: int) -> str:
    return f"{i:064x}"


# ---------------------------------------------------------------------- stages (child processes)
def stage_discovery(work: Path, n: int) -> dict[str, float]:
    from headstart.data import load_dataset

    dataset = load_dataset(work / "files" / str(n))
    return {"images": sum(len(s) for s in dataset.splits.values())}


def stage_digests(work: Path, n: int) -> dict[str, float]:
    from headstart.features.cache import FeatureCache

    root = work / "files" / str(n)
    paths = sorted(root.glob("class_*/*.jpg"))
    with FeatureCache(work / f"digest-cache-{n}") as cache:
        started = time.perf_counter()
        cache.digests(paths)  # the first run hashes every file
        first = time.perf_counter() - started
        started = time.perf_counter()
        found, _ = cache.digests(paths)
        warm = time.perf_counter() - started
    return {"images": len(found), "first_s": first, "warm_s": warm}


def stage_features(work: Path, n: int) -> dict[str, float]:
    from headstart.features.cache import FeatureCache

    digests = [_digest(i) for i in range(n)]
    with FeatureCache(work / "cache") as cache:
        started = time.perf_counter()
        present = cache.present(NAMESPACE, digests, DIM)
        lookup = time.perf_counter() - started
        out = np.empty((n, DIM), dtype=np.float32)
        cache.read_into(NAMESPACE, {d: [i] for i, d in enumerate(digests)}, out)
    return {"images": len(present), "lookup_s": lookup, "gb": out.nbytes / 1e9}


def stage_head(work: Path, n: int, epochs: int) -> dict[str, float]:
    import torch

    from headstart.features.cache import FeatureCache
    from headstart.heads import fit_linear

    torch.set_num_threads(2)
    digests = [_digest(i) for i in range(n)]
    x = np.empty((n, DIM), dtype=np.float32)
    with FeatureCache(work / "cache") as cache:
        cache.read_into(NAMESPACE, {d: [i] for i, d in enumerate(digests)}, x)
    y = np.arange(n, dtype=np.int64) % CLASSES
    cut = n - n // 10
    loaded = time.perf_counter()
    del epochs  # the default linear head is solved (L-BFGS), not trained for epochs
    fit = fit_linear(x[:cut], y[:cut], x[cut:], y[cut:], CLASSES)
    return {
        "images": n,
        "fit_s": time.perf_counter() - loaded,
        "epochs": fit.iterations,
        "C": fit.C,
        "val_accuracy": fit.val_accuracy or 0.0,
    }


def child(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.stage == "discovery":
        result = stage_discovery(args.work, args.n)
    elif args.stage == "digests":
        result = stage_digests(args.work, args.n)
    elif args.stage == "features":
        result = stage_features(args.work, args.n)
    else:
        result = stage_head(args.work, args.n, args.head_epochs)
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = _peak_mb()
    print(json.dumps(result))


def _peak_mb() -> float:
    """This process's own peak resident memory. ``ru_maxrss`` would not do: Linux carries it
    over from the parent across ``exec``; ``VmHWM`` belongs to this process's address space."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------- driver
def run_stage(stage: str, work: Path, n: int, head_epochs: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", stage, "--n", str(n), "--work", str(work)]
    argv += ["--head-epochs", str(head_epochs)]
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _table(stage: str, rows: list[tuple[int, dict[str, float]]], extra: str) -> None:
    print(f"\n{stage}")
    print(f"| images | seconds | peak MB | {extra} |")
    print("|---|---|---|---|")
    for n, r in rows:
        value = r.get(extra, "")
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"| {n:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {shown} |")
    if len(rows) > 1:
        (n0, a), (n1, b) = rows[0], rows[-1]
        time_x, memory_x = b["seconds"] / a["seconds"], b["peak_mb"] / a["peak_mb"]
        print(
            f"growth {n0:,} -> {n1:,} ({n1 / n0:.0f}x images): time {time_x:.1f}x, "
            f"peak memory {memory_x:.1f}x"
        )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--max-files", type=int, default=200_000)
    parser.add_argument("--head-sizes", default="10000,100000")
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--work", type=Path, help="keep the files and the cache here, reused")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every stage, for tests"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.max_files, args.head_sizes, args.work = "100,200", 200, "200", None
    if args.child:
        args.stage = args.child
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        file_sizes = sorted({min(n, args.max_files) for n in sizes})
        for n in file_sizes:
            started = time.perf_counter()
            make_files(work / "files" / str(n), n)
            print(f"{n:,} files ready in {time.perf_counter() - started:.0f} s", flush=True)
        started = time.perf_counter()
        make_cache(work / "cache", max(sizes))
        print(f"{max(sizes):,} cache entries ready in {time.perf_counter() - started:.0f} s")
        for stage, extra, ns in (
            ("discovery", "images", file_sizes),
            ("digests", "warm_s", file_sizes),
            ("features", "lookup_s", sizes),
            ("head", "fit_s", [int(s) for s in args.head_sizes.split(",")]),
        ):
            rows = [(n, run_stage(stage, work, n, args.head_epochs)) for n in ns]
            _table(stage, rows, extra)


if __name__ == "__main__":
    main()
