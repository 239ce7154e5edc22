"""Extraction on a CPU by engine, whole processes side by side, against a plain timm eager loop.

For each backbone (random-init timm models at their own input sizes: speed does not depend on
the weights), on the same 500x500 JPEG files, images per second of:

- ``timm eager``: the loop a user writes without headstart: ``timm.create_model``, timm's own
  eval transform (``resolve_data_config`` + ``create_transform``), PIL decoding in the loop,
  ``torch.inference_mode()``, batches of ``--batch-size``;
- ``headstart <engine>``: ``extract_features(..., engine=ENGINE)`` (decoding in threads ahead of
  the forward pass), no feature cache, for ``torch``, ``onnxruntime``, ``openvino`` and ``auto``
  (the default), the engine's one-time export, parity check and (``auto``) measurement done by
  a preparing process first and timed apart (``setup s``).

Each contender runs in a process of its own with ``--threads`` torch threads (OpenMP's too), so
none inherits another's allocator or thread pools; the time is the extraction of all images,
decoding included (the process's imports and model creation are not). Repeats run round-robin
over the contenders, so load that comes and goes on a shared machine falls on all alike; the
median counts. ``parity`` is each engine's largest feature difference from ``headstart torch``
relative to its largest feature (eager's differ by preprocessing: headstart's fast JPEG decode).

The limit: the machine's measured float32 matmul GFLOP/s at ``--threads`` (2048^3, median of 5),
divided by the model's GFLOPs per image (``torch.utils.flop_counter``, 2 per multiply-add): what
the cores could do if the network ran at matmul speed.

    PYTHONPATH=src .venv/bin/python benchmarks/engines.py [--images 256] [--batch-size 32]
        [--threads 2] [--repeats 3] [--models resnet18 resnet50 ...]
    PYTHONPATH=src .venv/bin/python benchmarks/engines.py --smoke   # seconds: every code path
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = [
    "resnet18",
    "resnet50",
    "convnext_tiny",
    "vit_small_patch16_224",
    "efficientnet_b0",
    "mobilenetv3_large_100",
]
ENGINES = ["torch", "onnxruntime", "openvino", "auto"]


def make_jpegs(folder: Path, n: int, size: int = 500) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 255, (size // 10, size // 10, 3), dtype=np.uint8)
    paths = []
    for i in range(n):
        small = np.roll(base, i, axis=0) ^ np.uint8(i % 255)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- one contender
def run_contender(
    contender: str, model: str, folder: Path, batch_size: int, threads: int, out: Path
) -> dict[str, float]:
    """Extract every image of ``folder``; save the features to ``out``; return the seconds."""
    import torch

    torch.set_num_threads(threads)
    paths = sorted(folder.glob("*.jpg"))
    if contender == "eager":
        import timm
        from PIL import Image
        from timm.data import create_transform, resolve_data_config

        net = timm.create_model(model, pretrained=False, num_classes=0).eval()
        transform = create_transform(**resolve_data_config({}, model=net))
        start = time.perf_counter()
        rows = []
        with torch.inference_mode():
            for i in range(0, len(paths), batch_size):
                batch = [transform(Image.open(p).convert("RGB")) for p in paths[i : i + batch_size]]
                rows.append(net(torch.stack(batch)).numpy())
        seconds = time.perf_counter() - start
        features = np.concatenate(rows)
    else:
        from headstart.backbones import create_backbone
        from headstart.features import extract_features

        engine = contender.removeprefix("headstart-")
        backbone = create_backbone(model, weights="none")
        start = time.perf_counter()
        result = extract_features(backbone, paths, batch_size=batch_size, quiet=True, engine=engine)
        seconds = time.perf_counter() - start
        features = result.features
    np.save(out, features)
    return {"seconds": seconds, "images": float(len(paths))}


def _in_process(
    contender: str, model: str, folder: Path, args: argparse.Namespace, out: Path
) -> dict[str, float]:
    if args.smoke:  # one process: the worker's code, without paying for an interpreter each
        return run_contender(contender, model, folder, args.batch_size, args.threads, out)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    command = [
        sys.executable,
        __file__,
        "--worker",
        contender,
        "--models",
        model,
        "--folder",
        str(folder),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--out",
        str(out),
        *(["--auto-min-images", str(args.auto_min_images)] if args.auto_min_images else []),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{contender} on {model} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the limit
def matmul_gflops(threads: int, n: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def model_gflops(model: str) -> tuple[float, int]:
    """GFLOPs of one image's forward pass, and the input size."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from headstart.backbones import create_backbone

    backbone = create_backbone(model, weights="none")
    size = backbone.preprocess.input_size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        backbone.module.eval()(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9, int(size[0])


# --------------------------------------------------------------------------- the table
def measure(model: str, args: argparse.Namespace, folder: Path, work: Path) -> None:
    gflops, size = model_gflops(model)
    limit = args.machine_gflops / gflops
    contenders = ["eager", *(f"headstart-{e}" for e in args.engines)]
    setup: dict[str, float] = {}
    for engine in args.engines:
        if engine == "torch":
            continue
        start = time.perf_counter()  # the one-time export, check and measurement
        _in_process(f"headstart-{engine}", model, folder, args, work / "setup.npy")
        setup[f"headstart-{engine}"] = time.perf_counter() - start
    rates: dict[str, list[float]] = {c: [] for c in contenders}
    for _ in range(args.repeats):
        for contender in contenders:
            got = _in_process(contender, model, folder, args, work / f"{contender}.npy")
            rates[contender].append(got["images"] / got["seconds"])
    reference = np.load(work / "headstart-torch.npy") if "torch" in args.engines else None
    eager = statistics.median(rates["eager"])
    print(
        f"\n{model} ({size} px, {gflops:.2f} GFLOPs/img), {args.images} JPEGs, batch "
        f"{args.batch_size}, {args.threads} threads; limit {limit:.1f} img/s"
    )
    header = ("img/s", "x eager", "of limit", "parity", "setup s")
    print(f"{'contender':<22} " + " ".join(f"{h:>8}" for h in header))
    for contender in contenders:
        rate = statistics.median(rates[contender])
        parity = (
            "" if reference is None or contender == "eager" else _parity(work, contender, reference)
        )
        print(
            f"{contender:<22} {rate:>8.1f} {rate / eager:>8.2f} {rate / limit:>8.2f} "
            f"{parity:>8} {setup.get(contender, 0.0):>8.1f}"
        )
    if "auto" in args.engines:
        print(f"auto chose: {_auto_choice(Path(os.environ['HEADSTART_CACHE_DIR']), args.threads)}")


def _parity(work: Path, contender: str, reference: np.ndarray) -> str:
    got = np.load(work / f"{contender}.npy")
    return f"{float(np.abs(got - reference).max() / np.abs(reference).max()):.1e}"


def _auto_choice(cache: Path, threads: int) -> str:
    """What the latest ``auto`` measurement on disk chose, with the speeds it measured."""
    records = sorted((cache / "engines").glob(f"*.auto-{threads}-*.json"), key=os.path.getmtime)
    if not records:
        return "torch (no measurement: too few images, or no engine installed)"
    record = json.loads(records[-1].read_text())
    speeds = ", ".join(f"{k} {v:.1f}" for k, v in record.get("images_per_second", {}).items())
    return f"{record['chosen']} ({speeds} img/s on its batch of 8)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    parser.add_argument(
        "--auto-min-images",
        type=int,
        help="let auto measure from this many images (default: headstart's 256), for short runs",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny, in one process: for tests")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from headstart.features import engines

    least = engines.AUTO_MIN_IMAGES
    if args.auto_min_images is not None:
        engines.AUTO_MIN_IMAGES = args.auto_min_images
    if args.worker:
        got = run_contender(
            args.worker, args.models[0], args.folder, args.batch_size, args.threads, args.out
        )
        print(json.dumps(got))
        return
    cache = os.environ.get("HEADSTART_CACHE_DIR")
    if args.smoke:
        args.images, args.batch_size, args.repeats, args.threads = 4, 4, 1, 1
        args.models = ["test_resnet"]
        engines.AUTO_MIN_IMAGES = 1  # so that auto measures, as it does from 256 images
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # One engine store for every process of the run (not the user's cache).
        os.environ["HEADSTART_CACHE_DIR"] = str(work / "cache")
        try:
            folder = work / "images"
            make_jpegs(folder, args.images, size=64 if args.smoke else 500)
            args.machine_gflops = matmul_gflops(args.threads, 256 if args.smoke else 2048)
            print(f"float32 matmul: {args.machine_gflops:.1f} GFLOP/s on {args.threads} threads")
            for model in args.models:
                measure(model, args, folder, work)
        finally:
            engines.AUTO_MIN_IMAGES = least
            if cache is None:
                os.environ.pop("HEADSTART_CACHE_DIR", None)
            else:
                os.environ["HEADSTART_CACHE_DIR"] = cache


if __name__ == "__main__":
    main()
