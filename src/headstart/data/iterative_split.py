"""Seeded iterative stratification: a train/val/test split of multi-label data.

Splitting each class on its own (:func:`headstart.data.splits.stratified_split`) needs one class
per image. With several labels an image, the split has to keep every label's share in every split
at once, and a random split loses a rare label from val or test often enough to matter (a label
with 4 positives misses a 20% validation split 41% of the time). Iterative stratification
(Sechidis, Tsoumakas and Vlahavas, 2011, "On the stratification of multi-label data") does it
greedily: the label with the fewest positives still unplaced goes first, each of its images goes
to the split that still wants the most of that label (then the most images), and the wants are
updated for every label of the image. Rare labels are placed while every split still wants them.

How many images each split wants comes from :func:`headstart.data.splits.split_sizes`, per label
and overall, so a label gets the guarantees a class gets: a validation positive from 2 positives
on, a test positive from 3 on, and always a training positive. Images with no label fill the
splits' remaining overall wants. Ties are broken by a NumPy generator seeded from the user's seed,
so the split is reproducible from the fractions and the seed, whatever order the files came in
(the caller sorts them by path).

Written out here rather than imported: ``iterative-stratification`` is unmaintained, and
``scikit-multilearn``'s version is heavier than the fifty lines it takes.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from headstart.data.splits import split_sizes, validate_split_args

__all__ = ["iterative_split"]

_NAMES = ("train", "val", "test")


def iterative_split(
    label_sets: Sequence[Sequence[int]],
    num_labels: int,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> list[str]:
    """The split ("train", "val" or "test") of each image, keeping every label's share in each.

    Args:
        label_sets: The label indices of each image (empty: an image with no label), in an
            order that does not depend on the file system (sorted by path).
        num_labels: Labels in all (indices run from 0 to ``num_labels - 1``).
        val_fraction: Share of the images (and of each label's positives) for validation.
        test_fraction: Share for test.
        seed: Breaks ties reproducibly.

    Returns:
        One split name per image, in the order given.

    Raises:
        DataError: The fractions or the seed are invalid.
    """
    validate_split_args(val_fraction, test_fraction, seed)
    n = len(label_sets)
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    open_splits = [s for s, share in enumerate(fractions) if s == 0 or share > 0]
    want_total = np.array(split_sizes(n, val_fraction, test_fraction), np.int64)
    positives = np.zeros(num_labels, np.int64)
    for labels in label_sets:
        positives[list(labels)] += 1
    want = np.array(
        [split_sizes(int(k), val_fraction, test_fraction) for k in positives], np.int64
    ).reshape(num_labels, 3)
    rng = np.random.default_rng([int(seed), zlib.crc32(b"iterative-split")])
    order = rng.permutation(n)  # the order images of one label are placed in
    split_of: list[int | None] = [None] * n
    left = positives.copy()

    def place(i: int, wants: np.ndarray) -> None:
        # The split wanting most (of the label, then overall); remaining ties at random.
        keys = [(int(wants[s]), int(want_total[s]), float(rng.random())) for s in open_splits]
        best = open_splits[max(range(len(keys)), key=keys.__getitem__)]
        split_of[i] = best
        want_total[best] -= 1
        for label in label_sets[i]:
            want[label, best] -= 1
            left[label] -= 1

    members: list[list[int]] = [[] for _ in range(num_labels)]  # in placing order
    for i in order:
        for label in label_sets[i]:
            members[label].append(int(i))
    while (left > 0).any():
        label = int(np.argmin(np.where(left > 0, left, np.iinfo(np.int64).max)))
        for i in members[label]:
            if split_of[i] is None:
                place(i, want[label])
    for i in order:
        if split_of[i] is None:
            place(int(i), want_total)
    return [_NAMES[s] for s in split_of if s is not None]
