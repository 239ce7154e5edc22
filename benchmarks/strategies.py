"""Every transfer strategy with its defaults on one dataset, side by side in one table.

Each strategy runs in its own process (so its peak memory is its own) with a fresh feature cache
(so its wall time includes everything it costs from nothing), except the row "features (cached)",
which repeats `features` on the cache the first run filled: what a second experiment costs.

    .venv/bin/python benchmarks/strategies.py [DATA] [--model M] [--epochs N] [--only S ...]
        [--seeds N] [--train-per-class N] [--val-per-class N] [--refit]

DATA defaults to the demo dataset (generated into demo-data/ when missing; with
--train-per-class N, a demo dataset with N training images per class, same val and test sizes;
--val-per-class N sets the validation images a class too). With --refit the rows are augment and
finetune each with and without their refit on train + val (``--refit trainval``, ``--refit
none``), and the table adds the test log-loss and how many end-to-end epochs the refit ran;
the model defaults to the shipped headstart-tiny when present, else timm's test_resnet with random
weights (a smoke run). With --seeds N every row runs with seeds 0..N-1 and shows the mean (the
test accuracy also its standard deviation): on a test split of a few hundred images, one seed's
difference of a point is noise.

    .venv/bin/python benchmarks/strategies.py --smoke   # every row, tiny data, one epoch (tests)

The smoke runs the rows of the main table in its own process, one after another (a fresh process
per row costs seconds of imports each, and a row's peak memory is not what a smoke checks), and
the refit row in a process of its own, so the per-row process of a measuring run still runs; a
row that fails fails the smoke.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("features", "features", {}),
    ("features (cached)", "features", {}),
    ("features --aug-views 4", "features", {"aug_views": 4}),
    ("augment", "augment", {}),
    ("finetune", "finetune", {}),
    ("scratch", "scratch", {}),
    ("auto", "auto", {}),
)
# --refit: the end-to-end strategies with their refit on train + val and without it, both forced
# (the default refits only where validation has at least half as many images as train).
REFIT_ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("augment --refit none", "augment", {"refit": False}),
    ("augment --refit trainval", "augment", {"refit": True}),
    ("finetune --refit none", "finetune", {"refit": False}),
    ("finetune --refit trainval", "finetune", {"refit": True}),
)


def _default_model() -> tuple[str, str]:
    from headstart.backbones._local import EMBEDDED_DIR

    if (EMBEDDED_DIR / "headstart-tiny" / "model.safetensors").is_file():
        return "headstart-tiny", "default"
    return "test_resnet", "none"


def _default_data(
    folder: Path, train_per_class: int | None, val_per_class: int | None = None
) -> Path:
    try:
        from headstart.synthetic import make_demo_dataset
    except ImportError:  # pragma: no cover - synthetic ships with headstart
        return _colour_shapes(folder)
    if train_per_class is None and val_per_class is None:
        return make_demo_dataset(folder)
    train, val = train_per_class or 60, val_per_class or 20
    name = f"{folder.name}-train{train}" + (f"-val{val}" if val_per_class else "")
    return make_demo_dataset(folder.with_name(name), n_per_class=(train, val, 40))


def _colour_shapes(folder: Path) -> Path:
    """A small colour/shape dataset, for checkouts without headstart.synthetic."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("val", 15), ("test", 15)):
        for name in ("red_circle", "red_square", "blue_circle", "blue_square"):
            out = folder / split / name
            out.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(0, 80, 3)))
                draw = ImageDraw.Draw(image)
                x, y = (int(v) for v in rng.integers(25, 70, 2))
                r = int(rng.integers(12, 24))
                colour = (220, 40, 40) if name.startswith("red") else (40, 60, 220)
                box = (x - r, y - r, x + r, y + r)
                (draw.ellipse if name.endswith("circle") else draw.rectangle)(box, fill=colour)
                image.save(out / f"{i:03d}.jpg", quality=90)
    return folder


def _run(
    results: mp.Queue | queue.SimpleQueue,
    model: str,
    weights: str,
    data: str,
    cache: str,
    strategy: str,
    extra: dict,
) -> None:
    from headstart import ImageClassifier

    if strategy == "features":
        extra = {k: v for k, v in extra.items() if k != "epochs"}  # the linear head has none
    started = time.monotonic()
    clf = ImageClassifier(
        model, weights=weights, strategy=strategy, cache_dir=cache, quiet=True, **extra
    )
    clf.fit(data)
    wall = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    refit = (clf.details_ or {}).get("refit") or {}
    # A head refitted on train + val has no val metrics of its own: the held-out accuracy of its
    # selection step stands in, as scripts/demo.py shows it.
    val = clf.metrics_.get("val", {}).get("accuracy")
    if val is None:
        val = (clf.selection_ or {}).get("val_accuracy")
    results.put(
        {
            "val": val,
            "test": clf.metrics_.get("test", {}).get("accuracy"),
            "test_loss": clf.metrics_.get("test", {}).get("log_loss"),
            "refit_epochs": refit.get("epochs") if refit.get("done") else None,
            "wall": wall,
            "epochs": len(clf.history_),
            "epoch_seconds": clf.epoch_seconds_,
            "peak_mb": peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20,
            "chosen": clf.advice_.explain().splitlines()[0] if clf.advice_ else None,
        }
    )


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the runs of several seeds: means, plus the spread of the test accuracy."""
    import numpy as np

    row = dict(runs[0])
    for key in ("val", "test", "test_loss", "wall", "peak_mb"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = float(np.mean(values)) if values else None
    tests = [r["test"] for r in runs if r.get("test") is not None]
    row["test_std"] = float(np.std(tests)) if len(tests) > 1 else None
    row["epochs"] = round(float(np.mean([r["epochs"] for r in runs])))
    refits = [r["refit_epochs"] for r in runs if r.get("refit_epochs") is not None]
    row["refit_epochs"] = float(np.mean(refits)) if refits else None
    row["epoch_seconds"] = [t for r in runs for t in r["epoch_seconds"]]
    return row


def _summary(results: dict[str, dict[str, Any]]) -> None:
    """The comparisons the strategies issue asks for, as ratios measured in this run."""

    def per_epoch(label: str) -> float | None:
        seconds = results.get(label, {}).get("epoch_seconds") or []
        return sum(seconds) / len(seconds) if seconds else None

    feats, aug = per_epoch("features"), per_epoch("augment")
    if feats and aug:
        print(f"features trains its head {aug / feats:.0f}x faster per epoch than augment")
    views, plain, augment = (
        results.get(k) for k in ("features --aug-views 4", "features", "augment")
    )
    if views and plain and augment:
        print(
            f"--aug-views 4 vs features: test {views['test'] - plain['test']:+.3f}, "
            f"val {views['val'] - plain['val']:+.3f}, at {views['wall'] / augment['wall']:.2f} "
            "of augment's wall time"
        )
    tests = {k: r["test"] for k, r in results.items() if k != "auto" and r.get("test") is not None}
    if "auto" in results and tests:
        best = max(tests, key=lambda k: tests[k])
        gap = tests[best] - results["auto"]["test"]
        print(f"auto is {100 * gap:.1f} points below the best strategy's test accuracy ({best})")


def _run_in_process(
    context: Any, model: str, weights: str, data: Path, cache: Path, strategy: str, options: dict
) -> dict[str, Any] | None:
    """One fit in a fresh process (its own peak memory); None when it failed."""
    results = context.Queue()
    proc = context.Process(
        target=_run, args=(results, model, weights, str(data), str(cache), strategy, options)
    )
    proc.start()
    proc.join()
    return results.get() if proc.exitcode == 0 else None


def _run_here(
    model: str, weights: str, data: Path, cache: Path, strategy: str, options: dict
) -> dict[str, Any]:
    """One fit in this process (a smoke run): no imports paid again, and a failure raises."""
    results: queue.SimpleQueue = queue.SimpleQueue()
    _run(results, model, weights, str(data), str(cache), strategy, options)
    return dict(results.get())


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0])
    return f"{'-':>{width}}" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="dataset folder (default: the demo dataset)")
    parser.add_argument("--model", help="backbone (default: headstart-tiny, else test_resnet)")
    parser.add_argument("--weights", help="default, none or a file (default: the model's)")
    parser.add_argument("--epochs", type=int, help="cap every strategy's epochs (smoke runs)")
    parser.add_argument("--only", nargs="+", help="run only these rows (e.g. features finetune)")
    parser.add_argument("--workers", type=int, help="decoding workers")
    parser.add_argument("--seeds", type=int, default=1, help="runs per row, seeds 0..N-1")
    parser.add_argument(
        "--train-per-class", type=int, help="demo dataset with this many training images a class"
    )
    parser.add_argument(
        "--val-per-class", type=int, help="demo dataset with this many validation images a class"
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="augment and finetune with and without their refit on train + val",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny data, one epoch: for tests")
    args = parser.parse_args(argv)
    if not args.smoke:
        compare(args, parser)
        return
    from headstart.synthetic import make_demo_dataset

    with tempfile.TemporaryDirectory() as tmp:
        args.data = str(make_demo_dataset(Path(tmp) / "demo", n_per_class=(4, 2, 2), size=64))
        args.epochs, args.seeds = 1, 1
        failed = compare(args, parser, in_process=True)
        args.refit, args.only = True, ["augment --refit trainval"]  # a refit row, its columns
        failed += compare(args, parser)  # in a process of its own, as a measuring run's rows
    if failed:
        raise SystemExit(f"rows failed: {', '.join(failed)}")


def compare(
    args: argparse.Namespace, parser: argparse.ArgumentParser, in_process: bool = False
) -> list[str]:
    """Every row ``args`` asks for, each in its own process (in this one with ``in_process``:
    smoke runs); the table and the summary. Returns the labels of the rows that failed."""

    model, weights = _default_model()
    model, weights = args.model or model, args.weights or (weights if not args.model else "default")
    if args.data and (args.train_per_class or args.val_per_class):
        parser.error("--train/val-per-class size the demo dataset; they do not apply to DATA")
    data = (
        Path(args.data)
        if args.data
        else _default_data(Path("demo-data"), args.train_per_class, args.val_per_class)
    )
    extra: dict[str, Any] = {}
    if args.epochs:
        extra["epochs"] = args.epochs
    if args.workers is not None:
        extra["num_workers"] = args.workers
    table = REFIT_ROWS if args.refit else ROWS
    rows = [r for r in table if not args.only or r[0].split()[0] in args.only or r[0] in args.only]

    context = mp.get_context("spawn")  # a clean process per strategy: its own peak memory
    print(f"model {model} (weights {weights}), data {data}, seeds 0..{args.seeds - 1}")
    header = f"{'strategy':<26} {'val acc':>8} {'test acc':>15} {'wall s':>8} {'epochs':>7}"
    refit_header = f" {'test loss':>9} {'refit ep':>8}" if args.refit else ""
    print(f"{header} {'s/epoch':>8} {'peak MB':>8}{refit_header}")
    results: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, strategy, options in rows:
            runs = []
            for seed in range(args.seeds):
                cache = Path(tmp) / f"{label}-seed{seed}"
                if label in ("features", "features (cached)"):
                    cache = Path(tmp) / f"shared-seed{seed}"
                fit_options = {**extra, **options, "seed": seed}
                run = (
                    _run_here(model, weights, data, cache, strategy, fit_options)
                    if in_process
                    else _run_in_process(
                        context, model, weights, data, cache, strategy, fit_options
                    )
                )
                if run is None:
                    print(f"{label:<26} failed with seed {seed}")
                    failed.append(label)
                    break
                runs.append(run)
            if len(runs) < args.seeds:
                continue
            r = results[label] = _mean(runs)
            per_epoch = (
                sum(r["epoch_seconds"]) / len(r["epoch_seconds"]) if r["epoch_seconds"] else None
            )
            spread = f" ±{r['test_std']:.3f}" if r["test_std"] is not None else ""
            refit_cells = (
                f" {_fmt(r['test_loss'], '9.4f')} {_fmt(r['refit_epochs'], '8.1f')}"
                if args.refit
                else ""
            )
            print(
                f"{label:<26} {_fmt(r['val'], '8.3f')} {_fmt(r['test'], '9.3f')}{spread:>6} "
                f"{r['wall']:8.1f} {r['epochs']:7d} {_fmt(per_epoch, '8.3f')} "
                f"{r['peak_mb']:8.0f}{refit_cells}"
            )
            if r["chosen"]:
                print(f"{'':<26} auto chose {r['chosen']}")
    _summary(results)
    print(
        "wall s: everything from a cold cache (features (cached): the same run again); s/epoch: "
        "one head epoch on cached features for features, one end-to-end epoch otherwise "
        "(finetune's epochs column includes its head-only epochs)."
    )
    return failed


if __name__ == "__main__":
    main()
