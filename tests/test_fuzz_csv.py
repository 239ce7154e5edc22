"""Fuzzed label CSVs: read as a dataset, or refused in one line; only the files they name are read.

A CSV names its images by paths relative to its own folder, and absolute paths, ``..`` and
symlinks out of its folder are allowed: the CSV is the user's own list of their data, wherever it
lies (README, "Your data"; tests/test_data_discovery.py). What a CSV must never do is make
headstart read anything it does not name. The cases mix encodings, BOMs, line endings, quoting,
header spellings, empty and odd cells, very long lines and paths of every kind (relative,
``..``, absolute, symlinked out, missing, folders, devices, FIFOs, NUL bytes, huge names);
an audit hook records every file opened while the dataset is read.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headstart.cli.main import main
from headstart.data import load_dataset
from headstart.errors import DataError
from tests._fuzz import bounded
from tests._images import write_image

_opened: list[str] | None = None


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only inside _recording()


@contextmanager
def _recording() -> Iterator[list[str]]:
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


# What a path cell may name, relative to the CSV in tmp/"data"/labels.csv. "{tmp}" is replaced.
_PATHS = [
    "cat/a.png",
    "dog/b.png",
    "./cat/a.png",
    "cat//a.png",
    " dog/b.png ",
    "cat/missing.png",
    "cat",
    "../outside/secret.png",
    "{tmp}/outside/secret.png",
    "{tmp}/data/dog/b.png",
    "linked-out.png",
    "linked-dir/secret.png",
    "dangling.png",
    "loop.png",
    "fifo",
    "/dev/zero",
    "/dev/null",
    "/",
    "cat/a.png\x00.txt",
    "x" * 300,
    "/".join(["deep"] * 2000),
    "~/nothing-here.png",
    "",
]
_LABELS = ["cat", "dog", " cat", "DOG", "", "bird", "ça", "1", "a,b", 'q"uote', "x" * 500]
_SPLITS = ["", "train", "val", "test", "valid", "Validation", "TEST ", "holdout"]
_HEADERS = [
    ["path", "label"],
    ["path", "label", "split"],
    ["Path ", " LABEL", "Split"],
    ["label", "path"],
    ["path", "path", "label"],
    ["file", "label"],
    [],
    ["path"],
]
_ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]

_cells = st.one_of(
    st.sampled_from(_PATHS), st.sampled_from(_LABELS), st.sampled_from(_SPLITS), st.text(max_size=8)
)
_row = st.one_of(
    st.tuples(st.sampled_from(_PATHS), st.sampled_from(_LABELS), st.sampled_from(_SPLITS)).map(
        list
    ),
    st.lists(_cells, max_size=5),
)


@st.composite
def _csv_bytes(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(_HEADERS))
    rows = draw(st.lists(_row, max_size=12))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=quoting, lineterminator=newline)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    text = buf.getvalue()
    if draw(st.booleans()):
        # Hand-written damage: unbalanced quotes, stray delimiters, a line past any field limit.
        insert = draw(
            st.sampled_from(['"', '""', ",", ",,,", "\x00", "\ufeff", "x" * 200_000, "\n" * 3])
        )
        at = draw(st.integers(0, len(text)))
        text = text[:at] + insert + text[at:]
    try:
        blob = text.encode(draw(st.sampled_from(_ENCODINGS)))
    except UnicodeEncodeError:
        blob = text.encode("utf-8")
    if draw(st.booleans()) and blob:
        at = draw(st.integers(0, len(blob) - 1))
        blob = blob[:at] + bytes([blob[at] ^ draw(st.integers(1, 255))]) + blob[at + 1 :]
    return blob


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/data/{cat,dog} with an image each, tmp/outside/secret.png, and links out and around."""
    tmp = tmp_path_factory.mktemp("csvfuzz")
    data = tmp / "data"
    write_image(data / "cat" / "a.png")
    write_image(data / "dog" / "b.png", color=(10, 200, 30))
    write_image(tmp / "outside" / "secret.png", color=(1, 2, 3))
    (data / "linked-out.png").symlink_to(tmp / "outside" / "secret.png")
    (data / "linked-dir").symlink_to(tmp / "outside", target_is_directory=True)
    (data / "dangling.png").symlink_to(tmp / "nowhere.png")
    (data / "loop.png").symlink_to(data / "loop.png")
    os.mkfifo(data / "fifo")
    return tmp


def _named(blob: bytes, csv_path: Path) -> set[Path]:
    """Every path any cell of the CSV could name, as discovery would resolve it."""
    named: set[Path] = set()
    text = blob.decode("utf-8-sig", errors="replace")
    cells = text.replace("\r", "\n").replace(",", "\n").replace('"', "\n").split("\n")
    try:
        cells += [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    except csv.Error:
        pass  # refused before any image is opened
    for cell in cells:
        cell = cell.strip()
        if cell:
            path = Path(cell)
            named.add(path if path.is_absolute() else csv_path.parent / path)
    return named


def _inside(path: str, root: Path) -> bool:
    return os.path.abspath(path).startswith(str(root) + os.sep)


@given(blob=_csv_bytes())
def test_fuzzed_csv_is_a_dataset_or_one_data_error_and_reads_only_what_it_names(
    blob: bytes, tree: Path
) -> None:
    csv_path = tree / "data" / "labels.csv"
    csv_path.write_bytes(blob.replace(b"{tmp}", os.fsencode(tree)))
    with bounded(), _recording() as opened:
        try:
            dataset = load_dataset(csv_path, val_fraction=0.0, test_fraction=0.0)
        except DataError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
        else:
            listed = [s.path for samples in dataset.splits.values() for s in samples]
            assert len(dataset.classes) >= 2
            assert all(p.is_file() for p in listed)
    named = _named(csv_path.read_bytes(), csv_path) | {csv_path}
    strays = [p for p in opened if _inside(p, tree) and Path(p) not in named]
    assert strays == [], f"read files the CSV does not name: {strays}"


_CLI_CSV = st.builds(
    lambda rows: "path,label\n" + "".join(f"{p},{lbl}\n" for p, lbl in rows),
    st.lists(st.tuples(st.sampled_from(_PATHS), st.sampled_from(_LABELS)), max_size=8),
)


@given(text=_CLI_CSV)
def test_fuzzed_csv_at_the_cli_is_summarised_or_one_error_line_with_exit_2(
    text: str, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tree / "data" / "cli.csv"
    csv_path.write_text(text.replace("{tmp}", str(tree)), encoding="utf-8")
    with bounded():
        code = main(["data", str(csv_path), "--quick", "-q", "--no-cache"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
