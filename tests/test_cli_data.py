from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.cli.main import main
from tests._images import write_class_folders


def test_data_command_prints_layout_counts_and_skipped_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path, {"cat": 10, "dog": 5})
    (tmp_path / "dog" / "notes.txt").write_text("x")
    assert main(["data", str(tmp_path), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"dataset:  {tmp_path}" in out
    assert "layout:   class-folders" in out
    assert "split:    made by headstart (val_fraction 0.2, test_fraction 0.1, seed 1)" in out
    table = [line for line in out.splitlines() if line.startswith(("class ", "cat ", "dog "))]
    assert table == [
        "class  train  val  test  total",
        "cat        7    2     1     10",
        "dog        3    1     1      5",
    ]
    assert "total     10    3     2     15" in out
    assert "skipped 1 file:" in out
    assert "notes.txt: not an image (unrecognised content)" in out


def test_data_command_options_change_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path, {"cat": 10, "dog": 10})
    assert main(["data", str(tmp_path), "--val-fraction", "0.5", "--test-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "class  train  val  total" in out
    assert "cat        5    5     10" in out


def test_data_command_lists_first_20_skipped_then_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    for i in range(25):
        (tmp_path / "cat" / f"junk_{i:02d}.txt").write_text("x")
    assert main(["data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skipped 25 files:" in out
    assert sum(": not an image" in line for line in out.splitlines()) == 20
    assert "  ... 5 more" in out


def test_data_command_verify_finds_truncated_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests._images import write_truncated

    write_class_folders(tmp_path, {"cat": 2, "dog": 2})
    write_truncated(tmp_path / "cat" / "cut.jpg", "JPEG")
    assert main(["data", str(tmp_path), "--verify"]) == 0
    assert "cut.jpg: truncated or corrupt JPEG" in capsys.readouterr().out


def test_data_command_json_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path / "train", {"cat": 2, "dog": 2})
    write_class_folders(tmp_path / "val", {"cat": 1, "dog": 1})
    assert main(["data", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "split-folders"
    assert summary["classes"] == ["cat", "dog"]
    assert summary["counts"] == {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}}
    assert summary["split_spec"] is None
    assert summary["skipped"] == []


def test_data_command_bad_path_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: dataset path ")
    assert "does not exist" in captured.err
    assert captured.err.count("\n") == 1


def test_data_command_one_class_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path, {"cat": 3})
    assert main(["data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: found 1 class 'cat' in ")
    assert err.count("\n") == 1


def test_image_over_the_pixel_limit_is_listed_without_pillows_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from PIL import Image

    from tests._images import write_image

    write_class_folders(tmp_path, {"cat": 3, "dog": 3})  # 8x6 images
    write_image(tmp_path / "cat" / "huge.png", size=(40, 30))  # 1200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over it, but under Pillow's 2x error
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as outside pytest: warnings are printed
        assert main(["data", str(tmp_path), "--verify"]) == 0
    captured = capsys.readouterr()
    assert "huge.png: decompression bomb: 1,200 pixels exceeds the limit of 1,000" in captured.out
    assert "DecompressionBombWarning" not in captured.err


def test_data_command_counts_what_training_uses_and_lists_a_corrupt_jpeg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    import headstart.data.discovery as discovery
    from headstart import ImageClassifier
    from tests._images import write_truncated

    data = write_class_folders(tmp_path / "data", {"cat": 10, "dog": 10})
    cut = write_truncated(data / "cat" / "img_004.jpg", "JPEG")
    assert main(["data", str(data), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny classes
        clf = ImageClassifier(
            "test_resnet", weights="none", strategy="features", num_workers=0, quiet=True
        ).fit(data)
    assert listed["counts"] == clf.dataset_["counts"]
    # 21 files listed by their headers, the corrupt one dropped after the split
    assert sum(sum(per_class.values()) for per_class in listed["counts"].values()) == 20
    assert listed["skipped"] == clf.dataset_["skipped"]
    assert [s["path"] for s in listed["skipped"]] == [str(cut)]
    assert listed["skipped"][0]["reason"].startswith("truncated or corrupt JPEG")

    # Warm: the files training decoded are taken on the cache's word, not opened again.
    opened: list[Path] = []
    original = discovery.image_problem

    def counting(path: Path, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(path)
        return original(path, **kwargs)

    monkeypatch.setattr(discovery, "image_problem", counting)
    assert main(["data", str(data)]) == 0
    assert set(opened) == {cut}
    assert f"{cut}: truncated or corrupt JPEG" in capsys.readouterr().out
    opened.clear()
    assert main(["data", str(data), "--quick", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == []  # headers only: not seen


def test_data_command_reads_a_csv_with_named_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_class_folders(tmp_path / "imgs", {"cat": 4, "dog": 4})
    rows = ["filename,class"] + [
        f"imgs/{name}/img_{i:03d}.png,{name}" for name in ("cat", "dog") for i in range(4)
    ]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", str(tmp_path / "l.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "found columns: 'filename', 'class'" in err and "--path-column" in err
    argv = ["data", str(tmp_path / "l.csv"), "--path-column", "filename", "--label-column", "class"]
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layout"] == "csv"
    assert main(argv) == 0
    assert "columns:  path 'filename', label 'class'" in capsys.readouterr().out
    assert sum(sum(c.values()) for c in summary["counts"].values()) == 8


def test_output_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    write_class_folders(tmp_path, {"cat": 3, "dog": 3})
    read, write = os.pipe()
    os.close(read)  # as `headstart data DATA | head -1` once head has its line
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "headstart", "data", str(tmp_path), "-q"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.stderr == ""  # no traceback, no "Exception ignored"
    assert done.returncode == 1


def test_data_command_shows_the_progress_of_its_decoding_unless_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_class_folders(tmp_path, {"cat": 6, "dog": 6})
    # Twelve images decode within a second, which shows no progress at all: count every step.
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 0.0)

    assert main(["data", str(tmp_path), "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert "checking images: 12/12 img" in err

    assert main(["data", str(tmp_path), "--no-cache", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_data_command_shows_no_progress_for_a_step_done_within_the_quiet_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_class_folders(tmp_path, {"cat": 6, "dog": 6})
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 60.0)  # however busy the machine

    assert main(["data", str(tmp_path), "--no-cache"]) == 0
    assert "checking images" not in capsys.readouterr().err
