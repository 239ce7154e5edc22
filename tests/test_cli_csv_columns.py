"""Every command that reads DATA reads a CSV whose columns are not path,label[,split]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.cli.main import main
from tests.conftest import write_colour_dataset

FAST = ["--model", "test_resnet", "--weights", "none", "--workers", "0", "-q"]
NAMED = ["--path-column", "filename", "--label-column", "class"]


@pytest.fixture(scope="module")
def shapes_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``filename,class`` rows, as a CSV made for another tool has them."""
    root = write_colour_dataset(tmp_path_factory.mktemp("csvcols"), {"imgs": 8})
    rows = ["filename,class"] + [
        f"{path.relative_to(root).as_posix()},{path.parent.name}"
        for path in sorted((root / "imgs").rglob("*.*"))
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def test_train_evaluate_and_report_read_a_csv_with_named_columns(
    shapes_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", str(shapes_csv), "--out", str(run), "--strategy", "features", *FAST]
    assert main(argv) == 2  # the CSV's own names are not path,label
    assert "--path-column" in capsys.readouterr().err
    assert main([*argv, *NAMED]) == 0
    config = json.loads((run / "config.json").read_text())["headstart"]
    assert config["data"]["columns"] == {"path_column": "filename", "label_column": "class"}
    # The CSV trained on is read with the columns the run recorded; its test split again.
    capsys.readouterr()
    assert main(["evaluate", str(run), str(shapes_csv), "--json", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == "test"
    other = shapes_csv.with_name("other.csv")
    other.write_text(shapes_csv.read_text().replace("filename,class", "file,kind"))
    argv = ["evaluate", str(run), str(other), "--json", "--workers", "0"]
    assert main([*argv, "--path-column", "file", "--label-column", "kind"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 24
    assert (
        main(
            [
                "report",
                str(run),
                str(other),
                "--path-column",
                "file",
                "--label-column",
                "kind",
                "-q",
            ]
        )
        == 0
    )


def test_doctor_and_advise_read_a_csv_with_named_columns(
    shapes_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", str(shapes_csv), "--json", "--workers", "0", *NAMED]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["blue", "green", "red"]
    assert main(["advise", str(shapes_csv), "--json", *FAST, *NAMED]) == 0
    assert json.loads(capsys.readouterr().out)["strategy"]


def test_column_options_on_a_folder_exit_2_with_one_line(
    shapes_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", str(shapes_csv.parent / "imgs"), "--label-column", "class"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --label-column (label_column=) names a column of a CSV file")
    assert err.count("\n") == 1
