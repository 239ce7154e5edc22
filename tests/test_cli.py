"""The train / evaluate / predict / info / features commands, through main()."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from headstart.cli.main import main

FAST = ["--model", "test_resnet", "--weights", "none", "--epochs", "10", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, colour_data: Path) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    cache = tmp_path_factory.mktemp("clicache")
    assert (
        main(["train", str(colour_data), "--out", str(run), "--cache-dir", str(cache), *FAST]) == 0
    )
    return run


def test_train_writes_a_complete_run_folder(trained_run: Path) -> None:
    for name in ("config.json", "model.safetensors", "history.csv", "metrics.json"):
        assert (trained_run / name).is_file()
    config = json.loads((trained_run / "config.json").read_text())["headstart"]
    if config["head"]["kind"] == "mlp" or config["strategy"] != "features":
        assert (trained_run / "curves.png").is_file()


def test_evaluate_json_has_the_promised_keys(trained_run, colour_data, capsys) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(trained_run), str(colour_data), "--json", "--workers", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"accuracy", "n", "classes", "confusion_matrix", "per_class"} <= set(out)
    assert out["n"] == 12 and out["split"] == "test"


def test_predict_json_lists_errors_and_exits_nonzero_for_a_bad_file(
    trained_run, colour_data, tmp_path, capsys
) -> None:
    good = sorted((colour_data / "test" / "red").iterdir())[0]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    capsys.readouterr()
    code = main(
        [
            "predict",
            str(trained_run),
            str(good),
            str(bad),
            str(tmp_path / "missing.png"),
            "--json",
            "--top-k",
            "2",
            "--workers",
            "0",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    by_path = {Path(row["path"]).name: row for row in out}
    assert by_path[good.name]["label"] == "red"
    assert len(by_path[good.name]["top_k"]) == 2
    assert "error" in by_path["broken.jpg"] and "error" in by_path["missing.png"]


def test_predict_a_folder_predicts_every_image(trained_run, colour_data, capsys) -> None:
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(colour_data / "test"), "--workers", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12


def test_predict_prints_files_in_the_order_given(trained_run, colour_data, tmp_path, capsys):
    red, green = sorted((colour_data / "test" / "red").iterdir())[:2]
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(green, folder / "b.png")
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    given = [red, garbage, tmp_path / "nosuch.jpg", folder, green]
    expected = [str(red), str(garbage), str(tmp_path / "nosuch.jpg")]
    expected += [str(folder / "a.jpg"), str(folder / "b.png"), str(green)]
    command = ["predict", str(trained_run), *map(str, given), "--workers", "0"]
    capsys.readouterr()
    assert main(command) == 1
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == expected
    assert main([*command, "--json"]) == 1
    assert [row["path"] for row in json.loads(capsys.readouterr().out)] == expected


def test_info_describes_model_training_and_preprocessing(trained_run, capsys) -> None:
    assert main(["info", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "test_resnet" in out and "test acc:" in out and "preprocessing" in out


def test_features_exports_npz_with_labels_paths_and_classes(colour_data, tmp_path, capsys):
    out = tmp_path / "feats.npz"
    args = [
        "features",
        str(colour_data),
        "--out",
        str(out),
        "--model",
        "test_resnet",
        "--weights",
        "none",
        "--workers",
        "0",
        "-q",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    data = np.load(out)
    assert data["features"].shape[0] == len(data["labels"]) == len(data["paths"]) == 48
    assert list(data["classes"]) == ["blue", "green", "red"]
    assert set(data["split"]) == {"train", "val", "test"}
    assert main(args) == 0
    assert "0 computed, 48 from cache" in capsys.readouterr().out


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def test_train_on_missing_folder_exits_2_with_one_line(tmp_path, capsys) -> None:
    assert main(["train", str(tmp_path / "nope"), *FAST]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_train_with_unknown_backbone_exits_2_with_a_suggestion(colour_data, capsys) -> None:
    args = ["train", str(colour_data), "--model", "resnet5O", "--workers", "0", "-q"]
    assert main(args) == 2
    assert "resnet5" in _one_line_error(capsys)


def test_predict_on_only_empty_folders_says_so_and_exits_2(trained_run, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    (empty / "nested").mkdir(parents=True)
    capsys.readouterr()
    assert main(["predict", str(trained_run), str(empty), "--workers", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        f"error: No files found in {str(empty)!r}; pass image files or folders that hold them."
    ]


def test_predict_with_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys) -> None:
    assert main(["predict", str(tmp_path), str(tmp_path)]) == 2
    assert "not a finished headstart run" in _one_line_error(capsys)


def test_every_command_says_the_same_for_a_missing_run(tmp_path, capsys) -> None:
    run, image = str(tmp_path / "nosuch"), str(tmp_path / "x.png")
    commands = [
        ["info", run],
        ["predict", run, image],
        ["evaluate", run, str(tmp_path)],
        ["export", run],
        ["explain", run, image, "--out", str(tmp_path / "cam.png")],
        ["report", run],
        ["serve", run],
    ]
    errors = set()
    for command in commands:
        assert main(command) == 2, command
        errors.add(_one_line_error(capsys))
    assert errors == {
        f"error: '{run}' is not a finished headstart run: there is no such folder; pass the "
        "folder `headstart train` wrote (its --out, holding config.json and model.safetensors)."
    }
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_training_has_not_finished_says_to_resume_it(tmp_path, capsys) -> None:
    (tmp_path / "train_args.json").write_text("{}")
    for command in (["info", str(tmp_path)], ["predict", str(tmp_path), str(tmp_path)]):
        assert main(command) == 2
        assert _one_line_error(capsys).endswith(
            f"continue it with `headstart train --resume {tmp_path}`."
        )


def test_the_folder_of_runs_given_as_a_run_names_the_runs_it_holds(tmp_path, capsys) -> None:
    for name in ("pets", "digits", ".hidden", "notes"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    for name in ("pets", "digits", ".hidden"):
        (tmp_path / "runs" / name / "config.json").write_text("{}")
        (tmp_path / "runs" / name / "model.safetensors").write_bytes(b"")
    runs = tmp_path / "runs"
    for command in (["info", str(runs)], ["predict", str(runs), str(tmp_path)]):
        assert main(command) == 2
        assert _one_line_error(capsys).endswith(
            f"it holds runs ('{runs / 'digits'}', '{runs / 'pets'}'); pass one of them."
        )


def test_a_mistyped_run_name_suggests_the_run_beside_it(trained_run, capsys) -> None:
    typo = trained_run.parent / (trained_run.name + "x")
    assert main(["info", str(typo)]) == 2
    assert _one_line_error(capsys).endswith(f"did you mean '{trained_run}'?")


def test_images_given_before_the_run_show_the_command_the_right_way_round(
    trained_run, colour_data, capsys
) -> None:
    images = colour_data / "test"
    assert main(["predict", str(images), str(trained_run), "--workers", "0"]) == 2
    assert _one_line_error(capsys) == (
        f"error: '{images}' is not a run folder, but '{trained_run}' is: the run comes first: "
        f"headstart predict {trained_run} {images}"
    )
    assert main(["evaluate", str(colour_data), str(trained_run)]) == 2
    assert _one_line_error(capsys).endswith(f"headstart evaluate {trained_run} {colour_data}")
    assert not (images / "train_args.json").exists()


def test_evaluate_on_data_with_an_unknown_class_exits_2(trained_run, colour_data, tmp_path, capsys):
    data = tmp_path / "d"
    shutil.copytree(colour_data / "test", data)
    (data / "purple").mkdir()
    shutil.copy(next((data / "red").iterdir()), data / "purple" / "x.png")
    assert main(["evaluate", str(trained_run), str(data), "--workers", "0"]) == 2
    assert "purple" in _one_line_error(capsys)


def test_one_class_dataset_exits_2(tmp_path, capsys) -> None:
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "one", {"": 3}, classes={"red": (200, 0, 0)})
    assert main(["train", str(data), *FAST]) == 2
    assert "at least two" in _one_line_error(capsys)


def test_train_with_exact_decode_records_it_in_the_run(colour_data, tmp_path) -> None:
    from headstart.estimator import ImageClassifier

    run = tmp_path / "run"
    cache = str(tmp_path / "cache")
    fast = [a for a in FAST if a not in ("--epochs", "10")]  # the linear head has no epochs
    argv = ["train", str(colour_data), "--out", str(run), "--cache-dir", cache, *fast]
    assert main([*argv, "--strategy", "features", "--decode", "exact"]) == 0
    saved = json.loads((run / "config.json").read_text())["headstart"]["preprocess"]
    assert saved["decode"] == "exact"
    loaded = ImageClassifier.load(run)  # evaluate and predict decode as the run did
    assert loaded.preprocess_.decode == "exact" and loaded.preprocess_.draft_size is None


@pytest.mark.parametrize(
    ("argv", "guess"),
    [
        (["trian", "photos"], "Did you mean 'train'? See `headstart --help`."),
        (
            ["train", "photos", "--modle", "x"],
            "Did you mean '--model'? See `headstart train --help`.",
        ),
        (["train", "photos", "--strategy", "featurs"], "Did you mean 'features'?"),
        (["evaluate", "run", "data", "--jsn"], "Did you mean '--json'?"),
        (["train", "photos", "--bogus=3"], ". See `headstart train --help`."),
    ],
)
def test_a_mistyped_command_or_option_exits_2_with_one_line_and_a_suggestion(
    argv, guess, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert guess in _one_line_error(capsys)


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["train", "--no-such-option"], ["train", "--help"]]
)
def test_help_version_and_argument_errors_import_no_torch(argv) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from headstart.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'torchvision', 'timm', 'sklearn', 'matplotlib', 'PIL')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_the_command_skips_only_the_final_collections_of_its_own_exit() -> None:
    import subprocess
    import sys

    # An exit handler registered before the command runs after all of the command's: by then
    # the collector's generations are frozen, and the command's own output is all there.
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0, file=sys.stderr))\n"
        "from headstart.cli.main import entry, main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('after main', gc.get_freeze_count(), file=sys.stderr)\n"
        "sys.exit(entry())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--version"], capture_output=True, text=True, check=True
    )
    assert done.stderr.strip().splitlines() == ["after main 0", "frozen True"]
    assert done.stdout.count("headstart") == 2  # --version, from main() and from entry()


def test_the_parsers_choices_are_the_librarys() -> None:
    from headstart.cli import _common
    from headstart.strategies import BN_POLICIES, SCHEDULES, STRATEGIES

    assert _common.STRATEGY_CHOICES == STRATEGIES
    assert _common.SCHEDULE_CHOICES == SCHEDULES
    assert _common.BN_CHOICES == BN_POLICIES
