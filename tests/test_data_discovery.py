from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from headstart.data import (
    Dataset,
    Sample,
    Skipped,
    collect_image_paths,
    dataset_from_lists,
    load_dataset,
)
from headstart.errors import DataError
from tests._images import write_class_folders, write_eps, write_image, write_truncated


def _names(dataset: Dataset, split: str) -> list[str]:
    return [s.path.name for s in dataset.splits.get(split, [])]


def _reasons(dataset: Dataset) -> dict[str, str]:
    return {s.path.name: s.reason for s in dataset.skipped}


# --------------------------------------------------------------------------- layouts


def test_class_folders_are_split_by_headstart(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 10, "dog": 10})
    ds = load_dataset(tmp_path, val_fraction=0.2, test_fraction=0.1, seed=0)
    assert ds.layout == "class-folders"
    assert ds.root == tmp_path
    assert ds.classes == ["cat", "dog"]
    assert list(ds.splits) == ["train", "val", "test"]
    assert ds.counts() == {
        "train": {"cat": 7, "dog": 7},
        "val": {"cat": 2, "dog": 2},
        "test": {"cat": 1, "dog": 1},
    }
    assert ds.split_spec == {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 0}
    assert ds.skipped == []


def test_samples_are_absolute_sorted_and_labelled_by_sorted_class_names(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"zebra": 3, "ant": 3})
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.classes == ["ant", "zebra"]
    train = ds.splits["train"]
    assert all(s.path.is_absolute() for s in train)
    assert train == sorted(train, key=lambda s: str(s.path))
    assert {s.path.parent.name: s.label for s in train} == {"ant": 0, "zebra": 1}


def test_both_fractions_zero_put_everything_in_train(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 4, "dog": 3})
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert list(ds.splits) == ["train"]
    assert ds.counts() == {"train": {"cat": 4, "dog": 3}}


def test_split_folders_keep_the_users_split(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", {"cat": 3, "dog": 2})
    write_class_folders(tmp_path / "val", {"cat": 1, "dog": 1})
    write_class_folders(tmp_path / "test", {"cat": 1})
    ds = load_dataset(tmp_path)
    assert ds.layout == "split-folders"
    assert ds.split_spec is None
    assert ds.counts() == {
        "train": {"cat": 3, "dog": 2},
        "val": {"cat": 1, "dog": 1},
        "test": {"cat": 1, "dog": 0},
    }


@pytest.mark.parametrize("val_name", ["valid", "validation", "Val"])
def test_split_folders_accept_val_aliases(tmp_path: Path, val_name: str) -> None:
    write_class_folders(tmp_path / "train", {"cat": 2, "dog": 2})
    write_class_folders(tmp_path / val_name, {"cat": 1, "dog": 1})
    ds = load_dataset(tmp_path)
    assert ds.counts()["val"] == {"cat": 1, "dog": 1}


def test_split_folders_without_val_hold_out_val_from_train(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", {"cat": 10, "dog": 10})
    ds = load_dataset(tmp_path, val_fraction=0.3, seed=4)
    assert ds.layout == "split-folders"
    assert list(ds.splits) == ["train", "val"]
    assert ds.counts()["val"] == {"cat": 3, "dog": 3}
    assert ds.split_spec == {"val_fraction": 0.3, "test_fraction": 0.0, "seed": 4}


def test_train_folder_of_images_is_a_class_named_train(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"train": 2, "car": 2})
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.layout == "class-folders"
    assert ds.classes == ["car", "train"]


def test_images_in_nested_subfolders_belong_to_their_class(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "a.png")
    write_image(tmp_path / "cat" / "2019" / "summer" / "b.png")
    write_image(tmp_path / "dog" / "c.png")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.counts()["train"] == {"cat": 2, "dog": 1}


def test_windows_thumbnail_caches_and_folder_settings_are_ignored(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    (tmp_path / "cat" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    (tmp_path / "dog" / "desktop.ini").write_text("[.ShellClassInfo]\n")
    write_image(tmp_path / "$RECYCLE.BIN" / "cat" / "old.png")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.classes == ["cat", "dog"]
    assert ds.skipped == []


def test_hidden_files_folders_and_macosx_are_ignored(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    write_image(tmp_path / "cat" / ".hidden.png")
    write_image(tmp_path / "cat" / ".thumbs" / "x.png")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    write_image(tmp_path / "__MACOSX" / "cat" / "._img.png")
    write_image(tmp_path / ".git" / "objects" / "x.png")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.classes == ["cat", "dog"]
    assert ds.counts()["train"] == {"cat": 2, "dog": 2}
    assert ds.skipped == []


def test_symlinked_files_and_folders_are_followed(tmp_path: Path) -> None:
    store = write_class_folders(tmp_path / "store", {"cat": 2, "dog": 2})
    data = tmp_path / "data"
    data.mkdir()
    (data / "cat").symlink_to(store / "cat", target_is_directory=True)
    (data / "dog").mkdir()
    (data / "dog" / "linked.png").symlink_to(store / "dog" / "img_000.png")
    (data / "dog" / "loop").symlink_to(data / "dog", target_is_directory=True)  # a cycle
    ds = load_dataset(data, val_fraction=0.0, test_fraction=0.0)
    assert ds.counts()["train"] == {"cat": 2, "dog": 1}
    assert (data / "cat" / "img_000.png") in {s.path for s in ds.splits["train"]}


def test_png_named_jpg_is_read_by_content(tmp_path: Path) -> None:
    write_image(tmp_path / "cat" / "photo.jpg", fmt="PNG")
    write_image(tmp_path / "dog" / "photo.jpeg", fmt="PNG")
    write_image(tmp_path / "dog" / "noext", fmt="JPEG")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.counts()["train"] == {"cat": 1, "dog": 2}


def test_split_is_reproducible_and_independent_of_creation_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_class_folders(a, {"cat": 12, "dog": 9})
    for name, n in (("dog", 9), ("cat", 12)):  # created in another order
        for i in reversed(range(n)):
            write_image(b / name / f"img_{i:03d}.png")
    first, second = load_dataset(a, seed=3), load_dataset(b, seed=3)
    for split in ("train", "val", "test"):
        assert _names(first, split) == _names(second, split)
    assert _names(load_dataset(a, seed=3), "val") == _names(first, "val")


# --------------------------------------------------------------------------- bad files


def test_every_kind_of_bad_file_is_skipped_and_listed(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "cat" / "empty.jpg").write_bytes(b"")
    (tmp_path / "cat" / "notes.txt").write_text("remember to label more dogs\n")
    write_eps(tmp_path / "dog" / "vector.jpg")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert ds.counts()["train"] == {"cat": 3, "dog": 3}
    assert _reasons(ds) == {
        "empty.jpg": "empty file (0 bytes)",
        "notes.txt": "not an image (unrecognised content)",
        "vector.jpg": "unsupported image format 'EPS'",
    }
    assert all(s.path.is_absolute() for s in ds.skipped)


def test_truncated_files_load_without_verify_and_are_skipped_with_verify(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    write_truncated(tmp_path / "cat" / "cut.jpg", "JPEG")
    write_truncated(tmp_path / "dog" / "cut.png", "PNG")
    fast = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert fast.counts()["train"] == {"cat": 3, "dog": 3}  # headers only: not detectable
    checked = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0, verify=True)
    assert checked.counts()["train"] == {"cat": 2, "dog": 2}
    reasons = _reasons(checked)
    assert reasons["cut.jpg"].startswith("truncated or corrupt JPEG: ")
    assert reasons["cut.png"].startswith("truncated or corrupt PNG: ")


def test_decompression_bomb_is_skipped_with_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    write_image(tmp_path / "dog" / "bomb.png", size=(60, 60))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0, verify=True)
    assert ds.counts()["train"] == {"cat": 2, "dog": 2}
    assert _reasons(ds)["bomb.png"].startswith("decompression bomb: ")


def test_loose_images_next_to_class_folders_are_listed_but_readme_is_not(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    write_image(tmp_path / "stray.png")
    (tmp_path / "README.md").write_text("my data\n")
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    assert _reasons(ds) == {"stray.png": "image outside any class folder (no label)"}


# --------------------------------------------------------------------------- user mistakes


def test_missing_path_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset path '.*nope' does not exist; pass a folder"):
        load_dataset(tmp_path / "nope")


def test_file_that_is_not_csv_raises_data_error(tmp_path: Path) -> None:
    path = write_image(tmp_path / "one.png")
    with pytest.raises(DataError, match=r"is a file but not a \.csv; pass the folder"):
        load_dataset(path)


def test_one_class_raises_data_error_naming_it(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3})
    with pytest.raises(
        DataError, match=r"found 1 class 'cat' in .*; a classifier needs at least two class folders"
    ):
        load_dataset(tmp_path)


def test_no_class_folders_raises_data_error(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    with pytest.raises(DataError, match="found no class folders in .*its own folder"):
        load_dataset(tmp_path)


def test_class_with_only_bad_files_raises_data_error_saying_why(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "a.txt").write_text("x")
    (tmp_path / "dog" / "b.txt").write_text("y")
    (tmp_path / "dog" / "c.jpg").write_bytes(b"")
    with pytest.raises(
        DataError,
        match=r"class 'dog' has no usable images \(3 files skipped: 2 not an image "
        r"\(unrecognised content\), 1 empty file \(0 bytes\)\); add images to .*dog",
    ):
        load_dataset(tmp_path)


def test_empty_class_folder_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3})
    (tmp_path / "dog").mkdir()
    with pytest.raises(DataError, match=r"class 'dog' has no images \(.*dog is empty\)"):
        load_dataset(tmp_path)


def test_val_class_unknown_to_train_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", {"cat": 2, "dog": 2})
    write_class_folders(tmp_path / "val", {"cat": 1, "bird": 1})
    with pytest.raises(DataError, match=r"val class 'bird' \(.*\) has no training folder"):
        load_dataset(tmp_path)


def test_val_folder_without_train_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "val", {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="found 'val' but no 'train' folder"):
        load_dataset(tmp_path)


def test_two_folders_for_the_same_split_raise_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "train", {"cat": 2, "dog": 2})
    write_class_folders(tmp_path / "val", {"cat": 1, "dog": 1})
    write_class_folders(tmp_path / "validation", {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="found both 'val' and 'validation'"):
        load_dataset(tmp_path)


def test_bad_fraction_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    with pytest.raises(DataError, match="val_fraction must be"):
        load_dataset(tmp_path, val_fraction=1.2)


def test_errors_are_one_line(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3})
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- known classes


def test_known_classes_index_labels_and_allow_missing_classes(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"dog": 2})
    ds = load_dataset(tmp_path, classes=["zebra", "dog", "cat"], val_fraction=0, test_fraction=0)
    assert ds.classes == ["zebra", "dog", "cat"]
    assert {s.label for s in ds.splits["train"]} == {1}
    assert ds.counts()["train"] == {"zebra": 0, "dog": 2, "cat": 0}


def test_known_classes_accept_test_folder_without_train(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "test", {"cat": 2})
    ds = load_dataset(tmp_path, classes=["cat", "dog"])
    assert list(ds.splits) == ["test"]


def test_folder_class_unknown_to_known_classes_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 1, "bird": 1})
    with pytest.raises(
        DataError, match=r"class folder '.*bird' is not one of the known classes \('cat', 'dog'\)"
    ):
        load_dataset(tmp_path, classes=["cat", "dog"])


# --------------------------------------------------------------------------- CSV


def test_csv_with_split_column_and_relative_paths(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "imgs", {"cat": 3, "dog": 3})
    rows = ["Path,Label,Split,notes"]
    rows += [f"imgs/cat/img_{i:03d}.png,cat,{s},x" for i, s in enumerate(["train", "train", "val"])]
    rows += [
        f"imgs/dog/img_{i:03d}.png,dog,{s},y" for i, s in enumerate(["train", "valid", "test"])
    ]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    ds = load_dataset(csv_path)
    assert ds.layout == "csv"
    assert ds.root == csv_path
    assert ds.split_spec is None
    assert ds.counts() == {
        "train": {"cat": 2, "dog": 1},
        "val": {"cat": 1, "dog": 1},
        "test": {"cat": 0, "dog": 1},
    }


def test_csv_without_split_column_is_split_by_headstart(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "imgs", {"cat": 10, "dog": 10})
    lines = ["path,label"] + [
        f"{tmp_path}/imgs/{c}/img_{i:03d}.png,{c}" for c in ("cat", "dog") for i in range(10)
    ]
    csv_path = tmp_path / "sub" / "labels.csv"  # absolute paths work from any folder
    csv_path.parent.mkdir()
    csv_path.write_text("\n".join(lines) + "\n")
    ds = load_dataset(csv_path, val_fraction=0.2, test_fraction=0.1, seed=1)
    assert ds.counts()["val"] == {"cat": 2, "dog": 2}
    assert ds.split_spec == {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 1}


def test_csv_split_matches_class_folder_split(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "data", {"cat": 9, "dog": 7})
    lines = ["path,label"] + [
        f"data/{c}/img_{i:03d}.png,{c}" for c, n in (("cat", 9), ("dog", 7)) for i in range(n)
    ]
    (tmp_path / "l.csv").write_text("\n".join(lines))
    from_csv = load_dataset(tmp_path / "l.csv", seed=2)
    from_folders = load_dataset(tmp_path / "data", seed=2)
    for split in ("train", "val", "test"):
        assert [s.path for s in from_csv.splits[split]] == [
            s.path for s in from_folders.splits[split]
        ]


def test_csv_missing_file_is_skipped(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    lines = ["path,label", "cat/img_000.png,cat", "cat/img_001.png,cat", "cat/gone.png,cat"]
    lines += ["dog/img_000.png,dog", "dog/img_001.png,dog"]
    (tmp_path / "l.csv").write_text("\n".join(lines))
    ds = load_dataset(tmp_path / "l.csv", val_fraction=0, test_fraction=0)
    assert _reasons(ds) == {"gone.png": "file not found"}
    assert ds.counts()["train"] == {"cat": 2, "dog": 2}


def test_csv_without_needed_columns_names_the_columns_found(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("file,class\na.png,cat\n")
    with pytest.raises(
        DataError, match=r"needs a header with columns path,label .*'file', 'class'"
    ):
        load_dataset(tmp_path / "l.csv")


def test_csv_without_path_and_label_columns_says_how_to_name_them(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("filename,class\na.png,cat\n")
    with pytest.raises(
        DataError, match=r"found columns: 'filename', 'class'; .*--path-column and --label-column"
    ):
        load_dataset(tmp_path / "l.csv")


@pytest.mark.parametrize(("mark", "name"), [(";", "semicolons"), ("\t", "tabs")])
def test_csv_separated_by_semicolons_or_tabs_says_so_not_to_name_columns(
    tmp_path: Path, mark: str, name: str
) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text(f"path{mark}label\na.png{mark}cat\n")
    with pytest.raises(DataError, match=f"is separated by {name}, not commas") as info:
        load_dataset(tmp_path / "l.csv")
    assert "--path-column" not in str(info.value)


def test_csv_columns_can_be_named_for_a_csv_made_elsewhere(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "imgs", {"cat": 3, "dog": 3})
    rows = ["ID,Filename,Class,Fold"]
    for name in ("cat", "dog"):
        for i, fold in enumerate(["train", "train", "val"]):
            rows.append(f"{i},imgs/{name}/img_{i:03d}.png,{name},{fold}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(
        tmp_path / "l.csv", path_column="filename", label_column="Class", split_column="fold"
    )
    assert ds.counts() == {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}}
    assert ds.split_spec is None
    assert ds.summary()["columns"] == {
        "path_column": "filename",
        "label_column": "Class",
        "split_column": "fold",
    }
    no_split = load_dataset(tmp_path / "l.csv", path_column="filename", label_column="Class")
    assert no_split.split_spec is not None  # no "split" column: headstart splits


def test_csv_split_column_named_but_missing_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("filename,class\na.png,cat\n")
    with pytest.raises(DataError, match=r"needs a header with columns filename,class,fold; found"):
        load_dataset(
            tmp_path / "l.csv", path_column="filename", label_column="class", split_column="fold"
        )


def test_csv_column_options_on_a_folder_raise_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    with pytest.raises(
        DataError, match=r"--label-column \(label_column=\) names a column of a CSV"
    ):
        load_dataset(tmp_path, label_column="class")


def test_verify_dataset_drops_undecodable_files_after_the_split_as_training_does(
    tmp_path: Path,
) -> None:
    from headstart.data import verify_dataset

    write_class_folders(tmp_path, {"cat": 10, "dog": 10})
    write_truncated(tmp_path / "cat" / "img_004.jpg", "JPEG")  # sorts among the cats
    listed = load_dataset(tmp_path)
    checked = verify_dataset(listed, workers=2)
    cut = tmp_path / "cat" / "img_004.jpg"
    assert checked == listed.without({cut: _reasons(checked)["img_004.jpg"]})
    assert _reasons(checked)["img_004.jpg"].startswith("truncated or corrupt JPEG")
    assert verify_dataset(listed, known={cut}) == listed  # known to decode: not opened


def test_the_dataset_model_lives_in_its_own_module() -> None:
    from headstart.data import dataset

    assert (dataset.Dataset, dataset.Sample, dataset.Skipped) == (Dataset, Sample, Skipped)


def test_csv_with_unknown_split_value_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label,split\na.png,cat,train\nb.png,dog,holdout\n")
    with pytest.raises(DataError, match=r"row 3 of .* has split 'holdout'; use train, val or test"):
        load_dataset(tmp_path / "l.csv")


def test_csv_label_only_in_val_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 1, "dog": 1, "bird": 1})
    (tmp_path / "l.csv").write_text(
        "path,label,split\ncat/img_000.png,cat,train\ndog/img_000.png,dog,train\n"
        "bird/img_000.png,bird,val\n"
    )
    with pytest.raises(DataError, match=r"label 'bird' \(row 4 .*\) is in the val split but never"):
        load_dataset(tmp_path / "l.csv")


def test_csv_file_listed_twice_with_two_labels_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,dog\na.png,dog\n")
    with pytest.raises(DataError, match=r"a\.png is given twice .*row 2.*row 4"):
        load_dataset(tmp_path / "l.csv")


def test_csv_with_one_label_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\n")
    with pytest.raises(DataError, match="found 1 label 'cat' in .*l.csv; a classifier needs"):
        load_dataset(tmp_path / "l.csv")


def test_csv_where_nothing_exists_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "l.csv").write_text("path,label\na.png,cat\nb.png,dog\n")
    with pytest.raises(DataError, match=r"class 'cat' has no usable images \(1 file skipped: "):
        load_dataset(tmp_path / "l.csv")


# --------------------------------------------------------------------------- lists


def test_dataset_from_lists_splits_and_records_the_spec(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 10, "dog": 10})
    paths = sorted(tmp_path.glob("*/*.png"))
    labels = [p.parent.name for p in paths]
    ds = dataset_from_lists(paths, labels, val_fraction=0.2, seed=0)
    assert ds.layout == "lists"
    assert ds.root == tmp_path
    assert list(ds.splits) == ["train", "val"]
    assert ds.counts()["val"] == {"cat": 2, "dog": 2}
    assert ds.split_spec == {"val_fraction": 0.2, "test_fraction": 0.0, "seed": 0}


def test_dataset_from_lists_with_own_val_set_is_not_split(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3, "dog": 3})
    train = [tmp_path / c / f"img_{i:03d}.png" for c in ("cat", "dog") for i in (0, 1)]
    val = [tmp_path / c / "img_002.png" for c in ("cat", "dog")]
    ds = dataset_from_lists(
        [str(p) for p in train],
        ["cat", "cat", "dog", "dog"],
        val_paths=val,
        val_labels=["cat", "dog"],
    )
    assert ds.split_spec is None
    assert ds.counts() == {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}}


def test_dataset_from_lists_with_mismatched_lengths_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="got 2 paths but 1 labels"):
        dataset_from_lists([tmp_path / "a.png", tmp_path / "b.png"], ["cat"])


def test_dataset_from_lists_with_unknown_val_label_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    paths = sorted(tmp_path.glob("*/*.png"))
    extra = write_image(tmp_path / "extra" / "bird.png")
    with pytest.raises(
        DataError,
        match=r"label 'bird' \(val_paths\[0\] of the lists\) is in the val split but never",
    ):
        dataset_from_lists(
            paths, [p.parent.name for p in paths], val_paths=[extra], val_labels=["bird"]
        )


def test_dataset_from_lists_with_a_file_in_train_and_val_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    paths = sorted(tmp_path.glob("*/*.png"))
    with pytest.raises(DataError, match=r"img_000\.png is given twice in the lists \(paths\[0\]"):
        dataset_from_lists(
            paths, [p.parent.name for p in paths], val_paths=[paths[0]], val_labels=["cat"]
        )


# --------------------------------------------------------------------------- Dataset methods


def test_without_moves_failed_files_to_skipped(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3, "dog": 3})
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    bad = tmp_path / "cat" / "img_001.png"
    smaller = ds.without({bad: "truncated or corrupt PNG: broken"})
    assert smaller.counts()["train"] == {"cat": 2, "dog": 3}
    assert Skipped(bad, "truncated or corrupt PNG: broken") in smaller.skipped
    assert ds.counts()["train"] == {"cat": 3, "dog": 3}  # the original is unchanged


def test_without_leaving_a_train_class_empty_raises_data_error(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 1, "dog": 3})
    ds = load_dataset(tmp_path, val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(DataError, match=r"class 'cat' has no usable training images left"):
        ds.without({tmp_path / "cat" / "img_000.png": "truncated or corrupt PNG: x"})


def test_without_keeps_relaxed_checks_for_evaluation_data(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 1, "dog": 2})
    ds = load_dataset(tmp_path, classes=["cat", "dog"], val_fraction=0, test_fraction=0)
    smaller = ds.without({tmp_path / "cat" / "img_000.png": "truncated or corrupt PNG: x"})
    assert smaller.counts()["train"] == {"cat": 0, "dog": 2}


def test_summary_is_json_serialisable(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 3, "dog": 3})
    (tmp_path / "dog" / "x.txt").write_text("x")
    summary = load_dataset(tmp_path).summary()
    assert json.loads(json.dumps(summary)) == summary
    assert set(summary) == {"root", "layout", "classes", "counts", "split_spec", "skipped"}
    assert summary["skipped"] == [
        {"path": str(tmp_path / "dog" / "x.txt"), "reason": "not an image (unrecognised content)"}
    ]


def test_samples_are_frozen(tmp_path: Path) -> None:
    sample = Sample(tmp_path / "a.png", 0)
    with pytest.raises(AttributeError):
        sample.label = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- predict inputs


def test_collect_image_paths_reads_folders_and_lists_missing_paths(tmp_path: Path) -> None:
    write_image(tmp_path / "imgs" / "b.png")
    write_image(tmp_path / "imgs" / "sub" / "a.jpg", fmt="JPEG")
    write_image(tmp_path / "imgs" / ".hidden.png")
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    single = write_image(tmp_path / "single.png")
    images, skipped = collect_image_paths([single, tmp_path / "missing.jpg", tmp_path / "imgs"])
    assert images == [single, tmp_path / "imgs" / "b.png", tmp_path / "imgs" / "sub" / "a.jpg"]
    assert skipped == [
        Skipped(tmp_path / "missing.jpg", "file not found"),
        Skipped(tmp_path / "imgs" / "notes.txt", "not an image (unrecognised content)"),
    ]


def test_collect_image_paths_returns_absolute_paths_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(tmp_path / "a.png")
    monkeypatch.chdir(tmp_path)
    images, skipped = collect_image_paths(["a.png", "a.png", "."])
    assert images == [tmp_path / "a.png"]
    assert skipped == []


def test_data_package_does_not_import_torch() -> None:
    # Bypass headstart/__init__.py (which may import the estimator): this pins headstart.data's
    # own imports, the bottom layer.
    src = Path(__file__).parents[1] / "src" / "headstart"
    code = (
        "import sys, types; pkg = types.ModuleType('headstart'); "
        f"pkg.__path__ = [{str(src)!r}]; sys.modules['headstart'] = pkg; "
        "import headstart.data; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_csv_path_holding_a_nul_byte_is_skipped_as_not_found(tmp_path: Path) -> None:
    write_class_folders(tmp_path, {"cat": 1, "dog": 1})
    (tmp_path / "l.csv").write_text(
        "path,label\ncat/img_000.png,cat\ndog/img_000.png,dog\ncat/img_000.png\x00.txt,dog\n"
    )
    ds = load_dataset(tmp_path / "l.csv", val_fraction=0.0, test_fraction=0.0)
    assert [s.reason for s in ds.skipped] == ["file not found (its name holds a NUL byte)"]
