"""Does `headstart compare` rank backbones as their test accuracies rank, and what does it cost?

Per task (the demo data, and scikit-learn's handwritten digits upscaled to 64 px with random pen
and paper colours, split 70/10/20 by headstart), several backbones:

- ``headstart-tiny``, the shipped pretrained backbone (112 px);
- random-init timm networks saved as ``local-dir:`` folders (seeded, so every run is the same):
  ``resnet18`` at 64 px, ``test_resnet`` at 32 px and ``test_vit`` at 32 px. Random features are
  far from useless on simple images, and their ranks are not obvious beforehand.

First ``ImageClassifier.compare`` runs on a cold feature cache (its wall time is the cost), then
each backbone is trained with ``--strategy features`` (reusing the cache) and evaluated on the
test split, which the comparison never saw. Printed per task: each backbone's held-out accuracy
and log-loss, its test accuracy, whether the held-out log-loss ranks the backbones as test
accuracy does (Spearman's rho), the recommended one's test accuracy against the best's, and the
comparison's wall time against extracting every image of the dataset once with each backbone
(a separate cold cache), as the issue's bound asks.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/compare.py [--tasks demo digits]
    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/compare.py --smoke   # tests run it
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import timm
import torch
from _tiny_data import digit_images
from safetensors.torch import save_file
from scipy.stats import spearmanr

from headstart import EMBEDDED_MODEL, ImageClassifier
from headstart.backbones import create_backbone
from headstart.data import load_dataset
from headstart.features.extract import extract_cached
from headstart.synthetic import make_demo_dataset

RANDOM = {"resnet18": 64, "test_resnet": 32, "test_vit": 32}
SMOKE_RANDOM = {"test_vit": 32}  # one random backbone: the others take the same path


def random_backbone(folder: Path, arch: str, size: int) -> str:
    """A seeded random-init timm network as a ``local-dir:`` folder with its input size."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    extra: dict[str, Any] = {"img_size": size} if "vit" in arch else {}
    model = timm.create_model(arch, num_classes=0, **extra)
    save_file(model.state_dict(), folder / "model.safetensors")
    config = {
        "architecture": arch,
        "num_classes": 0,
        **({"model_args": extra} if extra else {}),
        "pretrained_cfg": {
            "input_size": [3, size, size],
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return f"local-dir:{folder}"


def task_data(name: str, root: Path, per_class: int | None = None) -> Path:
    """The task's image folder: every image, or ``per_class`` images a class (smoke runs)."""
    if name == "demo":
        if per_class is None:
            return make_demo_dataset(root / "demo")
        return make_demo_dataset(root / "demo", n_per_class=(per_class, 2, 2), size=64)
    digit_images(root, colour=True, per_class=per_class)
    return root / "digits-colour"


def run(
    task: str, root: Path, models: list[str], per_class: int | None = None
) -> dict[str, object]:
    data = task_data(task, root, per_class)
    dataset = load_dataset(data, val_fraction=0.1, test_fraction=0.2, seed=0)
    cache = root / f"cache-{task}"
    clf = ImageClassifier(cache_dir=cache, quiet=True, seed=0, num_workers=0)
    t0 = time.perf_counter()
    comparison = clf.compare(dataset, models)
    compare_seconds = time.perf_counter() - t0
    every = [s.path for split in dataset.splits.values() for s in split]
    extract_seconds = 0.0
    for model in models:  # each backbone over every image once, cold, as a baseline
        backbone = create_backbone(model)
        t0 = time.perf_counter()
        extract_cached(
            backbone,
            every,
            use_cache=True,
            cache_dir=root / f"cold-{task}",
            desc="",
            quiet=True,
            num_workers=0,
        )
        extract_seconds += time.perf_counter() - t0
    test: dict[str, float] = {}
    for model in models:
        fitted = ImageClassifier(
            model, strategy="features", cache_dir=cache, quiet=True, num_workers=0, check_data=False
        ).fit(dataset)
        test[model] = float(fitted.evaluate(dataset, split="test")["accuracy"])
    scores = {s.model: s for s in comparison.scores}
    rho = spearmanr([-(scores[m].log_loss or 0.0) for m in models], [test[m] for m in models])
    best = max(test.values())
    print(f"\n{task}: {len(every)} images, {comparison.protocol}")
    print(f"{'backbone':<40} {'held-out acc':>12} {'log-loss':>9} {'img/s':>7} {'test acc':>9}")
    for m in models:
        s = scores[m]
        print(
            f"{Path(m).name if m.startswith('local-dir:') else m:<40} {s.accuracy:>12.4f} "
            f"{s.log_loss:>9.4f} {s.images_per_second:>7.1f} {test[m]:>9.4f}"
        )
    if comparison.pair is not None:
        print(f"pair {comparison.pair.model}: held-out accuracy {comparison.pair.accuracy:.4f}")
    print(
        f"recommended {comparison.recommended}: test {test[comparison.recommended]:.4f}, "
        f"best test {best:.4f}; Spearman rho (held-out log-loss vs test accuracy) "
        f"{rho.statistic:.2f}"
    )
    print(
        f"comparison {compare_seconds:.1f} s (cold cache) vs extracting every image once with "
        f"each backbone {extract_seconds:.1f} s"
    )
    return {"rho": rho.statistic, "gap": best - test[comparison.recommended]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["demo", "digits"])
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp one)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, seconds: every code path, for tests"
    )
    args = parser.parse_args(argv)
    random, per_class = RANDOM, None
    if args.smoke:
        random, per_class, args.tasks, args.keep = SMOKE_RANDOM, 5, ["demo", "digits"], None
    # Two threads for a measurement; a smoke keeps the count it was given (tests run smokes two
    # processes at a time on two cores), and the count is restored for whatever runs next in
    # this process.
    threads = torch.get_num_threads()
    torch.set_num_threads(threads if args.smoke else 2)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = args.keep or Path(tmp)
            models = [EMBEDDED_MODEL] + [
                random_backbone(root / "backbones" / arch, arch, size)
                for arch, size in random.items()
            ]
            for task in args.tasks:
                run(task, root, models, per_class)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
