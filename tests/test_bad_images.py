"""Every kind of bad or odd image (tests/_bad_images.py) is used or skipped with its reason.

All kinds share one training folder (two classes of good images, the kinds spread over
them), read once by ``headstart data --json`` and trained on once by ``headstart train``
(the features strategy on test_resnet: discovery, decoding, preprocessing, extraction, the
head and the run folder). Each kind is then its own test: a decoded kind is counted and gives
the pixels it shows; a skipped one is listed once, with its reason, by both; nothing ends the
run, hangs or grows memory without bound.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from headstart.cli.main import main
from headstart.data import decode_image
from headstart.preprocess import Preprocess
from tests._bad_images import KINDS
from tests._fuzz import bounded
from tests._images import write_class_folders, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GOOD = {"cat": 4, "dog": 4}
SPLIT = ["--val-fraction", "0.25", "--test-fraction", "0"]
PREPROCESS = Preprocess(input_size=(12, 12), resize=16, decode="exact")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every kind written into one dataset, read by ``data`` and trained on by ``train``."""
    root = tmp_path_factory.mktemp("bad") / "data"
    write_class_folders(root, GOOD)
    paths = {
        name: kind.write(root / ("cat" if i % 2 else "dog"))
        for i, (name, kind) in enumerate(sorted(KINDS.items()))
    }
    return {"root": root, "paths": paths}


@pytest.fixture(scope="module")
def data_summary(outcomes: dict[str, Any]) -> dict[str, Any]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = ["data", str(outcomes["root"]), "--json", "--no-cache", "--workers", "0", *SPLIT]
    with bounded(seconds=120), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def trained(outcomes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import contextlib
    import io

    run = tmp_path_factory.mktemp("run") / "run"
    argv = [
        "train",
        str(outcomes["root"]),
        "--out",
        str(run),
        "--model",
        "test_resnet",
        "--weights",
        "none",
        "--strategy",
        "features",
        "--workers",
        "0",
        "--no-cache",
        "--device",
        "cpu",
        "-q",
        *SPLIT,
    ]
    err = io.StringIO()
    with (
        bounded(seconds=120),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(err),
    ):
        code = main(argv)
    assert code == 0, err.getvalue()
    with open(run / "skipped.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        skipped = {row["path"]: row["reason"] for row in csv.DictReader(f)}
    config = json.loads((run / "config.json").read_text())
    return {"skipped": skipped, "data": config["headstart"]["data"]}


def test_the_corpus_holds_at_least_60_kinds_of_bad_image() -> None:
    assert len(KINDS) >= 60, sorted(KINDS)
    assert all(kind.description for kind in KINDS.values())


def _listed(summary: dict[str, Any]) -> dict[str, str]:
    return {row["path"]: row["reason"] for row in summary["skipped"]}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_bad_image_is_used_or_skipped_with_its_reason_and_never_stops_the_run(
    name: str,
    outcomes: dict[str, Any],
    data_summary: dict[str, Any],
    trained: dict[str, Any],
) -> None:
    kind = KINDS[name]
    path = str(outcomes["paths"][name])
    seen, listed_in_run = _listed(data_summary), trained["skipped"]
    if kind.expect == "skipped":
        assert seen.get(path, "").startswith(kind.reason), seen.get(path)
        assert listed_in_run.get(path, "").startswith(kind.reason), listed_in_run.get(path)
        return
    assert path not in seen and path not in listed_in_run
    if kind.expect == "decoded":
        with bounded():
            image, header = decode_image(path)
        assert image.mode == "RGB" and image.size == kind.size
        assert (header.width, header.height) == kind.size
        tensor = PREPROCESS(image)
        assert tensor.shape == (3, 12, 12) and torch.isfinite(tensor).all()


def test_every_decoded_kind_is_counted_and_every_skipped_one_listed_once(
    data_summary: dict[str, Any], trained: dict[str, Any]
) -> None:
    decoded = sum(kind.expect == "decoded" for kind in KINDS.values())
    skipped = sum(kind.expect == "skipped" for kind in KINDS.values())
    for summary in (data_summary, trained["data"]):
        counts = summary["counts"]
        assert sum(sum(per_class.values()) for per_class in counts.values()) == (
            sum(GOOD.values()) + decoded
        )
        assert len(summary["skipped"]) == skipped


def test_a_class_folder_whose_name_is_not_utf8_exits_2_naming_it_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file may keep a name that is not UTF-8; a class cannot, its name is every output's
    label (the split's seeding failed on it with a traceback before)."""
    root = write_class_folders(tmp_path / "data", {"dog": 2})
    latin1 = os.fsencode(root) + b"/caf\xe9"
    os.mkdir(latin1)
    write_image(Path(os.fsdecode(latin1 + b"/one.png")))
    assert main(["data", str(root), "--no-cache", "-q"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "b'caf\\xe9'" in lines[0] and "not UTF-8" in lines[0]


def test_data_lists_a_skipped_file_whose_name_is_not_utf8_by_its_bytes_under_a_utf8_locale(
    tmp_path: Path,
) -> None:
    """The command as a process: a terminal's strict UTF-8 stdout (PYTHONIOENCODING=utf-8 makes
    one whatever this machine's locales) refused the name, and `headstart data` died."""
    root = write_class_folders(tmp_path / "data", {"cat": 2, "dog": 2})
    latin1 = os.fsencode(root) + b"/cat/caf\xe9.jpg"
    with open(latin1, "wb") as f:
        f.write(b"not an image")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": _source_path()}
    done = subprocess.run(
        [sys.executable, "-m", "headstart", "data", str(root), "--no-cache", "-q"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert latin1 + b": not an image" in done.stdout


def _source_path() -> str:
    """This checkout's src/ first, as the test process imports it."""
    import headstart

    src = str(Path(headstart.__file__).resolve().parent.parent)
    return os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])
