"""The forward pass of feature extraction on a CPU: which way of running it is fastest, at parity.

For each backbone (the shipped ``headstart-tiny`` at 112 px, and random-init timm ``resnet18``
and ``convnext_tiny`` at 224 px: speed does not depend on the weights), on one fixed batch of
ready tensors (decoding is not measured here; ``benchmarks/extract.py`` measures it), the images
per second of:

- ``eager``: ``torch.inference_mode()``, contiguous input (the plain timm loop);
- ``channels_last``: the same with the model and input in channels-last memory (what
  headstart's extraction does today on a CPU);
- ``compile``: ``torch.compile`` (inductor) of the channels-last model, its compile time apart;
- ``bf16``: channels-last under ``torch.autocast("cpu", torch.bfloat16)``;
- ``onnxruntime``: the model exported with ``torch.onnx.export`` and run by ONNX Runtime's CPU
  provider, its export time apart.

Engines are timed round-robin, a repeat of each in turn, so load that comes and goes on a shared
machine falls on all of them alike; the median repeat counts. Parity is the largest difference to
eager's features relative to their largest magnitude; an engine is usable when it is below 1e-4.

    PYTHONPATH=src .venv/bin/python benchmarks/engines.py [--threads 2] [--batch-size 32]
        [--repeats 5] [--models headstart-tiny resnet18 convnext_tiny] [--no-compile]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from headstart.backbones import create_backbone

PARITY = 1e-4


def _backbone(name: str) -> tuple[torch.nn.Module, int]:
    if name == "headstart-tiny":
        b = create_backbone(name)
    else:
        b = create_backbone(name, weights="none")
    return b.module.eval(), int(b.preprocess.input_size[0])


def engines(
    model: torch.nn.Module, x: torch.Tensor, *, compile_too: bool, threads: int
) -> dict[str, tuple[Callable[[], np.ndarray], float]]:
    """(run the batch, seconds it took to prepare) for each engine."""
    import copy

    eager = model
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def run(m: Callable[[torch.Tensor], torch.Tensor], inp: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return m(inp).float().numpy()

    def bf16() -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return cl(x_cl).float().numpy()

    out: dict[str, tuple[Callable[[], np.ndarray], float]] = {
        "eager": (lambda: run(eager, x), 0.0),
        "channels_last": (lambda: run(cl, x_cl), 0.0),
        "bf16": (bf16, 0.0),
    }
    if compile_too:
        t0 = time.perf_counter()
        compiled = torch.compile(cl)
        run(compiled, x_cl)  # compiles
        out["compile"] = (lambda: run(compiled, x_cl), time.perf_counter() - t0)
    try:
        import onnxruntime as ort
    except ImportError:
        return out
    t0 = time.perf_counter()
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (x,),
        buf,  # type: ignore[arg-type]  # a file object works too; the stubs say paths only
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy()}
    out["onnxruntime"] = (
        lambda: session.run(["y"], feed)[0],
        time.perf_counter() - t0,
    )
    return out


def measure(name: str, args: argparse.Namespace) -> None:
    model, size = _backbone(name)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, size, size)
    runs = engines(model, x, compile_too=args.compile, threads=args.threads)
    reference = runs["eager"][0]()
    scale = float(np.abs(reference).max()) or 1.0
    parity = {k: float(np.abs(f() - reference).max()) / scale for k, (f, _) in runs.items()}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, (f, _) in runs.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    base = args.batch_size / statistics.median(times["eager"])
    print(f"\n{name} ({size} px, batch {args.batch_size}, {args.threads} threads)")
    print(f"{'engine':<14} {'img/s':>8} {'x eager':>8} {'parity':>9} {'setup s':>8}  usable")
    for k in runs:
        rate = args.batch_size / statistics.median(times[k])
        ok = "yes" if parity[k] < PARITY else "no"
        print(
            f"{k:<14} {rate:>8.1f} {rate / base:>8.2f} {parity[k]:>9.1e} {runs[k][1]:>8.1f}  {ok}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--models", nargs="+", default=["headstart-tiny", "resnet18", "convnext_tiny"]
    )
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds, no compile (minutes): for tests"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.batch_size, args.repeats, args.compile = ["test_resnet"], 2, 1, False
    torch.set_num_threads(args.threads)
    for name in args.models:
        measure(name, args)


if __name__ == "__main__":
    main()
