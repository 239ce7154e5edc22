"""Pretrain the embedded ``headstart-tiny`` backbone on the procedurally generated source task.

headstart has to demonstrate transfer learning offline, where no pretrained weights can be
downloaded. So it ships one small backbone of its own, pretrained here on the source task of
``headstart.synthetic`` (shape x texture classes on cluttered backgrounds), and written in timm's
``local-dir`` layout so that the rest of headstart treats it like any other timm model:

    timm.create_model("local-dir:src/headstart/backbones/embedded/headstart-tiny",
                      pretrained=True, num_classes=0)

The recipe is an ordinary supervised pretraining recipe in miniature: RandomResizedCrop,
horizontal flip and colour jitter, SGD with momentum, warmup then cosine decay, label smoothing.
Its input normalisation is deliberately *not* ImageNet's, so that code which ignores the weights'
own ``pretrained_cfg`` (user story 1) visibly loses accuracy with this backbone too.

Everything is seeded (data from integer seeds, ``torch.manual_seed``, a fixed thread count), so a
rerun on the same software gives the same weights. It takes about 10 minutes on 2 CPU cores:

    PYTHONPATH=src .venv/bin/python scripts/train_embedded_backbone.py

Beside the trunk it writes the pretraining classifier (``pretrained_classifier.safetensors``:
``fc.weight``, ``fc.bias`` over ``headstart_pretraining.classes``), which ``headstart doctor``'s
pretrained-view check runs on a user's images. The first shipped trunk was written before the
script kept its head, so ``--classifier-only`` fits one on the frozen shipped trunk instead,
without touching ``model.safetensors``: multinomial logistic regression (full-batch L-BFGS, a
fixed L2) on the trunk's features of the same source training images at the evaluation
preprocessing, scored on the same validation images. Deterministic, about a minute:

    PYTHONPATH=src .venv/bin/python scripts/train_embedded_backbone.py --classifier-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from headstart.synthetic import SOURCE_CLASSES, class_name, make_source_batch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "headstart" / "backbones" / "embedded" / "headstart-tiny"

ARCHITECTURE = "resnet18"
# A quarter-width, one-block-per-stage ResNet: about 0.7 M parameters (under 3 MB in float32),
# fast enough to pretrain on a laptop CPU, and still a plain timm ResNet with BatchNorm, so
# freezing, BatchNorm handling and fine-tuning behave as they do with real backbones.
MODEL_ARGS: dict[str, Any] = {
    "layers": [1, 1, 1, 1],
    "channels": [24, 48, 96, 192],
    "stem_width": 24,
}
IMAGE_SIZE = 128  # size of the generated images, as in the demo data
INPUT_SIZE = 112  # network input: RandomResizedCrop in training, resize + centre crop at eval
CROP_PCT = INPUT_SIZE / IMAGE_SIZE  # 0.875: resize to 128, centre-crop 112, as timm does
# Far from ImageNet's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) on purpose: feeding this
# backbone ImageNet-normalised or 0-1 inputs shifts every channel out of the range its BatchNorm
# statistics were learned on, and costs accuracy, just as it does with real weights.
MEAN = (0.6, 0.35, 0.5)
STD = (0.12, 0.3, 0.2)
SCALE = (0.45, 1.0)  # RandomResizedCrop area range; below this, crops often cut the object away
TRAIN_SEED, VAL_SEED = 1, 2  # seeds of the source train / val images (disjoint images)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="backbone folder to write")
    p.add_argument("--seed", type=int, default=0, help="torch seed: init, shuffling, augmentation")
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--train-per-class", type=int, default=200)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument(
        "--refresh",
        type=float,
        default=0.25,
        help="fraction of training images replaced by new ones after each epoch",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--classifier-only",
        action="store_true",
        help="keep the shipped trunk; fit and write only its source-class classifier",
    )
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------
# Data


def generate(seed: int, indices: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """Source images as a uint8 tensor [N, 3, H, W]."""
    pixels = make_source_batch(seed, indices.tolist(), labels.tolist(), IMAGE_SIZE)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop(scale SCALE, ratio 3/4-4/3), h-flip, colour jitter; batched on CPU.

    The crops are taken with ``roi_align`` (bilinear, 2x2 samples per output pixel), which does
    per-image crops of a whole batch in one call; the result is float in [0, 1] before
    normalisation.
    """
    n = images.shape[0]
    x = images.float() / 255.0
    area = torch.empty(n).uniform_(SCALE[0], SCALE[1], generator=gen) * IMAGE_SIZE**2
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    ratio = torch.exp(log_ratio)
    w = torch.sqrt(area * ratio).clamp(max=IMAGE_SIZE)
    h = torch.sqrt(area / ratio).clamp(max=IMAGE_SIZE)
    x0 = torch.rand(n, generator=gen) * (IMAGE_SIZE - w)
    y0 = torch.rand(n, generator=gen) * (IMAGE_SIZE - h)
    boxes = torch.stack([torch.arange(n, dtype=torch.float32), x0, y0, x0 + w, y0 + h], dim=1)
    x = roi_align(
        x, boxes, output_size=INPUT_SIZE, spatial_scale=1.0, sampling_ratio=2, aligned=True
    )
    flip = torch.rand(n, generator=gen) < 0.5
    x[flip] = x[flip].flip(-1)
    # colour jitter: brightness, contrast, saturation 0.3 each (no hue: object colours are
    # already random in the source task)
    b = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    c = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    s = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    x = x * b
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - gray.mean(dim=(2, 3), keepdim=True)) * c + gray.mean(dim=(2, 3), keepdim=True)
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    x = (x - gray) * s + gray
    return normalise(x.clamp(0.0, 1.0))


def centre_crop(images: torch.Tensor) -> torch.Tensor:
    """Eval transform of the pretrained_cfg: resize to 128 (a no-op here), centre-crop 112."""
    off = (IMAGE_SIZE - INPUT_SIZE) // 2
    x = images[:, :, off : off + INPUT_SIZE, off : off + INPUT_SIZE].float() / 255.0
    return normalise(x)


# ------------------------------------------------------------------------------------------
# Training


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(images), 256):
        logits = model(centre_crop(images[i : i + 256]))
        correct += int((logits.argmax(1) == labels[i : i + 256]).sum())
    return correct / len(images)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def write_backbone(out: Path, trunk: torch.nn.Module, config: dict[str, Any]) -> None:
    """Write model.safetensors and config.json, each through a temp file and os.replace."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().float() for k, v in trunk.state_dict().items()}
    with tempfile.NamedTemporaryFile(dir=out, suffix=".safetensors.tmp", delete=False) as f:
        tmp_weights = Path(f.name)
    safetensors.torch.save_file(state, str(tmp_weights), metadata={"format": "pt"})
    os.chmod(tmp_weights, 0o644)  # NamedTemporaryFile makes 0600 files; these ship as data
    os.replace(tmp_weights, out / "model.safetensors")
    write_backbone_config(out, config)


CLASSIFIER_FILE = "pretrained_classifier.safetensors"
CLASSIFIER_L2 = 1e-3  # weight decay of the refit classifier, on the mean cross-entropy


def write_classifier(out: Path, fc: torch.nn.Linear) -> None:
    """Write the source-class classifier (``fc.weight``, ``fc.bias``) atomically."""
    state = {
        "fc.weight": fc.weight.detach().contiguous().float(),
        "fc.bias": fc.bias.detach().contiguous().float(),
    }
    with tempfile.NamedTemporaryFile(dir=out, suffix=".safetensors.tmp", delete=False) as f:
        tmp = Path(f.name)
    safetensors.torch.save_file(state, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out / CLASSIFIER_FILE)


@torch.no_grad()
def trunk_features(trunk: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    trunk.eval()
    return torch.cat([trunk(centre_crop(images[i : i + 256])) for i in range(0, len(images), 256)])


def fit_classifier_only(args: argparse.Namespace) -> int:
    """Fit the source-class classifier on the frozen shipped trunk (see the module docstring)."""
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    config = json.loads((args.out / "config.json").read_text(encoding="utf-8"))
    trunk = timm.create_model(f"local-dir:{args.out}", pretrained=True, num_classes=0).eval()
    n_classes = len(SOURCE_CLASSES)
    train_labels = np.arange(args.train_per_class * n_classes) % n_classes
    val_labels = np.arange(args.val_per_class * n_classes) % n_classes
    train_x = trunk_features(
        trunk, generate(TRAIN_SEED, np.arange(len(train_labels)), train_labels)
    )
    val_x = trunk_features(trunk, generate(VAL_SEED, np.arange(len(val_labels)), val_labels))
    train_y, val_y = torch.from_numpy(train_labels), torch.from_numpy(val_labels)
    fc = torch.nn.Linear(train_x.shape[1], n_classes)
    torch.nn.init.zeros_(fc.weight)
    torch.nn.init.zeros_(fc.bias)
    opt = torch.optim.LBFGS(fc.parameters(), lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(fc(train_x), train_y) + CLASSIFIER_L2 * fc.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = float((fc(train_x).argmax(1) == train_y).float().mean())
        val_acc = float((fc(val_x).argmax(1) == val_y).float().mean())
    write_classifier(args.out, fc)
    config["headstart_pretraining"]["classifier"] = {
        "file": CLASSIFIER_FILE,
        "how": "refit on the frozen shipped trunk (the first trunk was written without its "
        "head): multinomial logistic regression, full-batch L-BFGS, "
        f"L2 {CLASSIFIER_L2:g} on the weights, features of the source training images at the "
        "evaluation preprocessing (resize 128, centre crop 112)",
        "train_images": len(train_labels),
        "train_accuracy": round(train_acc, 4),
        "source_val_accuracy": round(val_acc, 4),
    }
    write_backbone_config(args.out, config)
    print(
        f"classifier on the frozen trunk: train {train_acc:.3f}, source val {val_acc:.3f}; "
        f"wrote {args.out / CLASSIFIER_FILE} in {time.perf_counter() - start:.0f}s"
    )
    return 0


def write_backbone_config(out: Path, config: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=out, suffix=".json.tmp", delete=False, encoding="utf-8"
    ) as f:
        json.dump(config, f, indent=2)
        f.write("\n")
        tmp_config = Path(f.name)
    os.chmod(tmp_config, 0o644)
    os.replace(tmp_config, out / "config.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.classifier_only:
        return fit_classifier_only(args)
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)
    n_classes = len(SOURCE_CLASSES)

    n_train = args.train_per_class * n_classes
    train_labels_np = np.arange(n_train) % n_classes
    train_index_np = np.arange(n_train)
    val_labels_np = np.arange(args.val_per_class * n_classes) % n_classes
    print(
        f"generating {n_train} train + {len(val_labels_np)} val images of {n_classes} classes...",
        flush=True,
    )
    train_x = generate(TRAIN_SEED, train_index_np, train_labels_np)
    train_y = torch.from_numpy(train_labels_np)
    val_x = generate(VAL_SEED, np.arange(len(val_labels_np)), val_labels_np)
    val_y = torch.from_numpy(val_labels_np)
    next_index = n_train
    images_seen = n_train + len(val_labels_np)
    print(f"  done in {time.perf_counter() - start:.0f}s", flush=True)

    model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=n_classes, **MODEL_ARGS)
    # channels_last is about 1.5x faster for these small convolutions on CPU (oneDNN).
    model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    opt: torch.optim.Optimizer
    if args.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)
        opt_desc = "SGD(momentum=0.9, nesterov=True"
    else:
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999))
        opt_desc = "AdamW(betas=(0.9, 0.999)"
    opt_desc += f", weight_decay={args.weight_decay}, none on norms and biases)"
    steps_per_epoch = n_train // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    warmup = steps_per_epoch
    step = 0
    val_acc = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=gen)
        loss_sum, correct = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size : (b + 1) * args.batch_size]
            x = augment(train_x[idx], gen).contiguous(memory_format=torch.channels_last)
            y = train_y[idx]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, args.lr)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
        seen = steps_per_epoch * args.batch_size
        val_acc = evaluate(model, val_x, val_y)
        print(
            f"epoch {epoch + 1:2d}/{args.epochs}  loss {loss_sum / seen:.3f}  "
            f"train acc {correct / seen:.3f}  val acc {val_acc:.3f}  "
            f"{time.perf_counter() - t0:.0f}s  (elapsed {time.perf_counter() - start:.0f}s)",
            flush=True,
        )
        if args.refresh > 0 and epoch + 1 < args.epochs:
            # Replace a slice of the training pool with never-seen images: more distinct
            # images for the same compute than augmentation alone gives.
            n_new = int(n_train * args.refresh)
            slots = torch.randperm(n_train, generator=gen)[:n_new].numpy()
            new_index = np.arange(next_index, next_index + n_new)
            train_x[slots] = generate(TRAIN_SEED, new_index, train_labels_np[slots])
            next_index += n_new
            images_seen += n_new

    train_seconds = time.perf_counter() - start
    # The shipped backbone is the trunk only: rebuild with num_classes=0 and load it, so that
    # the file holds exactly what `create_model(..., num_classes=0)` expects.
    trunk = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=0, **MODEL_ARGS)
    trunk_state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    trunk.load_state_dict(trunk_state, strict=True)
    trunk.eval()

    config: dict[str, Any] = {
        "architecture": ARCHITECTURE,
        "num_classes": 0,
        "num_features": trunk.num_features,
        "model_args": MODEL_ARGS,
        "pretrained_cfg": {
            "tag": "headstart_synthetic",
            "input_size": [3, INPUT_SIZE, INPUT_SIZE],
            "crop_pct": CROP_PCT,
            "crop_mode": "center",
            "interpolation": "bilinear",
            "mean": list(MEAN),
            "std": list(STD),
            "first_conv": "conv1",
            "classifier": "fc",
            "license": "apache-2.0",
        },
        "headstart_pretraining": {
            "description": "Supervised pretraining on headstart.synthetic SOURCE_CLASSES "
            "(procedurally generated shape x texture images); the demo classes are disjoint.",
            "script": "scripts/train_embedded_backbone.py",
            "seed": args.seed,
            "data_seeds": {"train": TRAIN_SEED, "val": VAL_SEED},
            "epochs": args.epochs,
            "image_size": IMAGE_SIZE,
            "input_size": INPUT_SIZE,
            "train_pool_images": n_train,
            "pool_refresh_per_epoch": args.refresh,
            "distinct_images": images_seen,
            "val_images": len(val_labels_np),
            "classes": [class_name(s, t) for s, t in SOURCE_CLASSES],
            "augmentation": "RandomResizedCrop(112, scale=(0.45, 1), ratio=(3/4, 4/3)), "
            "RandomHorizontalFlip(0.5), ColorJitter(brightness=0.3, contrast=0.3, "
            "saturation=0.3)",
            "optimizer": opt_desc,
            "lr": args.lr,
            "lr_schedule": "linear warmup 1 epoch, cosine to 0",
            "batch_size": args.batch_size,
            "loss": "cross-entropy, label_smoothing=0.1",
            "source_val_accuracy": round(val_acc, 4),
            "train_seconds": round(train_seconds, 1),
            "threads": args.threads,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "timm": timm.__version__,
                "numpy": np.__version__,
            },
        },
    }
    config["headstart_pretraining"]["classifier"] = {
        "file": CLASSIFIER_FILE,
        "how": "the pretraining head (fc), as trained",
        "source_val_accuracy": round(val_acc, 4),
    }
    write_backbone(args.out, trunk, config)
    assert isinstance(model.fc, torch.nn.Linear)  # the pretraining head timm built
    write_classifier(args.out, model.fc)

    # Verify what was written loads through timm's own local-dir path and matches the trunk.
    loaded = timm.create_model(f"local-dir:{args.out}", pretrained=True, num_classes=0).eval()
    probe = centre_crop(val_x[:16])
    with torch.no_grad():
        diff = (loaded(probe) - trunk(probe)).abs().max().item()
    if diff > 1e-5:
        print(f"error: reloaded backbone differs from the trained trunk (max {diff:g})")
        return 1
    size_mb = (args.out / "model.safetensors").stat().st_size / 1e6
    print(
        f"source val accuracy {val_acc:.3f}; wrote {args.out} ({size_mb:.1f} MB, "
        f"{trunk.num_features} features); reload check ok (max diff {diff:.1e})"
    )
    print(f"elapsed {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
