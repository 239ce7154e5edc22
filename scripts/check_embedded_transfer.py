"""Check that the embedded backbone transfers, and that its own preprocessing matters.

Writes the demo dataset (classes the backbone never saw) to a temporary folder, extracts pooled
features of the train and test images, fits a logistic regression on train and prints its test
accuracy for four feature extractors:

    (a) pretrained weights, the backbone's own preprocessing (its pretrained_cfg)
    (b) pretrained weights, ImageNet mean/std instead
    (c) pretrained weights, plain 0-1 rescale (no mean/std)
    (d) random-init weights of the same architecture, own preprocessing

It is self-contained on purpose (numpy, scikit-learn, timm, torch; of headstart only the
generator), so it checks the backbone folder and the data rather than headstart's own pipeline.
It exits 1 when (a) fails to beat (d) by 15 points or to beat (b) and (c).

    PYTHONPATH=src .venv/bin/python scripts/check_embedded_transfer.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import timm
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression

from headstart.synthetic import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BACKBONE = REPO / "src" / "headstart" / "backbones" / "embedded" / "headstart-tiny"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_GAP_OVER_RANDOM = 0.15


def load_split(root: Path, split: str) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / split / name).glob("*.jpg")):
            with Image.open(path) as im:
                images.append(im.convert("RGB"))
            labels.append(label)
    return images, np.array(labels), classes


def to_tensor(
    images: list[Image.Image],
    input_size: int,
    crop_pct: float,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> torch.Tensor:
    """timm's eval transform: resize shorter side to size/crop_pct, centre crop, normalise."""
    scale = int(round(input_size / crop_pct))
    batch = []
    for im in images:
        w, h = im.size
        if w < h:
            new = (scale, int(round(h * scale / w)))
        else:
            new = (int(round(w * scale / h)), scale)
        im = im.resize(new, Image.Resampling.BILINEAR) if new != im.size else im
        left = (im.size[0] - input_size) // 2
        top = (im.size[1] - input_size) // 2
        im = im.crop((left, top, left + input_size, top + input_size))
        batch.append(np.asarray(im, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


@torch.no_grad()
def features(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i : i + 128]) for i in range(0, len(x), 128)]).numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE)
    p.add_argument("--seed", type=int, default=0, help="seed of the demo dataset")
    args = p.parse_args(argv)
    start = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(0)

    pretrained = timm.create_model(f"local-dir:{args.backbone}", pretrained=True, num_classes=0)
    cfg = cast(dict[str, Any], pretrained.pretrained_cfg)  # timm sets it on every model
    size = int(cfg["input_size"][-1])
    crop_pct = float(cfg["crop_pct"])
    own = (tuple(cfg["mean"]), tuple(cfg["std"]))
    random_init = timm.create_model(f"local-dir:{args.backbone}", pretrained=False, num_classes=0)

    with tempfile.TemporaryDirectory() as tmp:
        root = make_demo_dataset(Path(tmp) / "demo", seed=args.seed)
        train_images, y_train, classes = load_split(root, "train")
        test_images, y_test, _ = load_split(root, "test")
    print(
        f"demo: {len(classes)} classes, {len(y_train)} train / {len(y_test)} test images; "
        f"backbone {args.backbone.name} ({cfg.get('architecture')}, "
        f"{size}px, mean {own[0]}, std {own[1]})"
    )

    rows = [
        ("a", "pretrained, own preprocessing", pretrained, own),
        ("b", "pretrained, ImageNet mean/std", pretrained, (IMAGENET_MEAN, IMAGENET_STD)),
        ("c", "pretrained, plain 0-1 rescale", pretrained, ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))),
        ("d", "random init, own preprocessing", random_init, own),
    ]
    acc: dict[str, float] = {}
    print(f"\n{'':3}{'features':34}{'test accuracy':>14}")
    for key, label, model, (mean, std) in rows:
        f_train = features(model, to_tensor(train_images, size, crop_pct, mean, std))
        f_test = features(model, to_tensor(test_images, size, crop_pct, mean, std))
        clf = LogisticRegression(max_iter=2000).fit(f_train, y_train)
        acc[key] = float(clf.score(f_test, y_test))
        print(f"({key}) {label:34}{acc[key]:>12.1%}")
    print(f"\nchance {1 / len(classes):.1%}; elapsed {time.perf_counter() - start:.0f}s")

    failures = []
    if acc["a"] - acc["d"] < MIN_GAP_OVER_RANDOM:
        failures.append(f"(a) beats random init by {acc['a'] - acc['d']:.1%}, needs 15 points")
    for key in ("b", "c"):
        if acc["a"] <= acc[key]:
            failures.append(f"(a) does not beat ({key})")
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("OK: pretrained features transfer, and only with their own preprocessing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
