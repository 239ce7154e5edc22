"""Several labels an image: reading them, merging repeats, splitting, and what to say about them.

A CSV's label cell holds the image's labels separated by ``;`` (``dog;ball``); an empty cell is an
image with none of the labels, a valid negative for every one. A dataset is multi-label when any
row has other than one label, or when the caller says so (``multi_label=True``,
``--multi-label``): a multi-label set whose rows happen to hold one label each reads the same as a
single-label one, and only the user knows which it is.

Discovery hands its entries here once it knows the data is multi-label; single-label data never
passes through this module, so its datasets, splits and run folders stay as they were. A file
listed twice merges its labels (one row a label is a common way to write such a CSV), where a
single-label CSV refuses the conflict: there, two labels have no right answer; here, they are the
answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from headstart.data.dataset import SPLIT_NAMES, Dataset, Layout, Sample, Skipped, _describe_skips
from headstart.data.iterative_split import iterative_split
from headstart.errors import DataError

__all__ = [
    "MIN_VAL_POSITIVES",
    "SEPARATOR",
    "LabelledFile",
    "check_training_labels",
    "from_labelled_files",
    "has_several_labels",
    "label_facts",
    "label_matrix",
    "parse_labels",
]

SEPARATOR = ";"
"""What separates an image's labels in a CSV cell (``dog;ball``)."""

MIN_VAL_POSITIVES = 5
"""A label with fewer validation positives than this cannot have its threshold chosen, nor its
figures read, with any confidence: ``headstart data`` and ``doctor`` say so."""


@dataclass(frozen=True)
class LabelledFile:
    """One file with its labels, as discovery read it.

    Attributes:
        path: Absolute path.
        labels: Label names, sorted, each once (empty: no label).
        split: "train", "val", "test", or None for headstart to choose.
        origin: Where it was given, for messages ("row 7", "paths[3]").
    """

    path: Path
    labels: tuple[str, ...]
    split: str | None
    origin: str


def has_several_labels(value: object) -> bool:
    """Whether a label cell (or list entry) holds other than exactly one label."""
    if isinstance(value, str):
        return not value.strip() or SEPARATOR in value
    return isinstance(value, (list, tuple, set, frozenset))


def parse_labels(value: object, where: str) -> tuple[str, ...]:
    """The labels of one cell (``"dog;ball"``) or list entry (``["dog", "ball"]``).

    Raises:
        DataError: An empty label between separators (``dog;;ball``, ``dog;``) or a label that
            is only whitespace: a typo, which silently dropping would hide.
    """
    if isinstance(value, str):
        if not value.strip():
            return ()
        parts = value.split(SEPARATOR)
    elif isinstance(value, (list, tuple, set, frozenset)):
        parts = [str(part) for part in value]
    else:
        parts = [str(value)]
    names = [part.strip() for part in parts]
    if not all(names):
        raise DataError(
            f"{where} has an empty label in {value!r}; separate labels with a single "
            f"{SEPARATOR!r} and no empty part (leave the whole cell empty for an image with none "
            "of the labels)"
        )
    return tuple(sorted(set(names)))


def _merge(files: Sequence[LabelledFile], source: str) -> list[LabelledFile]:
    """One file each: the labels of repeats merged; refuse a file given in two splits (a leak)."""
    merged: dict[Path, LabelledFile] = {}
    for item in files:
        seen = merged.get(item.path)
        if seen is None:
            merged[item.path] = item
            continue
        if seen.split != item.split:
            raise DataError(
                f"{item.path} is given twice in {source} ({seen.origin}: split "
                f"{seen.split or 'auto'}; {item.origin}: split {item.split or 'auto'}); a file "
                "in two splits would leak into training, keep one split for it"
            )
        labels = tuple(sorted({*seen.labels, *item.labels}))
        merged[item.path] = LabelledFile(item.path, labels, seen.split, seen.origin)
    return list(merged.values())


def from_labelled_files(
    files: Sequence[LabelledFile],
    *,
    root: Path,
    layout: Layout,
    source: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    known: list[str] | None,
    problems: Callable[[Sequence[Path]], list[str | None]],
) -> Dataset:
    """Check, split and assemble a multi-label dataset (the CSV and list layouts).

    Splits as discovery does for single-label entries (the user's splits kept; the rest split by
    headstart with the fractions; validation held out of a given train split when none is given),
    but by iterative stratification.

    Args:
        problems: Why each path cannot be used as an image, or None (discovery's check).
        known: The labels of a trained model (evaluation data): every label must be one of them,
            and a label may have no image.

    Raises:
        DataError: No label at all; a label with no positive training image, or one on every
            training image; a label unknown to ``known``; a file in two splits; no usable image.
    """
    files = _merge(files, source)
    names = sorted({name for item in files for name in item.labels})
    if known is None:
        if not names:
            raise DataError(
                f"found no labels in {source}; a multi-label dataset needs at least one label "
                f"on some image (labels separated by {SEPARATOR!r})"
            )
        classes = names
    else:
        classes = known
        for name in names:
            if name not in known:
                raise DataError(
                    f"label {name!r} in {source} is not one of the known labels "
                    f"({', '.join(map(repr, known[:10]))}); fix those rows or evaluate with a "
                    "model trained on that label"
                )
    index = {name: i for i, name in enumerate(classes)}

    usable: list[LabelledFile] = []
    skipped: list[Skipped] = []
    for item, reason in zip(files, problems([f.path for f in files]), strict=True):
        if reason is None:
            usable.append(item)
        else:
            skipped.append(Skipped(item.path, reason))

    split_of = {item.path: item.split for item in usable}
    pool = sorted((f for f in usable if f.split is None), key=lambda f: str(f.path))
    fixed = {f.split for f in usable if f.split is not None}
    split_spec: dict[str, float | int] | None = None
    if "val" in fixed and test_fraction == 0:
        split_of.update({f.path: "train" for f in pool})
    elif pool or not fixed:
        vf = 0.0 if "val" in fixed else val_fraction
        chosen = iterative_split(
            [[index[n] for n in f.labels] for f in pool],
            len(classes),
            val_fraction=vf,
            test_fraction=test_fraction,
            seed=seed,
        )
        split_of.update({f.path: s for f, s in zip(pool, chosen, strict=True)})
        split_spec = _spec(vf, test_fraction, seed)
    elif "val" not in fixed and "train" in fixed:
        train = sorted((f for f in usable if f.split == "train"), key=lambda f: str(f.path))
        chosen = iterative_split(
            [[index[n] for n in f.labels] for f in train],
            len(classes),
            val_fraction=val_fraction,
            test_fraction=0.0,
            seed=seed,
        )
        split_of.update({f.path: s for f, s in zip(train, chosen, strict=True)})
        split_spec = _spec(val_fraction, 0.0, seed)

    splits: dict[str, list[Sample]] = {}
    for split in SPLIT_NAMES:
        samples = [
            Sample(f.path, -1, tuple(index[n] for n in f.labels))
            for f in usable
            if split_of[f.path] == split
        ]
        if samples:
            splits[split] = sorted(samples, key=lambda s: str(s.path))
    if not splits:
        detail = f" ({_describe_skips(skipped)})" if skipped else ""
        raise DataError(f"no usable images in {root}{detail}; add images or fix the skipped files")
    dataset = Dataset(
        root=root,
        layout=layout,
        classes=classes,
        splits=splits,
        skipped=sorted(skipped, key=lambda s: str(s.path)),
        split_spec=split_spec,
        multi_label=True,
    )
    dataset._relaxed = known is not None
    if known is None:
        check_training_labels(dataset, source)
    return dataset


def check_training_labels(dataset: Dataset, source: str) -> None:
    """Refuse a label that training cannot learn: no positive training image, or no negative one.

    Raises:
        DataError: Naming the label and the fix.
    """
    train = dataset.splits.get("train", [])
    if not train:
        raise DataError(f"{source} has no training images; mark some rows with split 'train'")
    counts = [0] * len(dataset.classes)
    for sample in train:
        for label in sample.labels or ():
            counts[label] += 1
    for name, count in zip(dataset.classes, counts, strict=True):
        if count == 0:
            raise DataError(
                f"label {name!r} has no positive image in train ({source}); add training "
                "images with it or remove the label"
            )
        if count == len(train):
            raise DataError(
                f"label {name!r} is on every training image ({source}), so there is nothing to "
                "tell it from; add training images without it or remove the label"
            )


def _spec(val_fraction: float, test_fraction: float, seed: int) -> dict[str, float | int]:
    return {
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": seed,
    }


def label_facts(dataset: Dataset) -> dict[str, Any]:
    """What ``headstart data`` and ``doctor`` say about a multi-label dataset's labels.

    Returns:
        ``positives`` (split to label to positive images), ``unlabelled`` (split to images with
        no label), ``few_to_validate`` (labels with fewer than :data:`MIN_VAL_POSITIVES`
        validation positives: their thresholds and figures are guesswork) and ``always_together``
        (pairs of labels on exactly the same images: no model can tell them apart).
    """
    positives: dict[str, dict[str, int]] = {}
    unlabelled: dict[str, int] = {}
    on: dict[int, set[Path]] = {i: set() for i in range(len(dataset.classes))}
    for split, samples in dataset.splits.items():
        counts = dict.fromkeys(dataset.classes, 0)
        unlabelled[split] = 0
        for sample in samples:
            labels = sample.labels or ()
            unlabelled[split] += not labels
            for label in labels:
                counts[dataset.classes[label]] += 1
                on[label].add(sample.path)
        positives[split] = counts
    val = positives.get("val", dict.fromkeys(dataset.classes, 0))
    few = [name for name in dataset.classes if val[name] < MIN_VAL_POSITIVES]
    together = [
        [dataset.classes[a], dataset.classes[b]]
        for a, b in itertools.combinations(range(len(dataset.classes)), 2)
        if on[a] and on[a] == on[b]
    ]
    return {
        "positives": positives,
        "unlabelled": unlabelled,
        "few_to_validate": few,
        "always_together": together,
    }


def label_matrix(samples: Sequence[Sample], num_labels: int) -> np.ndarray:
    """The 0/1 targets of multi-label samples: a row per sample, a column per label."""
    out = np.zeros((len(samples), num_labels), np.int64)
    for row, sample in enumerate(samples):
        out[row, list(sample.labels or ())] = 1
    return out
