"""Multi-label data: label cells with several labels, merging repeats, the iterative split, and
what `headstart data` says about the labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.cli.main import main
from headstart.data import dataset_from_lists, load_dataset
from headstart.data.iterative_split import iterative_split
from headstart.data.multilabel import label_facts
from headstart.errors import DataError
from tests._images import write_image


def _write_csv(root: Path, rows: list[tuple[str, str]], header: str = "path,label") -> Path:
    for name, _ in rows:
        if not (root / name).exists():
            write_image(root / name, color=(len(name) * 9 % 256, 40, 80))
    lines = [header, *(f"{name},{label}" for name, label in rows)]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


def _grid_rows(n: int) -> list[tuple[str, str]]:
    """n images with 0-3 of the labels a, b, c in a fixed pattern (every label often enough)."""
    patterns = ["a;b", "a", "b;c", "", "c", "a;b;c", "a;c", "b"]
    return [(f"img_{i:03d}.png", patterns[i % len(patterns)]) for i in range(n)]


def test_csv_with_several_labels_a_row_reads_as_multi_label(tmp_path: Path) -> None:
    dataset = load_dataset(_write_csv(tmp_path, _grid_rows(40)), seed=0)
    assert dataset.multi_label
    assert dataset.classes == ["a", "b", "c"]
    by_path = {s.path.name: s for split in dataset.splits.values() for s in split}
    assert by_path["img_000.png"].labels == (0, 1)
    assert by_path["img_003.png"].labels == ()  # an empty cell: a negative for every label
    assert by_path["img_005.png"].labels == (0, 1, 2)
    assert all(s.label == -1 for s in by_path.values())
    assert dataset.summary()["multi_label"] is True


def test_single_label_csv_is_not_multi_label_and_its_summary_is_unchanged(tmp_path: Path) -> None:
    dataset = load_dataset(_write_csv(tmp_path, [("a.png", "cat"), ("b.png", "dog")]))
    assert not dataset.multi_label
    assert "multi_label" not in dataset.summary()
    assert all(s.labels is None for split in dataset.splits.values() for s in split)


def test_multi_label_flag_reads_one_label_a_row_as_a_label_set(tmp_path: Path) -> None:
    rows = [(f"i{i}.png", "cat" if i % 2 else "dog") for i in range(10)]
    dataset = load_dataset(_write_csv(tmp_path, rows), multi_label=True)
    assert dataset.multi_label
    assert {s.labels for split in dataset.splits.values() for s in split} == {(0,), (1,)}


def test_file_listed_twice_in_a_multi_label_csv_merges_its_labels(tmp_path: Path) -> None:
    rows = [*_grid_rows(16), ("img_001.png", "c")]  # img_001 is "a" above
    dataset = load_dataset(_write_csv(tmp_path, rows))
    by_path = {s.path.name: s for split in dataset.splits.values() for s in split}
    assert by_path["img_001.png"].labels == (0, 2)
    assert sum(len(split) for split in dataset.splits.values()) == 16


def test_file_in_two_splits_of_a_multi_label_csv_raises_data_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "l.csv").write_text(
        "path,label,split\na.png,x;y,train\nb.png,x,train\na.png,y,val\n"
    )
    with pytest.raises(DataError, match=r"a\.png is given twice .*split train.*split val"):
        load_dataset(tmp_path / "l.csv")


@pytest.mark.parametrize("cell", ["a;;b", "a;", "a; ;b"])
def test_empty_label_between_separators_raises_data_error(tmp_path: Path, cell: str) -> None:
    rows = [*_grid_rows(8), ("odd.png", f'"{cell}"')]
    with pytest.raises(DataError, match=r"row 10 of .*labels\.csv has an empty label"):
        load_dataset(_write_csv(tmp_path, rows))


def test_whitespace_only_label_in_a_list_raises_data_error(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png") for i in range(3)]
    with pytest.raises(DataError, match=r"paths\[1\] of the lists has an empty label"):
        dataset_from_lists(paths, [["a"], ["a", "  "], []])


def test_label_with_no_positive_in_train_raises_data_error(tmp_path: Path) -> None:
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name)
    (tmp_path / "l.csv").write_text(
        "path,label,split\na.png,x;y,train\nb.png,,train\nc.png,z,val\n"
    )
    with pytest.raises(DataError, match=r"label 'z' has no positive image in train"):
        load_dataset(tmp_path / "l.csv")


def test_label_on_every_training_image_raises_data_error(tmp_path: Path) -> None:
    rows = [(f"i{i}.png", "x;y" if i % 2 else "x") for i in range(6)]
    with pytest.raises(DataError, match=r"label 'x' is on every training image"):
        load_dataset(_write_csv(tmp_path, rows), val_fraction=0, test_fraction=0)


def test_rows_with_no_label_only_raise_data_error_without_crashing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"found no labels in .*needs at least one label"):
        load_dataset(_write_csv(tmp_path, [("a.png", ""), ("b.png", "")]))


def test_lists_of_label_lists_make_a_multi_label_dataset(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png") for i in range(10)]
    labels = [["dog", "ball"] if i % 3 == 0 else ["dog"] if i % 3 == 1 else [] for i in range(10)]
    dataset = dataset_from_lists(paths, labels, val_fraction=0.2)
    assert dataset.multi_label
    assert dataset.classes == ["ball", "dog"]


def test_multi_label_flag_for_a_folder_raises_data_error(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "a.png")
    write_image(tmp_path / "dog" / "b.png")
    with pytest.raises(DataError, match="multi-label data is read from a CSV file"):
        load_dataset(tmp_path, multi_label=True)


def test_iterative_split_puts_every_label_in_every_split_where_it_can() -> None:
    # Label 3 is rare (3 positives): a random 70/20/10 split often loses it from val or test.
    label_sets = [[i % 3] + ([3] if i in (5, 17, 29) else []) for i in range(60)]
    splits = iterative_split(label_sets, 4, val_fraction=0.2, test_fraction=0.1, seed=0)
    for label in range(4):
        present = {s for s, labels in zip(splits, label_sets, strict=True) if label in labels}
        assert present == {"train", "val", "test"}
    assert [splits.count(s) for s in ("train", "val", "test")] == [42, 12, 6]


def test_iterative_split_is_reproducible_from_the_seed() -> None:
    label_sets = [[i % 4, (i * 7) % 5] for i in range(50)] + [[] for _ in range(10)]
    one = iterative_split(label_sets, 5, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert one == iterative_split(label_sets, 5, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert one != iterative_split(label_sets, 5, val_fraction=0.2, test_fraction=0.2, seed=4)


def test_multi_label_split_does_not_depend_on_row_order(tmp_path: Path) -> None:
    rows = _grid_rows(30)
    first = load_dataset(_write_csv(tmp_path, rows), seed=2)
    second = load_dataset(_write_csv(tmp_path, rows[::-1]), seed=2)
    assert first.splits == second.splits


def test_label_facts_find_few_validation_positives_and_labels_always_together(
    tmp_path: Path,
) -> None:
    rows = [(f"i{i:02d}.png", "x;y" if i % 2 else "z") for i in range(20)]
    facts = label_facts(load_dataset(_write_csv(tmp_path, rows), seed=0))
    assert facts["always_together"] == [["x", "y"]]
    assert facts["few_to_validate"] == ["x", "y", "z"]  # 20% of 10 positives: 2 each
    assert sum(facts["positives"]["val"].values()) == 6


def test_data_command_shows_positives_per_label_and_what_to_look_at(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(f"i{i:02d}.png", "x;y" if i % 2 else "z" if i % 4 else "") for i in range(20)]
    assert main(["data", str(_write_csv(tmp_path, rows)), "--test-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "labels:   3, several an image (positive images per split)" in out
    table = [line for line in out.splitlines() if line.startswith(("label ", "x ", "(no"))]
    assert table == [
        "label       train  val  total",
        "x               8    2     10",
        "(no label)      4    1      5",
    ]
    assert "images: 16 train, 4 val" in out
    assert "too few validation positives (< 5) to choose a threshold on: x, y, z" in out
    assert "'x' and 'y' are on exactly the same images" in out


def test_data_command_json_has_label_facts_for_multi_label_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(f"i{i}.png", "cat" if i % 2 else "dog") for i in range(10)]
    assert main(["data", str(_write_csv(tmp_path, rows)), "--multi-label", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["multi_label"] is True
    assert set(summary["label_facts"]["positives"]) == {"train", "val", "test"}


def _varied_image(path: Path, seed: int) -> Path:
    """A noise image: distinct pictures, so only planted copies are duplicates."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


def test_doctor_reports_label_problems_and_copies_with_different_label_sets(
    tmp_path: Path,
) -> None:
    import shutil

    from headstart.doctor import diagnose

    rows = []
    for i in range(24):
        _varied_image(tmp_path / f"i{i:02d}.png", i)
        rows.append(f"i{i:02d}.png,{'x;y' if i % 2 else 'z'}")
    shutil.copy(tmp_path / "i00.png", tmp_path / "copy.png")  # i00 is "z"
    rows.append("copy.png,x;y;z")
    (tmp_path / "l.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    report = diagnose(tmp_path / "l.csv", quiet=True, near_threshold=None)
    codes = {f.code: f for f in report.findings}
    assert codes["labels-always-together"].details == {"labels": ["x", "y"]}
    assert "few-val-positives" in codes
    assert report.stats["label_facts"]["positives"]["train"]["z"] > 0
    conflict = codes["conflicting-labels"]
    assert {p.name for p in conflict.paths} == {"i00.png", "copy.png"}
