"""The seed's story, replayed (issue 14; docs/why.md, story 1): rescale=1/255 on caffe weights.

A Keras user's ResNet50 "predicts one class for everything" with ``rescale=1./255`` and reaches
98% with its own ``preprocess_input``. This benchmark builds such weights offline and shows what
headstart makes of them:

1. **Pretraining, in Keras** (torch backend): a ``keras.applications.ResNet50`` layout
   (``include_top=False, pooling="avg"``, ``--size`` pixels; or ``--arch small``, a small
   ResNet-style trunk that learns in minutes on a CPU) nested under a Dense softmax over the 30
   shape x texture source classes of ``headstart.synthetic`` (the embedded backbone's source task,
   none of them a demo class), fed with ``keras.applications.resnet50.preprocess_input`` ("caffe":
   BGR, 0..255, ImageNet means subtracted). Seeded: the network trains end to end for
   ``--epochs``, one training-mode pass sets its BatchNorm statistics to those of caffe inputs,
   and the Dense classifier is refitted on the frozen trunk's pooled features, so that the file's
   classifier is as good as its features. Saved as a ``.keras`` file; reused on a rerun with the
   same settings.
2. **headstart on the demo data**, with ``keras:PATH.keras`` and two preprocessings: the one
   headstart resolves (the base's caffe ``preprocess_input``, read from the file's layer names)
   and the user's ``rescale=1/255`` (0..1 RGB, nothing subtracted), given as the overrides a user
   would write, ``ImageClassifier(preprocess=RESCALE)`` / ``diagnose(preprocess_overrides=...)``:
   (i) the linear probe's test accuracy (``strategy="features"``) and whether ``train`` warned,
   (ii) ``headstart doctor``'s ``pretrained-view`` finding: the file's own classifier on 64 of the
   user's images.

    .venv/bin/python benchmarks/keras_story.py [--arch resnet50|small] [--epochs N] [--per-class N]
    .venv/bin/python benchmarks/keras_story.py --smoke   # small trunk, tiny data, temp folders

The CLI has no flag for the scale or the channel order, so the rescale arm goes through the
Python API. The right arm is, on the command line, ``headstart train demo-data --model
keras:keras-story/resnet50_source.keras --strategy features`` and ``headstart doctor demo-data
--model keras:keras-story/resnet50_source.keras``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import torch
from PIL import Image

from headstart import ImageClassifier
from headstart.doctor import diagnose
from headstart.errors import PreprocessOverrideWarning, PretrainedViewWarning
from headstart.synthetic import SOURCE_CLASSES, make_demo_dataset, make_source_batch

RESCALE = {
    "scale": 1 / 255,
    "mean": (0.0, 0.0, 0.0),
    "std": (1.0, 1.0, 1.0),
    "channel_order": "RGB",
}
"""``ImageDataGenerator(rescale=1./255)`` straight into the network: 0..1 RGB, no mean, no std."""

ARMS = (
    ("headstart's (caffe preprocess_input)", None),
    ("rescale=1/255 (0..1 RGB)", RESCALE),
)
TRAIN_SEED, VAL_SEED = 1, 2  # the source images' seeds, as scripts/train_embedded_backbone.py


def source_images(seed: int, per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source-task images as float32 0..255 RGB ``[N, size, size, 3]``, drawn at 128 px and
    resized as headstart resizes (bilinear), with their class ids."""
    ids = np.repeat(np.arange(len(SOURCE_CLASSES)), per_class)
    index = np.tile(np.arange(per_class), len(SOURCE_CLASSES))
    pixels = make_source_batch(seed, index.tolist(), ids.tolist(), 128)
    small = [Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR) for p in pixels]
    return np.stack([np.asarray(img, np.float32) for img in small]), ids


def small_resnet(keras: Any, size: int) -> Any:
    """A ResNet-style trunk small enough to learn the source task on a CPU in minutes.

    Named ``resnet50`` as a nested ``keras.applications.ResNet50`` base is: headstart reads a
    user's base from its layer names, so this one resolves to ResNet50's caffe preprocess_input.
    """
    layers = keras.layers

    def conv_bn(x: Any, filters: int, name: str, strides: int = 1, relu: bool = True) -> Any:
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x

    def block(x: Any, filters: int, name: str) -> Any:
        y = conv_bn(conv_bn(x, filters, f"{name}_1"), filters, f"{name}_2", relu=False)
        return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))

    inputs = keras.Input((size, size, 3))
    x = block(conv_bn(inputs, 32, "conv1", strides=2), 32, "conv2_block1")
    x = block(conv_bn(x, 64, "conv3", strides=2), 64, "conv3_block1")
    x = block(conv_bn(x, 128, "conv4", strides=2), 128, "conv4_block1")
    pooled = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, pooled, name="resnet50")


def pretrain(
    path: Path, *, arch: str, size: int, per_class: int, epochs: int, seed: int
) -> dict[str, Any]:
    """Train the caffe-mode classifier in Keras and save it to ``path`` (reused when it exists)."""
    import keras

    settings = {"arch": arch, "size": size, "per_class": per_class, "epochs": epochs, "seed": seed}
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        saved = json.loads(sidecar.read_text())
        if saved.get("settings") == settings:
            return dict(saved)
    started = time.monotonic()
    preprocess_input = keras.applications.resnet50.preprocess_input
    x, y = source_images(TRAIN_SEED, per_class, size)
    xv, yv = source_images(VAL_SEED, 10, size)
    x, xv = preprocess_input(x), preprocess_input(xv)
    keras.utils.set_random_seed(seed)
    if arch == "resnet50":
        base = keras.applications.ResNet50(
            weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3)
        )
    else:
        base = small_resnet(keras, size)
    batchnorm = [
        layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    inputs = keras.Input((size, size, 3))
    top = keras.layers.Dense(len(SOURCE_CLASSES), activation="softmax", name="source_classes")
    model = keras.Model(inputs, top(base(inputs)))  # base nested, as in Keras' tutorials
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    if epochs:
        model.fit(x, y, batch_size=32, epochs=epochs, shuffle=True, verbose=0)
    # BatchNorm statistics of these weights on caffe inputs: one training-mode pass with
    # momentum 0 (few steps leave Keras' 0.99 running averages behind the weights).
    momentum = [layer.momentum for layer in batchnorm]
    for layer in batchnorm:
        layer.momentum = 0.0
    base(x[np.random.default_rng(seed).permutation(len(x))[:256]], training=True)
    for layer, value in zip(batchnorm, momentum, strict=True):
        layer.momentum = value
    end_to_end = float(model.evaluate(xv, yv, verbose=0)[1])

    # Refit the classifier on the frozen trunk's features (as a Keras user fits a new top).
    features = base.predict(x, verbose=0)
    head = keras.Sequential(
        [
            keras.Input((features.shape[1],)),
            keras.layers.Dense(len(SOURCE_CLASSES), activation="softmax"),
        ]
    )
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(features, y, batch_size=64, epochs=200, shuffle=True, verbose=0)
    top.set_weights(head.layers[-1].get_weights())
    val = float(model.evaluate(xv, yv, verbose=0)[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    record = {
        "settings": settings,
        "source_val_accuracy_end_to_end": end_to_end,
        "source_val_accuracy": val,
        "seconds": round(time.monotonic() - started, 1),
    }
    sidecar.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_arm(
    model: str, data: Path, overrides: dict[str, Any] | None, cache: Path
) -> dict[str, Any]:
    """Linear probe and doctor with one preprocessing."""
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = ImageClassifier(
            model, strategy="features", preprocess=overrides, cache_dir=cache, quiet=True
        ).fit(data)
    warned = any(issubclass(w.category, PretrainedViewWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, (PreprocessOverrideWarning, PretrainedViewWarning)):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    report = diagnose(
        data, model=model, preprocess_overrides=overrides, cache_dir=cache, quiet=True
    )
    (finding,) = [f for f in report.findings if f.code == "pretrained-view"]
    view = finding.details
    name, count = view["top_classes"][0]["class"], view["top_classes"][0]["images"]
    return {
        "test_accuracy": clf.metrics_["test"]["accuracy"],
        "train_warned": warned,
        "severity": finding.severity,
        "top_guess": f"{name} {count}/{view['images']}",
        "mean_max_probability": view["mean_max_probability"],
        "entropy_fraction": view["entropy_fraction"],
        "message": finding.message,
        "seconds": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("demo-data"))
    parser.add_argument("--out", type=Path, default=Path("keras-story"))
    parser.add_argument(
        "--arch",
        choices=("resnet50", "small"),
        default="resnet50",
        help="keras.applications.ResNet50, or a small ResNet-style trunk that learns in minutes",
    )
    parser.add_argument("--size", type=int, default=32, help="input size of the Keras network")
    parser.add_argument("--per-class", type=int, default=40, help="source training images a class")
    parser.add_argument("--epochs", type=int, default=2, help="end-to-end pretraining epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; on the busy 2-core test machine one thread trained ResNet50 twice "
        "as fast as two",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the small trunk, one epoch, tiny data, in a temp folder: every code path, for tests",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.arch, args.per_class, args.epochs = "small", 2, 1
        with tempfile.TemporaryDirectory() as tmp:
            args.data, args.out = Path(tmp) / "demo-data", Path(tmp) / "keras-story"
            story(args, n_per_class=(4, 2, 2))
    else:
        story(args)


def story(args: argparse.Namespace, n_per_class: tuple[int, int, int] = (60, 20, 40)) -> None:
    """Pretrain (or reuse) the Keras file, then both arms on the demo data; print the table."""
    torch.set_num_threads(args.threads)

    path = args.out / f"{args.arch}_source.keras"
    record = pretrain(
        path,
        arch=args.arch,
        size=args.size,
        per_class=args.per_class,
        epochs=args.epochs,
        seed=args.seed,
    )
    name = "ResNet50 layout" if args.arch == "resnet50" else "small ResNet-style network"
    print(
        f"pretrained {path} in Keras ({record['seconds']:.0f} s): {name} at "
        f"{args.size} px, {len(SOURCE_CLASSES)} source classes x {args.per_class} images, "
        f"{args.epochs} epochs, caffe preprocess_input; source val accuracy "
        f"{record['source_val_accuracy']:.3f} (before the classifier refit "
        f"{record['source_val_accuracy_end_to_end']:.3f}, chance {1 / len(SOURCE_CLASSES):.3f})"
    )
    data = make_demo_dataset(args.data, n_per_class=n_per_class)
    model = f"keras:{path}"
    results = {
        name: run_arm(model, data, overrides, args.out / "cache") for name, overrides in ARMS
    }
    header = (
        f"{'preprocessing':<38} {'probe test acc':>14} {'train warns':>11} "
        f"{'doctor pretrained-view':>22} {'top guess (of 64)':>24} {'mean top p':>10} "
        f"{'entropy':>8}"
    )
    print(header)
    for name, r in results.items():
        print(
            f"{name:<38} {r['test_accuracy']:14.3f} {('yes' if r['train_warned'] else 'no'):>11} "
            f"{r['severity']:>22} {r['top_guess']:>24} {r['mean_max_probability']:10.3f} "
            f"{r['entropy_fraction']:8.3f}"
        )
    for name, r in results.items():
        print(f"\n{name} ({r['seconds']:.0f} s): [pretrained-view] {r['message']}")


if __name__ == "__main__":
    main()
