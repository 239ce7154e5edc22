from __future__ import annotations

import random
from pathlib import Path

import pytest

from headstart.data.splits import split_sizes, stratified_split, validate_split_args
from headstart.errors import DataError


def _paths(prefix: str, n: int) -> list[Path]:
    return [Path(f"/data/{prefix}/{i:04d}.jpg") for i in range(n)]


def test_split_is_stratified_per_class() -> None:
    by_class = {"cat": _paths("cat", 100), "dog": _paths("dog", 20)}
    parts = stratified_split(by_class, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert [len(parts[s]["cat"]) for s in ("train", "val", "test")] == [70, 20, 10]
    assert [len(parts[s]["dog"]) for s in ("train", "val", "test")] == [14, 4, 2]


def test_split_partitions_each_class_exactly() -> None:
    by_class = {"cat": _paths("cat", 37), "dog": _paths("dog", 11)}
    parts = stratified_split(by_class, val_fraction=0.25, test_fraction=0.15, seed=3)
    for name, paths in by_class.items():
        together = parts["train"][name] + parts["val"][name] + parts["test"][name]
        assert sorted(together) == sorted(paths)
        assert len(set(together)) == len(paths)


def test_same_seed_gives_same_split() -> None:
    by_class = {"cat": _paths("cat", 50), "dog": _paths("dog", 50)}
    first = stratified_split(by_class, val_fraction=0.2, test_fraction=0.1, seed=7)
    second = stratified_split(by_class, val_fraction=0.2, test_fraction=0.1, seed=7)
    assert first == second


def test_different_seed_gives_different_split() -> None:
    by_class = {"cat": _paths("cat", 50)}
    first = stratified_split(by_class, val_fraction=0.2, test_fraction=0.0, seed=1)
    second = stratified_split(by_class, val_fraction=0.2, test_fraction=0.0, seed=2)
    assert first["val"] != second["val"]


def test_split_is_independent_of_listing_order() -> None:
    paths = _paths("cat", 60)
    shuffled = paths[:]
    random.Random(4).shuffle(shuffled)
    a = stratified_split(
        {"cat": paths, "dog": _paths("dog", 9)}, val_fraction=0.2, test_fraction=0.1, seed=5
    )
    b = stratified_split(
        {"dog": list(reversed(_paths("dog", 9))), "cat": shuffled},
        val_fraction=0.2,
        test_fraction=0.1,
        seed=5,
    )
    assert a == b


def test_split_is_pinned_across_processes_and_versions() -> None:
    # crc32 of the class name, not hash(): this exact split must never change.
    parts = stratified_split(
        {"cat": _paths("cat", 10)}, val_fraction=0.2, test_fraction=0.1, seed=0
    )
    names = {s: [p.stem for p in parts[s]["cat"]] for s in ("val", "test")}
    assert names == PINNED_SPLIT


PINNED_SPLIT = {"val": ["0000", "0005"], "test": ["0002"]}


def test_split_lists_are_sorted_by_path() -> None:
    parts = stratified_split(
        {"cat": _paths("cat", 30)}, val_fraction=0.3, test_fraction=0.2, seed=0
    )
    for split in ("train", "val", "test"):
        assert parts[split]["cat"] == sorted(parts[split]["cat"])


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (4, (2, 1, 1)), (10, (7, 2, 1))],
)
def test_small_classes_keep_a_train_image_and_get_val_and_test(
    n: int, expected: tuple[int, int, int]
) -> None:
    assert split_sizes(n, 0.2, 0.1) == expected


def test_zero_fractions_put_everything_in_train() -> None:
    parts = stratified_split({"cat": _paths("cat", 5)}, val_fraction=0.0, test_fraction=0.0, seed=0)
    assert len(parts["train"]["cat"]) == 5
    assert parts["val"]["cat"] == [] and parts["test"]["cat"] == []


def test_large_fractions_still_leave_one_train_image() -> None:
    assert split_sizes(4, 0.5, 0.45)[0] == 1
    assert sum(split_sizes(4, 0.5, 0.45)) == 4


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (-0.1, 0.1, "val_fraction must be a number from 0"),
        (0.2, 1.5, "test_fraction must be a number from 0"),
        (0.6, 0.4, r"val_fraction \+ test_fraction must be below 1"),
        (float("nan"), 0.1, "val_fraction must be"),
    ],
)
def test_bad_fractions_raise_data_error(val: float, test: float, match: str) -> None:
    with pytest.raises(DataError, match=match):
        validate_split_args(val, test, 0)


def test_negative_seed_raises_data_error() -> None:
    with pytest.raises(DataError, match="seed must be a non-negative integer, got -1"):
        stratified_split({"cat": _paths("cat", 3)}, val_fraction=0.2, test_fraction=0.0, seed=-1)
