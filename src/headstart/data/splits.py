"""Deterministic, stratified train/val/test splits.

A split headstart makes itself must be reproducible from three numbers (the fractions and the
seed, recorded in the run folder), whatever order the file system lists files in and whichever
Python process runs it. So each class is split on its own: its paths are sorted, then permuted by
a NumPy generator seeded from the user's seed and a CRC32 of the class name (Python's ``hash()``
of a string changes between processes). Splitting per class keeps every class's proportions in
every split, which matters for the small, unbalanced datasets transfer learning is used on, and
adding a class does not reshuffle the others.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from headstart.errors import DataError

__all__ = ["split_sizes", "stratified_split", "validate_split_args"]


def validate_split_args(val_fraction: float, test_fraction: float, seed: int) -> None:
    """Refuse fractions and seeds that cannot describe a split.

    Raises:
        DataError: A fraction is negative or not a number, the two sum to 1 or more (nothing
            would be left to train on), or the seed is not a non-negative integer.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise DataError(
                f"{name} must be a number from 0 up to (not including) 1, got {value!r}; "
                "e.g. 0.2 keeps 20% of each class for that split"
            )
    if val_fraction + test_fraction >= 1:
        raise DataError(
            f"val_fraction + test_fraction must be below 1 so some images are left to train on, "
            f"got {val_fraction} + {test_fraction}; lower one of them"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even (round(2.5) == 2); half-up is easier to predict.
    return math.floor(x + 0.5)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """How many of a class's ``n`` images go to train, val and test.

    Rounds each fraction, then guarantees what a small class needs: at least one validation
    image when ``val_fraction > 0`` and the class has 2 or more images (so every class is
    measured), at least one test image when ``test_fraction > 0`` and it has 3 or more, and
    always at least one training image (a class never seen in training cannot be predicted).

    Returns:
        ``(n_train, n_val, n_test)``, summing to ``n``.
    """
    n_val = _round_half_up(n * val_fraction)
    n_test = _round_half_up(n * test_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    if test_fraction > 0 and n >= 3:
        n_test = max(n_test, 1)
    while n > 0 and n_val + n_test > n - 1:
        # Take back from the larger held-out split; on a tie, from test (val matters more for
        # choosing the checkpoint).
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def stratified_split(
    by_class: Mapping[str, Sequence[Path]],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, dict[str, list[Path]]]:
    """Split each class's paths into train, val and test, reproducibly.

    Args:
        by_class: Class name to that class's image paths, in any order.
        val_fraction: Share of each class for validation (0 for none).
        test_fraction: Share of each class for test (0 for none).
        seed: The user's seed; combined with each class name's CRC32.

    Returns:
        ``{"train": {class: paths}, "val": {...}, "test": {...}}``, every class present in each,
        each list sorted by path.

    Raises:
        DataError: The fractions or the seed are invalid (see :func:`validate_split_args`).
    """
    validate_split_args(val_fraction, test_fraction, seed)
    out: dict[str, dict[str, list[Path]]] = {"train": {}, "val": {}, "test": {}}
    for name, paths in by_class.items():
        ordered = sorted(paths, key=str)
        n_train, n_val, n_test = split_sizes(len(ordered), val_fraction, test_fraction)
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
        shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
        out["test"][name] = sorted(shuffled[:n_test], key=str)
        out["val"][name] = sorted(shuffled[n_test : n_test + n_val], key=str)
        out["train"][name] = sorted(shuffled[n_test + n_val :], key=str)
    return out
