"""`headstart features`: a chosen stage, a run's own features, and images without labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headstart.cli.main import main
from tests._images import write_image

FAST = ["--weights", "none", "--workers", "0", "-q"]


def _features(data: list[str], out: Path, *options: str) -> np.lib.npyio.NpzFile:
    argv = ["features", *data, "--out", str(out), "--cache-dir", str(out.parent / "c")]
    assert main([*argv, *options]) == 0
    return np.load(out)


def test_features_layer_pools_the_stage_asked_for(colour_data: Path, tmp_path: Path) -> None:
    last = _features([str(colour_data)], tmp_path / "last.npz", "--model", "test_resnet", *FAST)
    stage = _features(
        [str(colour_data)],
        tmp_path / "l2.npz",
        "--model",
        "test_resnet",
        "--layer",
        "layer2",
        *FAST,
    )
    assert last["features"].shape == (48, 96)
    assert stage["features"].shape == (48, 48)  # test_resnet's layer2 has 48 channels
    np.testing.assert_array_equal(stage["paths"], last["paths"])


def test_features_of_a_run_folder_are_those_its_head_reads(
    colour_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train = ["train", str(colour_data), "--out", str(run), "--model", "test_resnet"]
    assert main([*train, "--strategy", "features", "--layer", "layer2", *FAST]) == 0
    capsys.readouterr()
    own = _features([str(colour_data)], tmp_path / "own.npz", "--model", f"local-dir:{run}")
    assert "48 features each (stage layer2)" in capsys.readouterr().out
    direct = _features(
        [str(colour_data)],
        tmp_path / "l2.npz",
        "--model",
        "test_resnet",
        "--layer",
        "layer2",
        *FAST,
    )
    # The run's backbone is test_resnet's seeded random init, so its layer2 features are these.
    np.testing.assert_allclose(own["features"], direct["features"], rtol=1e-5, atol=1e-6)
    again = _features(
        [str(colour_data)], tmp_path / "l4.npz", "--model", f"local-dir:{run}", "--layer", "-1"
    )
    assert again["features"].shape == (48, 96)  # --layer still picks any stage of it


def test_features_of_images_without_labels_have_paths_and_no_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flat = tmp_path / "flat"
    for i in range(3):
        write_image(flat / f"img_{i}.png", color=(i * 60, 20, 20))
    (flat / "notes.txt").write_text("not an image")
    loose = write_image(tmp_path / "loose.jpg", fmt="JPEG")
    got = _features([str(flat)], tmp_path / "flat.npz", "--model", "test_resnet", *FAST)
    assert set(got.files) == {"features", "paths"}
    assert got["features"].shape == (3, 96)
    captured = capsys.readouterr()
    assert "3 images: 3 computed, 0 from cache" in captured.out
    assert f"skipped {flat / 'notes.txt'}: not an image" in captured.err
    both = _features(
        [str(loose), str(flat / "img_2.png")], tmp_path / "b.npz", "--model", "test_resnet", *FAST
    )
    assert list(both["paths"]) == [str(loose), str(flat / "img_2.png")]  # the order given


def test_features_of_no_images_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main(["features", str(tmp_path), "--model", "test_resnet", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: found no images in ") and err.count("\n") == 1


def test_features_split_follows_the_split_options_of_train(
    colour_data: Path, tmp_path: Path
) -> None:
    flat = tmp_path / "flat"
    for name in ("red", "green"):
        for i in range(10):
            write_image(flat / name / f"{i}.png", color=(i * 20, 30, 30))
    got = _features(
        [str(flat)], tmp_path / "s.npz", "--model", "test_resnet", "--val-fraction", "0.5", *FAST
    )
    splits = list(got["split"])
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (8, 10, 2)
