"""Checks on files, classes and splits, image sizes and colour: everything that needs no model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart._text import count_noun
from headstart.data import Dataset, Skipped
from headstart.doctor._findings import Finding, Severity
from headstart.doctor._inspect import ImageFacts
from headstart.doctor._samples import Labelled, display_path, split_order

__all__ = [
    "IMBALANCE_RATIO",
    "MIN_TRAIN_IMAGES",
    "TINY_SIDE",
    "class_findings",
    "colour_findings",
    "file_findings",
    "image_stats",
    "size_findings",
]

MIN_TRAIN_IMAGES = 5
"""A class with fewer training images than this can hardly be learned, even from good features."""

IMBALANCE_RATIO = 10.0
"""Largest over smallest training class above this: accuracy mostly measures the large classes."""

TINY_SIDE = 32
"""Without a model, a shorter side below this many pixels shows too little to classify."""

EXTREME_ASPECT = 3.0
"""Longer over shorter side above this: a centre crop keeps only a third of the picture or less."""

# Share of a split (or class) that makes it "grayscale" or "in colour" for the colour checks;
# between the two, a split is mixed and compared with nothing.
_MOSTLY = 0.9
_HARDLY = 0.1

# Extensions of each format headstart reads, the conventional one first.
_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "GIF": (".gif",),
    "WEBP": (".webp",),
    "TIFF": (".tif", ".tiff"),
    "BMP": (".bmp", ".dib"),
}
# Names that promise an image: such a file that is not one is a broken image, not a stray README.
_IMAGE_SUFFIXES = frozenset(
    [s for exts in _EXTENSIONS.values() for s in exts]
    + [".heic", ".heif", ".avif", ".jp2", ".jxl", ".ico", ".psd", ".eps", ".svg", ".raw"]
)


# --------------------------------------------------------------------------- files


def _problem_finding(path: Path, reason: str, root: Path) -> Finding:
    """A finding for a file training would skip, by the reason discovery or decoding gave."""
    rel = display_path(path, root)
    severity: Severity
    if reason.startswith("empty file"):
        severity, code = "error", "empty-file"
        message = f"{rel} is empty (0 bytes), as an interrupted copy leaves it; copy it again"
    elif reason.startswith("truncated or corrupt"):
        severity, code = "error", "truncated"
        message = f"{rel}: {reason}; training would skip it: replace or delete it"
    elif reason.startswith("not an image"):
        code = "not-an-image"
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            severity = "error"
            message = (
                f"{rel} is named like an image but its content is not one (a download that "
                "saved an error page looks like this); replace or delete it"
            )
        else:
            severity = "info"
            message = f"{rel} is not an image; it is ignored"
    elif reason.startswith("unsupported image format"):
        severity, code = "warning", "unsupported-format"
        message = f"{rel}: {reason}, which headstart does not read; convert it to JPEG or PNG"
    elif reason.startswith("decompression bomb"):
        severity, code = "warning", "decompression-bomb"
        message = f"{rel}: {reason}"
    elif reason.startswith("image outside any class folder"):
        severity, code = "warning", "unlabelled-image"
        message = f"{rel} lies outside any class folder, so it has no label and is not used"
    else:
        severity, code = "error", "unreadable"
        message = f"{rel}: {reason}; training would skip it"
    return Finding(severity, code, message, (path,), {"reason": reason})


def _extension_finding(facts: ImageFacts, root: Path) -> Finding | None:
    fmt = facts.format
    if fmt is None or fmt not in _EXTENSIONS:
        return None
    suffix = facts.path.suffix.lower()
    if suffix in _EXTENSIONS[fmt]:
        return None
    rel = display_path(facts.path, root)
    named = f"named {suffix}" if suffix else "without an extension"
    message = (
        f"{rel} is a {fmt} file {named}: headstart reads it by content, but other tools trust the "
        f"name; rename it to {facts.path.stem}{_EXTENSIONS[fmt][0]}"
    )
    details = {"format": fmt, "extension": suffix}
    return Finding("warning", "extension-mismatch", message, (facts.path,), details)


def file_findings(
    skipped: Sequence[Skipped],
    samples: Sequence[Labelled],
    facts: Mapping[Path, ImageFacts],
    root: Path,
) -> list[Finding]:
    """Files training would skip (empty, truncated, not images, unlabelled) and lying names.

    Discovery only sniffs headers, so a truncated file is a sample until decoded; ``facts`` holds
    the full decode of every sample, which finds them.
    """
    problems = [(s.path, s.reason) for s in skipped]
    problems += [(s.path, facts[s.path].problem or "") for s in samples if not facts[s.path].ok]
    findings = [_problem_finding(p, r, root) for p, r in sorted(problems, key=lambda x: str(x[0]))]
    for sample in sorted(samples, key=lambda s: str(s.path)):
        f = facts[sample.path]
        found = _extension_finding(f, root) if f.ok else None
        if found is not None:
            findings.append(found)
    return findings


# --------------------------------------------------------------------------- classes and splits


def class_findings(dataset: Dataset, unreadable: Collection[Path] = ()) -> list[Finding]:
    """Empty, tiny and unvalidated classes, too few classes, and imbalance.

    Counts are of usable files: a class of five truncated files is empty, which the file
    findings then explain. Discovery sees only headers, so the files that failed to decode
    (``unreadable``) are taken out here: training skips them, and a class's count that
    includes them overstates what it will learn from.
    """
    counts = _usable_counts(dataset, set(unreadable))
    classes = dataset.classes
    train = counts.get("train", dict.fromkeys(classes, 0))
    trainable = [c for c in classes if train[c] > 0]
    findings: list[Finding] = []
    if len(trainable) < 2:
        names = ", ".join(repr(c) for c in trainable) or "none"
        findings.append(
            Finding(
                "error",
                "too-few-classes",
                f"{count_noun(len(trainable), 'class')} with training images ({names}); a "
                "classifier needs at least two",
                details={"classes": trainable},
            )
        )
    for name in classes:
        n = train[name]
        if n == 0:
            elsewhere = [
                f"{counts[s][name]} {s}" for s in counts if s != "train" and counts[s][name]
            ]
            held = f" (it has {' and '.join(elsewhere)} images)" if elsewhere else ""
            findings.append(
                Finding(
                    "error",
                    "empty-class",
                    f"class {name!r} has no usable training images{held}; add training images "
                    "or remove the class",
                    details={"class": name},
                )
            )
        elif n < MIN_TRAIN_IMAGES:
            findings.append(
                Finding(
                    "warning",
                    "small-class",
                    f"class {name!r} has only {count_noun(n, 'training image')}; below "
                    f"{MIN_TRAIN_IMAGES} a class can hardly be learned: add images",
                    details={"class": name, "train": n},
                )
            )
    if "val" not in counts:
        findings.append(
            Finding(
                "warning",
                "no-val-split",
                "no validation images: nothing measures the model or picks its best epoch; add "
                "a val folder or hold some out (--val-fraction)",
            )
        )
    else:
        for name in trainable:
            if counts["val"][name] == 0:
                findings.append(
                    Finding(
                        "warning",
                        "no-val-images",
                        f"class {name!r} has no validation images: its accuracy cannot be "
                        "measured; add some to its val folder",
                        details={"class": name},
                    )
                )
    if len(trainable) >= 2:
        big = max(trainable, key=lambda c: train[c])
        small = min(trainable, key=lambda c: train[c])
        ratio = train[big] / train[small]
        if ratio > IMBALANCE_RATIO:
            findings.append(
                Finding(
                    "warning",
                    "imbalance",
                    f"training classes are imbalanced: {big!r} has {train[big]} images, {small!r} "
                    f"{train[small]} ({ratio:.0f}x); accuracy will mostly reflect the large "
                    "classes: collect more of the small ones, or train with --class-weight "
                    "balanced (judge it by balanced accuracy and macro-F1)",
                    details={"largest": big, "smallest": small, "ratio": round(ratio, 2)},
                )
            )
    return findings


def _usable_counts(dataset: Dataset, unreadable: set[Path]) -> dict[str, dict[str, int]]:
    """:meth:`Dataset.counts` without the files that failed to decode."""
    counts = dataset.counts()
    for split, samples in dataset.splits.items():
        for s in samples:
            if s.path in unreadable:
                counts[split][dataset.classes[s.label]] -= 1
    return counts


# --------------------------------------------------------------------------- sizes and colour


def size_findings(
    samples: Sequence[Labelled],
    facts: Mapping[Path, ImageFacts],
    *,
    min_side: int,
    why: str,
) -> list[Finding]:
    """Images too small for the model (or to show anything), and extreme aspect ratios."""
    ok = sorted((facts[s.path] for s in samples if facts[s.path].ok), key=lambda f: str(f.path))
    findings: list[Finding] = []
    tiny = [f for f in ok if min(f.width, f.height) < min_side]
    if tiny:
        smallest = min(tiny, key=lambda f: min(f.width, f.height))
        findings.append(
            Finding(
                "warning",
                "tiny-image",
                f"{count_noun(len(tiny), 'image')} of {len(ok)} are smaller than {min_side} px on "
                f"their shorter side ({why}), the smallest {smallest.width}x{smallest.height}; "
                "upscaling adds no detail",
                tuple(f.path for f in tiny),
                {"min_side": min_side, "count": len(tiny)},
            )
        )
    wide = [f for f in ok if max(f.width, f.height) > EXTREME_ASPECT * min(f.width, f.height)]
    if wide:
        findings.append(
            Finding(
                "info",
                "extreme-aspect",
                f"{count_noun(len(wide), 'image')} are over {EXTREME_ASPECT:g} times as long as "
                "they are wide; a centre crop keeps only the middle of them",
                tuple(f.path for f in wide),
                {"count": len(wide)},
            )
        )
    return findings


def _gray_share(group: Sequence[ImageFacts]) -> float:
    return sum(f.grayscale for f in group) / len(group)


def colour_findings(samples: Sequence[Labelled], facts: Mapping[Path, ImageFacts]) -> list[Finding]:
    """A grayscale split beside colour ones, or one grayscale class among colour classes.

    Either gives a model a shortcut: it is measured on pictures unlike those it learned from, or
    it learns "no colour" instead of what the class shows. "Grayscale" is judged by content, so a
    grey photo saved as RGB counts as grey.
    """
    by_split: dict[str, list[ImageFacts]] = {}
    by_class: dict[str, list[ImageFacts]] = {}
    for s in samples:
        f = facts[s.path]
        if f.ok:
            by_split.setdefault(s.split, []).append(f)
            if s.split == "train":
                by_class.setdefault(s.label, []).append(f)
    findings: list[Finding] = []
    shares = {split: _gray_share(group) for split, group in by_split.items()}
    for split in sorted(shares, key=split_order):
        colour = [o for o in sorted(shares, key=split_order) if shares[o] <= _HARDLY]
        if shares[split] >= _MOSTLY and colour:
            gray = [f for f in by_split[split] if f.grayscale]
            findings.append(
                Finding(
                    "warning",
                    "grayscale-split",
                    f"the {split} images are grayscale ({len(gray)} of {len(by_split[split])}) "
                    f"while {' and '.join(colour)} {'is' if len(colour) == 1 else 'are'} in "
                    "colour: the model would be trained and measured on different kinds of "
                    "pictures",
                    tuple(f.path for f in gray),
                    {
                        "split": split,
                        "grayscale_share": {k: round(v, 3) for k, v in shares.items()},
                    },
                )
            )
    if len(by_class) >= 2:
        for name in sorted(by_class):
            group = by_class[name]
            rest = [f for other, g in by_class.items() if other != name for f in g]
            if len(group) >= 3 and _gray_share(group) >= _MOSTLY and _gray_share(rest) <= _HARDLY:
                findings.append(
                    Finding(
                        "warning",
                        "grayscale-class",
                        f"class {name!r} is grayscale ({sum(f.grayscale for f in group)} of "
                        f"{len(group)} training images) while the other classes are in colour: "
                        "a model can learn 'no colour' instead of what the class shows",
                        tuple(f.path for f in group if f.grayscale),
                        {"class": name},
                    )
                )
    return findings


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "min": round(float(arr.min()), 3),
        "median": round(float(np.median(arr)), 3),
        "max": round(float(arr.max()), 3),
    }


def image_stats(samples: Sequence[Labelled], facts: Mapping[Path, ImageFacts]) -> dict[str, Any]:
    """Sizes, aspect ratios, colour modes and formats of the readable samples."""
    ok = [(s, facts[s.path]) for s in samples if facts[s.path].ok]
    sizes = Counter(f"{f.width}x{f.height}" for _, f in ok)
    modes: dict[str, Counter[str]] = {}
    gray: dict[str, int] = {}
    for s, f in ok:
        modes.setdefault(s.split, Counter())[f.mode] += 1
        gray[s.split] = gray.get(s.split, 0) + int(f.grayscale)
    return {
        "width": _summary([f.width for _, f in ok]),
        "height": _summary([f.height for _, f in ok]),
        "aspect_ratio": _summary([f.width / f.height for _, f in ok if f.height]),
        "common_sizes": dict(sizes.most_common(5)),
        "modes": {split: dict(c.most_common()) for split, c in modes.items()},
        "grayscale": gray,
        "formats": dict(Counter(f.format or "unknown" for _, f in ok).most_common()),
    }
