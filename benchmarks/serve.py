"""`headstart serve` under concurrent clients: batched against unbatched against a naive loop.

Trains a run on the demo data (``headstart-tiny``, the shipped backbone, features strategy), then
serves it with ``headstart serve`` in a process of its own, twice: with batching (the default,
``--max-batch 32``) and without (``--max-batch 1``). For each, N concurrent clients (``--clients``,
default 1 4 16) post one image a request, each a demo image never seen before (a seed of its own),
and the script prints images/s, p50 and p99 latency and failed requests, side by side, with the
ratio of batched to unbatched. The baseline a hand-written server would be: one process calling
``ImageClassifier.predict_files`` with one image a call, in a loop (cache off, the same images).
Last, the batched server's resident memory after ``--warm`` requests and after each quarter of
``--requests-mem`` more (the issue asks 10,000; the default is smaller to stay short on a shared
machine).

    .venv/bin/python benchmarks/serve.py [--clients 1 4 16] [--requests 256] [--requests-mem 4000]
    .venv/bin/python benchmarks/serve.py --smoke   # a few requests, both servers (tests run it)

Everything stays on 127.0.0.1 and is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MODEL = "headstart-tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _train(root: Path, n_per_class: tuple[int, int, int] = (24, 8, 8)) -> Path:
    from headstart import ImageClassifier
    from headstart.synthetic import make_demo_dataset

    data = make_demo_dataset(root / "demo", n_per_class=n_per_class)
    run = root / "run"
    ImageClassifier(MODEL, strategy="features", quiet=True, cache_dir=root / "cache").fit(
        data
    ).save(run)
    return run


def _fresh_images(root: Path, n: int) -> list[Path]:
    """``n`` demo images of a seed the run never saw."""
    from headstart.synthetic import make_demo_dataset

    per_class = max(1, -(-n // 8))
    data = make_demo_dataset(root / "unseen", seed=12345, n_per_class=(per_class, 0, 0))
    return sorted(p for p in (data / "train").rglob("*.jpg"))[:n]


class Server:
    """``headstart serve RUN`` in a process of its own, on a free port."""

    def __init__(self, run: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "headstart", "serve", str(run), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "-q", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


async def _load(url: str, images: list[bytes], clients: int) -> dict[str, float]:
    """``clients`` concurrent clients post the images, one a request, until all are sent."""
    latencies: list[float] = []
    failed = 0
    todo = list(enumerate(images))

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal failed
        while todo:
            i, data = todo.pop()
            began = time.perf_counter()
            try:
                response = await http.post(
                    f"{url}/predict",
                    content=data,
                    headers={"Content-Type": "image/jpeg"},
                    params={"filename": f"{i}.jpg"},
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - began)
            failed += not ok

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - began
    latencies.sort()
    return {
        "img_s": len(images) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "failed": failed,
    }


def _naive_loop(run: Path, paths: list[Path]) -> float:
    """Images/s of ``predict_files`` with one image a call, in this process (cache off)."""
    from headstart import ImageClassifier

    clf = ImageClassifier.load(run, cache=False, quiet=True)
    clf.predict_files(paths[:2], top_k=1)  # warm: the model on its device, first-call costs
    began = time.perf_counter()
    for path in paths:
        clf.predict_files([path], top_k=1)
    return len(paths) / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=256, help="requests per measurement")
    parser.add_argument("--naive", type=int, default=64, help="images of the predict_files loop")
    parser.add_argument("--warm", type=int, default=100, help="requests before the first RSS")
    parser.add_argument("--requests-mem", type=int, default=4000, help="then this many more")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    train_counts = (24, 8, 8)
    if args.smoke:
        args.clients, args.requests, args.naive, args.warm, args.requests_mem = [1, 4], 16, 4, 4, 8
        train_counts = (4, 2, 2)
    one, five, _ = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {one:.1f}/{five:.1f} before the run")
    with tempfile.TemporaryDirectory(prefix="headstart-serve-bench-") as tmp:
        root = Path(tmp)
        run = _train(root, train_counts)
        paths = _fresh_images(root, args.requests)
        images = [p.read_bytes() for p in paths]
        naive = _naive_loop(run, paths[: args.naive])
        print(f"predict_files, one image a call, one process: {naive:.1f} img/s")
        results: dict[str, dict[int, dict[str, float]]] = {}
        for label, extra in (("batched", ()), ("unbatched", ("--max-batch", "1"))):
            server = Server(run, *extra)
            try:
                asyncio.run(_load(server.url, images[:16], 4))  # warm
                results[label] = {
                    n: asyncio.run(_load(server.url, images, n)) for n in args.clients
                }
                if label == "batched":
                    memory = _memory(server, images, args.warm, args.requests_mem)
            finally:
                server.stop()
        print()
        print(
            "clients  batched img/s  p50 ms  p99 ms  fail | unbatched img/s  p50 ms  p99 ms "
            " fail | ratio  vs loop"
        )
        for n in args.clients:
            b, u = results["batched"][n], results["unbatched"][n]
            print(
                f"{n:>7}  {b['img_s']:>13.1f}  {b['p50_ms']:>6.0f}  {b['p99_ms']:>6.0f}  "
                f"{b['failed']:>4.0f} | {u['img_s']:>15.1f}  {u['p50_ms']:>6.0f}  "
                f"{u['p99_ms']:>6.0f}  {u['failed']:>4.0f} | {b['img_s'] / u['img_s']:>5.2f}  "
                f"{b['img_s'] / naive:>7.2f}"
            )
        print()
        print(
            "batched server RSS: "
            + ", ".join(f"{mb:.0f} MB after {n} requests" for n, mb in memory)
        )
    one, five, _ = os.getloadavg()
    print(f"load {one:.1f}/{five:.1f} after the run")


def _memory(server: Server, images: list[bytes], warm: int, more: int) -> list[tuple[int, float]]:
    """(requests so far, RSS of the server in MB) after ``warm`` requests and after each
    quarter of ``more`` further ones (16 clients): growth that goes on is a leak, a step that
    levels off is allocator arenas and caches warming up."""

    def cycle(n: int) -> list[bytes]:
        return [images[i % len(images)] for i in range(n)]

    asyncio.run(_load(server.url, cycle(warm), 16))
    points = [(warm, _rss_mb(server.process.pid))]
    for _ in range(4):
        asyncio.run(_load(server.url, cycle(more // 4), 16))
        points.append((points[-1][0] + more // 4, _rss_mb(server.process.pid)))
    return points


if __name__ == "__main__":
    main()
