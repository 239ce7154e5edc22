"""Finding the labelled images of a dataset: folder layouts, a CSV, or Python lists.

Discovery decides what is a sample, what is skipped and why, and refuses datasets that cannot
train a classifier, before any model is built: a mistake in the data costs a one-line error, not
a 45-minute run (requirement 7). Files are recognised by content, so a PNG named ``.jpg`` is used
and ``notes.txt`` in a class folder is listed as skipped rather than crashing a run later. Only
headers are read here; a full decode of every file is opt-in (``verify=True``, or
:func:`verify_dataset` after the split, as training finds them) because a million images must stay
fast to list.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headstart.bulk import bulk
from headstart.data.dataset import (
    SPLIT_NAMES,
    CsvColumns,
    Dataset,
    Layout,
    Sample,
    Skipped,
    _describe_skips,
)
from headstart.data.decoding import image_problem
from headstart.data.multilabel import (
    LabelledFile,
    from_labelled_files,
    has_several_labels,
    parse_labels,
)
from headstart.data.splits import stratified_split, validate_split_args
from headstart.errors import DataError
from headstart.progress import Progress

__all__ = [
    "Vouch",
    "collect_image_paths",
    "dataset_from_lists",
    "load_dataset",
    "verify_dataset",
]

# Folder names and CSV values people use for each split.
_SPLIT_ALIASES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}

_ByClass = dict[str, list[Path]]
_BySplit = dict[str, _ByClass]


# --------------------------------------------------------------------------- file walking


# What Windows leaves in every folder it shows (thumbnail caches, folder settings) and at the
# root of a removable drive: its counterparts of macOS's .DS_Store, never a user's image. Listed
# as skipped they buried the real problems (one "not an image" a class folder); compared
# lower-cased, as Windows names are case-blind.
_SYSTEM_NAMES = frozenset(
    {"thumbs.db", "ehthumbs.db", "desktop.ini", "$recycle.bin", "system volume information"}
)


def _is_hidden(name: str) -> bool:
    """Names discovery never looks at: dotfiles, macOS zip metadata and Windows' own files."""
    return name.startswith(".") or name == "__MACOSX" or name.lower() in _SYSTEM_NAMES


def _walk_files(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder``, recursively, following symlinks, sorted.

    Symlinked folders are followed (datasets are often assembled from links) but each real folder
    is visited once, so a link cycle cannot loop forever.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        base = Path(dirpath)
        found.extend(base / name for name in filenames if not _is_hidden(name))
    return sorted(found, key=str)


def _children(folder: Path) -> tuple[list[Path], list[Path]]:
    """Non-hidden sub-folders and files directly in ``folder``, sorted by name."""
    dirs: list[Path] = []
    files: list[Path] = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if _is_hidden(entry.name):
            continue
        (dirs if entry.is_dir() else files).append(entry)
    return dirs, files


def _loose_images(files: Sequence[Path]) -> list[Skipped]:
    """Images lying outside any class folder: listed, since their label is unknown.

    Other loose files (a README, a licence, a labels file) are not listed: they are expected next
    to class folders and would only bury the real problems.
    """
    return [
        Skipped(f, "image outside any class folder (no label)")
        for f in files
        if image_problem(f) is None
    ]


Vouch = Callable[[Sequence[Path]], Collection[Path]]
"""Given files, the ones known to be images without opening them (see ``load_dataset``)."""


@dataclass(frozen=True)
class _Check:
    """How discovery tells an image from another file: header sniff, full decode, or a voucher."""

    verify: bool = False
    vouch: Vouch | None = None

    def problems(self, paths: Sequence[Path]) -> list[str | None]:
        """Why each of ``paths`` cannot be used as an image, or None where it can."""
        vouched = self.vouch(paths) if self.vouch is not None and not self.verify else ()
        return [None if p in vouched else image_problem(p, verify=self.verify) for p in paths]


def _check_files(paths: Sequence[Path], check: _Check) -> tuple[list[Path], list[Skipped]]:
    usable: list[Path] = []
    skipped: list[Skipped] = []
    for path, reason in zip(paths, check.problems(paths), strict=True):
        if reason is None:
            usable.append(path)
        else:
            skipped.append(Skipped(path, reason))
    return usable, skipped


@bulk
def collect_image_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[Skipped]]:
    """The images to predict on, from files and folders given on a command line.

    Never raises for a single bad path: one typo in a list of a thousand files should cost that
    file, listed as skipped, not the whole prediction run.

    Args:
        paths: Files, and folders searched recursively (hidden names ignored).

    Returns:
        ``(images, skipped)``: absolute paths in the order given (each folder's content sorted),
        each file once; and missing paths or files that are not images by content, with reasons.
    """
    images: list[Path] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given).absolute()
        if path.is_dir():
            candidates = _walk_files(path)
        elif path.exists() or path.is_symlink():
            candidates = [path]
        else:
            skipped.append(Skipped(path, "file not found"))
            continue
        for candidate in candidates:
            if candidate in seen:
                continue
            seen.add(candidate)
            reason = image_problem(candidate)
            if reason is None:
                images.append(candidate)
            else:
                skipped.append(Skipped(candidate, reason))
    return images, skipped


# --------------------------------------------------------------------------- messages


def _quoted(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _require_two_classes(classes: Sequence[str], where: Path | str, noun: str) -> None:
    if len(classes) >= 2:
        return
    if not classes:
        if noun == "folder":
            raise DataError(
                f"found no class folders in {where}; put each class's images in its own "
                f"folder, {where}{os.sep}<class>{os.sep}, with at least two classes"
            )
        raise DataError(f"found no labels in {where}; a classifier needs at least two classes")
    kind = "class folders" if noun == "folder" else "classes"
    raise DataError(
        f"found 1 {'class' if noun == 'folder' else 'label'} {classes[0]!r} in {where}; "
        f"a classifier needs at least two {kind}"
    )


def _check_known(
    names: Sequence[str], known: Sequence[str], what: Callable[[str], str], fix: str
) -> None:
    for name in names:
        if name not in known:
            raise DataError(
                f"{what(name)} is not one of the known classes ({_quoted(known)}); {fix}"
            )


def _describe_folder(parent: Path) -> Callable[[str], str]:
    def describe(name: str) -> str:
        return f"class folder {str(parent / name)!r}"

    return describe


def _resolve_classes(classes: Sequence[str] | None) -> list[str] | None:
    if classes is None:
        return None
    given = [str(c) for c in classes]
    if len(set(given)) != len(given):
        dupes = sorted({c for c in given if given.count(c) > 1})
        raise DataError(f"classes must be unique, got {_quoted(dupes)} more than once")
    return given


# --------------------------------------------------------------------------- assembling


def _assemble(
    *,
    root: Path,
    layout: Layout,
    classes: list[str],
    by_split: _BySplit,
    skipped: list[Skipped],
    split_spec: dict[str, float | int] | None,
    relaxed: bool,
    class_skips: Mapping[str, list[Skipped]],
    class_where: Callable[[str], str],
) -> Dataset:
    """Build the dataset and apply the checks every layout shares."""
    index = {name: i for i, name in enumerate(classes)}
    splits: dict[str, list[Sample]] = {}
    for split in SPLIT_NAMES:
        samples = [
            Sample(path, index[name])
            for name, paths in by_split.get(split, {}).items()
            for path in paths
        ]
        if samples:
            splits[split] = sorted(samples, key=lambda s: str(s.path))
    if not relaxed:
        train = by_split.get("train", {})
        for name in classes:
            if train.get(name):
                continue
            skips = class_skips.get(name, [])
            where = class_where(name)
            if skips:
                raise DataError(
                    f"class {name!r} has no usable images ({_describe_skips(skips)}); "
                    f"add images to {where} or remove the class"
                )
            raise DataError(
                f"class {name!r} has no images ({where} is empty); add images or remove the class"
            )
    if not splits:
        detail = f" ({_describe_skips(skipped)})" if skipped else ""
        raise DataError(f"no usable images in {root}{detail}; add images or fix the skipped files")
    dataset = Dataset(
        root=root,
        layout=layout,
        classes=classes,
        splits=splits,
        skipped=sorted(skipped, key=lambda s: str(s.path)),
        split_spec=split_spec,
    )
    dataset._relaxed = relaxed
    return dataset


def _spec(val_fraction: float, test_fraction: float, seed: int) -> dict[str, float | int]:
    return {
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "seed": seed,
    }


# --------------------------------------------------------------------------- folder layouts


def _find_split_dirs(root: Path, dirs: Sequence[Path]) -> dict[str, Path]:
    """Sub-folders named like splits (train, val/valid/validation, test), any case."""
    found: dict[str, Path] = {}
    for d in dirs:
        split = _SPLIT_ALIASES.get(d.name.lower())
        if split is None:
            continue
        if split in found:
            raise DataError(
                f"found both {found[split].name!r} and {d.name!r} in {root}; they both name the "
                f"{split} split, keep one of them"
            )
        found[split] = d
    return found


def _has_subdirs(folder: Path) -> bool:
    return any(entry.is_dir() and not _is_hidden(entry.name) for entry in folder.iterdir())


def _check_class_name(folder: Path) -> None:
    """Refuse a class folder whose name is not UTF-8 text (``caf\\xe9`` from a Latin-1 archive).

    Python hands such a name over with its bytes escaped as lone surrogates; as a class name
    it would become a label in config.json, predictions and reports, none of which can write
    it, and the split's seeding could not even hash it (a UnicodeEncodeError traceback before).
    A file name can stay as it is, a label cannot, so the folder must be renamed.

    Raises:
        DataError: The name does not encode as UTF-8.
    """
    try:
        folder.name.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(
            f"class folder {str(folder)!r} has a name that is not UTF-8 text "
            f"({os.fsencode(folder.name)!r}), and a class name becomes the label of every "
            "output; rename the folder in UTF-8 (convmv -f latin1 -t utf8 renames many)"
        ) from None


def _read_class_dirs(
    split_dir: Path, check: _Check
) -> tuple[_ByClass, dict[str, list[Skipped]], list[Skipped]]:
    """Usable images and skipped files of each class folder in ``split_dir``."""
    dirs, files = _children(split_dir)
    usable: _ByClass = {}
    skips: dict[str, list[Skipped]] = {}
    for d in dirs:
        _check_class_name(d)
        usable[d.name], skips[d.name] = _check_files(_walk_files(d), check)
    return usable, skips, _loose_images(files)


def _load_split_folders(
    root: Path,
    split_dirs: Mapping[str, Path],
    *,
    val_fraction: float,
    seed: int,
    known: list[str] | None,
    check: _Check,
) -> Dataset:
    by_split: _BySplit = {}
    skipped: list[Skipped] = []
    class_skips: dict[str, list[Skipped]] = {}
    for split in SPLIT_NAMES:
        if split not in split_dirs:
            continue
        usable, skips, loose = _read_class_dirs(split_dirs[split], check)
        by_split[split] = usable
        skipped.extend(loose)
        for class_skipped in skips.values():
            skipped.extend(class_skipped)
        if split == "train":
            class_skips = skips

    if known is None:
        train_dir = split_dirs.get("train")
        if train_dir is None:
            present = ", ".join(repr(d.name) for d in split_dirs.values())
            raise DataError(
                f"found {present} but no 'train' folder in {root}; add {root}{os.sep}train"
                f"{os.sep}<class>{os.sep} or point at a folder of class folders"
            )
        classes = sorted(by_split["train"])
        _require_two_classes(classes, train_dir, "folder")
        for split in ("val", "test"):
            for name in sorted(by_split.get(split, {})):
                if name not in by_split["train"]:
                    folder = split_dirs[split] / name
                    raise DataError(
                        f"{split} class {name!r} ({folder}) has no training folder; classes "
                        f"come from {train_dir}: {_quoted(classes)}; rename or remove {folder}"
                    )
    else:
        classes = known
        for split, usable in by_split.items():
            _check_known(
                sorted(usable),
                known,
                _describe_folder(split_dirs[split]),
                "rename or remove that folder",
            )

    split_spec = None
    if "train" in by_split and "val" not in split_dirs:
        # No validation folder: hold out part of train, as a class-folders dataset would.
        held = stratified_split(
            by_split["train"], val_fraction=val_fraction, test_fraction=0.0, seed=seed
        )
        by_split["train"], by_split["val"] = held["train"], held["val"]
        split_spec = _spec(val_fraction, 0.0, seed)
    train_dir_name = split_dirs["train"] if "train" in split_dirs else root
    return _assemble(
        root=root,
        layout="split-folders",
        classes=classes,
        by_split=by_split,
        skipped=skipped,
        split_spec=split_spec,
        relaxed=known is not None,
        class_skips=class_skips,
        class_where=lambda name: str(train_dir_name / name),
    )


def _load_class_folders(
    root: Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    known: list[str] | None,
    check: _Check,
) -> Dataset:
    usable, class_skips, skipped = _read_class_dirs(root, check)
    for class_skipped in class_skips.values():
        skipped.extend(class_skipped)
    if known is None:
        classes = sorted(usable)
        _require_two_classes(classes, root, "folder")
    else:
        classes = known
        _check_known(
            sorted(usable),
            known,
            _describe_folder(root),
            "rename or remove that folder",
        )
    by_split = stratified_split(
        usable, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    return _assemble(
        root=root,
        layout="class-folders",
        classes=classes,
        by_split=by_split,
        skipped=skipped,
        split_spec=_spec(val_fraction, test_fraction, seed),
        relaxed=known is not None,
        class_skips=class_skips,
        class_where=lambda name: str(root / name),
    )


# --------------------------------------------------------------------------- labelled lists


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: str | tuple[str, ...]  # a tuple: several labels given as a list (multi-label only)
    split: str | None  # None: headstart chooses
    origin: str  # where it was given, for messages ("row 7", "paths[3]")


def _dedupe(entries: Sequence[_Entry], source: str) -> list[_Entry]:
    """Drop exact repeats; refuse a file given twice with different labels or splits.

    A file in two splits would leak test data into training, and one with two labels has no
    right answer, so neither is silently resolved.
    """
    first: dict[Path, _Entry] = {}
    out: list[_Entry] = []
    for entry in entries:
        seen = first.get(entry.path)
        if seen is None:
            first[entry.path] = entry
            out.append(entry)
        elif (seen.label, seen.split) != (entry.label, entry.split):
            raise DataError(
                f"{entry.path} is given twice in {source} ({seen.origin}: label {seen.label!r}, "
                f"split {seen.split or 'auto'}; {entry.origin}: label {entry.label!r}, split "
                f"{entry.split or 'auto'}); keep one of them"
            )
    return out


def _from_entries(
    entries: Sequence[_Entry],
    *,
    root: Path,
    layout: Layout,
    source: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    known: list[str] | None,
    check: _Check,
    multi_label: bool = False,
) -> Dataset:
    """Check, split and assemble labelled files (the CSV and list layouts).

    Entries with ``split=None`` are split by headstart with the fractions. If entries name
    their splits and none is "val", validation is held out of train, as for split folders.
    Multi-label data (``multi_label``, or any entry with other than one label) is assembled by
    :mod:`headstart.data.multilabel` instead.
    """
    if multi_label or any(has_several_labels(e.label) for e in entries):
        files = [
            LabelledFile(
                e.path, parse_labels(e.label, f"{e.origin} of {source}"), e.split, e.origin
            )
            for e in entries
        ]
        return from_labelled_files(
            files,
            root=root,
            layout=layout,
            source=source,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            known=known,
            problems=check.problems,
        )
    entries = _dedupe(entries, source)
    labels = sorted({str(e.label) for e in entries})
    if known is None:
        classes = labels
        _require_two_classes(classes, source, "label")
        train_labels = {e.label for e in entries if e.split in (None, "train")}
        for e in entries:
            if e.label not in train_labels:
                raise DataError(
                    f"label {e.label!r} ({e.origin} of {source}) is in the {e.split} split but "
                    f"never in train; add training images for it or remove its rows"
                )
        if not train_labels:
            raise DataError(f"{source} has no training images; mark some rows with split 'train'")
    else:
        classes = known
        _check_known(
            labels,
            known,
            lambda name: f"label {name!r} in {source}",
            "fix those rows or evaluate with a model trained on that class",
        )

    pool: _ByClass = {}
    fixed: _BySplit = {}
    skipped: list[Skipped] = []
    class_skips: dict[str, list[Skipped]] = {}
    for entry, reason in zip(entries, check.problems([e.path for e in entries]), strict=True):
        label = str(entry.label)  # one label each: a single-label dataset
        if reason is not None:
            skip = Skipped(entry.path, reason)
            skipped.append(skip)
            if entry.split in (None, "train"):
                class_skips.setdefault(label, []).append(skip)
        elif entry.split is None:
            pool.setdefault(label, []).append(entry.path)
        else:
            fixed.setdefault(entry.split, {}).setdefault(label, []).append(entry.path)

    split_spec: dict[str, float | int] | None = None
    by_split: _BySplit = {name: dict(fixed.get(name, {})) for name in SPLIT_NAMES}
    if "val" in fixed and test_fraction == 0:
        # A validation set of the user's own and no test wanted: nothing for headstart to split.
        for name, paths in pool.items():
            by_split["train"].setdefault(name, []).extend(paths)
    elif pool or not fixed:
        # Some or all files wait for headstart to split them; with a fixed val set (lists with
        # val_paths) only test is held out of the pool.
        vf = 0.0 if "val" in fixed else val_fraction
        parts = stratified_split(pool, val_fraction=vf, test_fraction=test_fraction, seed=seed)
        for split in SPLIT_NAMES:
            for name, paths in parts[split].items():
                by_split[split].setdefault(name, []).extend(paths)
        split_spec = _spec(vf, test_fraction, seed)
    elif "val" not in fixed and "train" in fixed:
        held = stratified_split(
            fixed["train"], val_fraction=val_fraction, test_fraction=0.0, seed=seed
        )
        by_split["train"], by_split["val"] = held["train"], held["val"]
        split_spec = _spec(val_fraction, 0.0, seed)
    return _assemble(
        root=root,
        layout=layout,
        classes=classes,
        by_split=by_split,
        skipped=skipped,
        split_spec=split_spec,
        relaxed=known is not None,
        class_skips=class_skips,
        class_where=lambda name: f"the {name!r} entries of {source}",
    )


def _column(role: str, name: str | None) -> str | None:
    if name is not None and not name.strip():
        raise DataError(f"the {role} column name is empty; pass a name from the CSV's header")
    return None if name is None else name.strip()


def _csv_columns(
    path_column: str | None, label_column: str | None, split_column: str | None
) -> CsvColumns | None:
    """The CSV columns named by the caller, or None for the CSV's own ``path,label[,split]``."""
    columns = CsvColumns()
    if (path := _column("path", path_column)) is not None:
        columns["path_column"] = path
    if (label := _column("label", label_column)) is not None:
        columns["label_column"] = label
    if (split := _column("split", split_column)) is not None:
        columns["split_column"] = split
    return columns or None


def _refuse_other_delimiter(csv_path: Path, header: Sequence[str]) -> None:
    """Refuse a header that is one column holding ';' or tabs: a file separated by those.

    Excel saves "CSV" with ';' where the decimal mark is a comma (much of Europe), and a tab-
    separated file is often named .csv. Read as commas, the header is one column named
    'path;label', and being told to name the columns with --path-column cannot help. The
    delimiter is not guessed: ';' also separates an image's labels in a multi-label cell.
    """
    if len(header) != 1:
        return
    for mark, name in ((";", "semicolons"), ("\t", "tabs")):
        if mark in header[0]:
            raise DataError(
                f"{csv_path} is separated by {name}, not commas (its header is the one column "
                f"{header[0].strip()!r}); save it as comma-separated CSV (in Excel: CSV UTF-8)"
            )


def _read_csv(csv_path: Path, named: CsvColumns | None = None) -> list[_Entry]:
    """Rows of a ``path,label[,split]`` CSV, or of the columns ``named`` names instead; paths
    relative to the CSV's own folder. Header names match whatever their case and surrounding
    spaces. A split column named by the caller must exist; the default one is optional."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise DataError(f"cannot read {csv_path} as UTF-8 text; save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{csv_path} is not a valid CSV ({exc}); fix the file") from None
    except OSError as exc:
        raise DataError(f"cannot read {csv_path} ({exc.strerror or exc})") from None
    named = named or CsvColumns()
    wanted = {
        "path": named.get("path_column", "path"),
        "label": named.get("label_column", "label"),
        "split": named.get("split_column", "split"),
    }
    if not rows:
        raise DataError(
            f"{csv_path} is empty; it needs a header row naming its {wanted['path']} and "
            f"{wanted['label']} columns"
        )
    columns: dict[str, int] = {}
    for i, cell in enumerate(rows[0]):
        columns.setdefault(cell.strip().lower(), i)
    required = ["path", "label", *(["split"] if "split_column" in named else [])]
    if any(wanted[role].lower() not in columns for role in required):
        _refuse_other_delimiter(csv_path, rows[0])
        needed = ",".join(wanted[role] for role in required)
        optional = "" if "split" in required else " (and optionally split)"
        found = ", ".join(repr(cell.strip()) for cell in rows[0] if cell.strip()) or "none"
        raise DataError(
            f"{csv_path} needs a header with columns {needed}{optional}; found columns: "
            f"{found}; say which columns hold the image paths and labels with --path-column "
            "and --label-column (and --split-column), or path_column=, label_column=, "
            "split_column= in Python"
        )
    path_col, label_col = columns[wanted["path"].lower()], columns[wanted["label"].lower()]
    header_width = len(rows[0])
    split_col = columns.get(wanted["split"].lower())
    entries: list[_Entry] = []
    for number, raw in enumerate(rows[1:], start=2):
        row = [cell.strip() for cell in raw] + [""] * (header_width - len(raw))
        if not any(row):
            continue
        path_text, label = row[path_col], row[label_col]
        if not path_text:
            # An empty label is an image with no label: a multi-label negative.
            raise DataError(f"row {number} of {csv_path} has an empty path; every row needs one")
        split = None
        if split_col is not None:
            value = row[split_col]
            split = _SPLIT_ALIASES.get(value.lower())
            if split is None:
                raise DataError(
                    f"row {number} of {csv_path} has split {value!r}; use train, val or test "
                    "(or drop the split column to let headstart split)"
                )
        path = Path(path_text)
        if not path.is_absolute():
            path = csv_path.parent / path
        entries.append(_Entry(path, label, split, f"row {number}"))
    return entries


# --------------------------------------------------------------------------- public entry points


@bulk
def load_dataset(
    source: str | Path,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    verify: bool = False,
    vouch: Vouch | None = None,
    path_column: str | None = None,
    label_column: str | None = None,
    split_column: str | None = None,
    multi_label: bool = False,
) -> Dataset:
    """Read a labelled dataset from a folder or a CSV file.

    The layout is detected, not configured, because users arrange data in a few common ways:

    - ``DATA/train/<class>/*``, ``DATA/val/<class>/*`` (or ``valid``, ``validation``),
      optionally ``DATA/test/<class>/*``: the user's split is kept. Without a val folder,
      ``val_fraction`` of train is held out (test is never invented for this layout).
    - ``DATA/<class>/*``: split by headstart with ``val_fraction`` and ``test_fraction``
      (either may be 0, which leaves that split out; both 0 puts everything in train).
    - ``labels.csv`` with ``path,label[,split]`` (or the columns named by ``path_column``,
      ``label_column``, ``split_column``): paths relative to the CSV's folder; without a split
      column, split as for class folders.

    Images may be nested inside class folders. Hidden files and folders, ``__MACOSX`` and
    Windows' ``Thumbs.db`` and ``desktop.ini`` are ignored; symlinks are followed.

    Args:
        source: The dataset folder or CSV file.
        val_fraction: Share of each class held out for validation when headstart splits.
        test_fraction: Share of each class held out for test when headstart splits.
        seed: Makes headstart's split reproducible; recorded in ``split_spec``.
        classes: The classes of an already trained model, when reading evaluation data. Labels
            then index into these, a class unknown to them is an error, and data with only some
            of the classes (or no train split) is accepted.
        verify: Decode every image fully so truncated or corrupt files are skipped now rather
            than found during a run. Slower: without it only file headers are read. They are
            dropped before the split, so the rest may split differently from a run's; for the
            very dataset a run ends up with, load without it and call :func:`verify_dataset`.
        vouch: Given a list of files, returns those known to be images, which are then not
            opened at all (e.g. :meth:`headstart.features.FeatureCache.decoded`: files a run
            decoded whole before, unchanged since). Ignored with ``verify``.
        path_column: The CSV column holding the image paths (default "path"), for a CSV made
            for something else (``filename,class``): naming it beats copying the file.
        label_column: The CSV column holding the labels (default "label").
        split_column: The CSV column holding train/val/test (default "split", used if present);
            once named, it must exist.
        multi_label: Read the CSV's labels as sets (``dog;ball``, or empty for none) even if
            every row holds one label; a CSV with a row of other than one label is read so
            anyway (:mod:`headstart.data.multilabel`). CSV files only.

    Returns:
        The dataset, with every unusable file listed in ``skipped``.

    Raises:
        DataError: The path does not exist or is neither a folder nor a CSV; fewer than two
            classes; a class with no usable training images; a val/test class unknown to train;
            a CSV without its path/label columns or with an unknown split; columns named for a
            folder; no usable image at all.
    """
    validate_split_args(val_fraction, test_fraction, seed)
    known = _resolve_classes(classes)
    check = _Check(verify, vouch)
    root = Path(source).expanduser().absolute()
    if not root.exists():
        raise DataError(
            f"dataset path {str(source)!r} does not exist; pass a folder of class folders "
            "(DATA/<class>/*.jpg) or a CSV file with path,label columns"
        )
    named = _csv_columns(path_column, label_column, split_column)
    if named is not None and not (root.is_file() and root.suffix.lower() == ".csv"):
        options = ", ".join(f"--{key.replace('_', '-')} ({key}=)" for key in named)
        raise DataError(
            f"{options} names a column of a CSV file, but {str(source)!r} is not a CSV file; "
            "pass the CSV, or leave the option out for a folder"
        )
    if multi_label and not (root.is_file() and root.suffix.lower() == ".csv"):
        raise DataError(
            f"multi-label data is read from a CSV file, but {str(source)!r} is not one; list the "
            f"images in a CSV with path,label columns, labels separated by ';' (dog;ball)"
        )
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(
                f"{str(source)!r} is a file but not a .csv; pass the folder that holds the class "
                "folders, or a CSV file with path,label columns"
            )
        dataset = _from_entries(
            _read_csv(root, named),
            root=root,
            layout="csv",
            source=str(root),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            known=known,
            check=check,
            multi_label=multi_label,
        )
        dataset.columns = named
        return dataset
    if not root.is_dir():
        raise DataError(f"{str(source)!r} is neither a folder nor a CSV file; pass a folder")
    dirs, _ = _children(root)
    split_dirs = _find_split_dirs(root, dirs)
    train_dir = split_dirs.get("train")
    # A split folder holds class folders; a "train" folder holding images directly is a class
    # called "train" (trains vs. cars), not a split.
    if train_dir is not None:
        is_split_layout = _has_subdirs(train_dir)
    else:
        is_split_layout = bool(split_dirs) and all(_has_subdirs(d) for d in split_dirs.values())
    if is_split_layout:
        return _load_split_folders(
            root, split_dirs, val_fraction=val_fraction, seed=seed, known=known, check=check
        )
    return _load_class_folders(
        root,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        known=known,
        check=check,
    )


@bulk
def dataset_from_lists(
    paths: Sequence[str | Path],
    labels: Sequence[Any],
    *,
    val_paths: Sequence[str | Path] | None = None,
    val_labels: Sequence[Any] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    vouch: Vouch | None = None,
    multi_label: bool = False,
) -> Dataset:
    """A dataset from parallel lists of image paths and labels (``ImageClassifier.fit``).

    Args:
        paths: Training images (relative paths are taken from the current directory).
        labels: One label per path; non-string labels (e.g. integers) become their ``str``. For
            several labels an image, a list (or set) of labels, or a string ``"dog;ball"``; an
            empty list or string is an image with none of the labels.
        val_paths: A validation set of your own. When given, ``val_fraction`` is not used and
            only ``test_fraction`` is held out of ``paths``.
        val_labels: One label per validation path.
        val_fraction: Share of each class held out for validation when ``val_paths`` is None.
        test_fraction: Share of each class held out for test.
        seed: Makes the split reproducible.
        vouch: As for :func:`load_dataset`: files known to be images, not opened again.
        multi_label: Read every label as a set even if each holds one (see
            :func:`load_dataset`).

    Returns:
        The dataset, layout "lists", rooted at the deepest folder common to all paths.

    Raises:
        DataError: Lengths differ, no paths, fewer than two classes, a validation label unknown
            to training, or a class with no usable images.
    """
    validate_split_args(val_fraction, test_fraction, seed)
    if len(paths) != len(labels):
        raise DataError(f"got {len(paths)} paths but {len(labels)} labels; pass one label per path")
    if (val_paths is None) != (val_labels is None):
        raise DataError("val_paths and val_labels go together; pass both or neither")
    if not paths:
        raise DataError("no training images given; pass at least one path per class")
    entries = [
        _Entry(Path(p).absolute(), _list_label(label), None, f"paths[{i}]")
        for i, (p, label) in enumerate(zip(paths, labels, strict=True))
    ]
    if val_paths is not None and val_labels is not None:
        if len(val_paths) != len(val_labels):
            raise DataError(
                f"got {len(val_paths)} val_paths but {len(val_labels)} val_labels; pass one "
                "label per path"
            )
        entries += [
            _Entry(Path(p).absolute(), _list_label(label), "val", f"val_paths[{i}]")
            for i, (p, label) in enumerate(zip(val_paths, val_labels, strict=True))
        ]
    try:
        root = Path(os.path.commonpath([str(e.path.parent) for e in entries]))
    except ValueError:  # paths on different drives (Windows)
        root = Path.cwd()
    return _from_entries(
        entries,
        root=root,
        layout="lists",
        source="the lists",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        known=None,
        check=_Check(vouch=vouch),
        multi_label=multi_label,
    )


def _list_label(label: object) -> str | tuple[str, ...]:
    """A list entry's label: its ``str``, or the labels of a collection (multi-label)."""
    if isinstance(label, (list, tuple, set, frozenset)):
        return tuple(str(part) for part in label)
    return str(label)


@bulk
def verify_dataset(
    dataset: Dataset,
    *,
    known: Collection[Path] = (),
    workers: int | None = None,
    quiet: bool = True,
) -> Dataset:
    """The dataset a training run ends up with: samples that do not decode moved to skipped.

    Discovery reads headers only, so a truncated JPEG is a sample until feature extraction
    decodes it and the run drops it (:meth:`Dataset.without`). To say beforehand what training
    will use (``headstart data``), this decodes every sample the same way, after the split, as
    training does: dropping a file before splitting would split the rest differently, and the
    counts would not be training's. ``load_dataset(verify=True)`` drops them before the split.

    Args:
        dataset: As :func:`load_dataset` returned it (with or without a voucher, as the run
            will read it).
        known: Files known to decode (the cache's :meth:`~headstart.features.FeatureCache.
            decoded`, as the voucher found them): not opened again, so a warm check costs a
            ``stat`` per file, as a warm run's listing does.
        workers: Decoding threads (Pillow decodes without the GIL); None: one per core, 0: in
            turn.
        quiet: No progress line (decoding a large new dataset takes minutes: unless quiet, it
            shows counts, rate and ETA).

    Returns:
        A new dataset, or ``dataset`` itself when every sample decodes.

    Raises:
        DataError: As :meth:`Dataset.without`: a class loses all its training images, or no
            image is left at all.
    """
    if not isinstance(known, (set, frozenset, dict)):
        known = set(known)  # membership per sample
    paths = [s.path for samples in dataset.splits.values() for s in samples if s.path not in known]

    def problem(path: Path) -> str | None:
        return image_problem(path, verify=True)

    threads = (os.cpu_count() or 1) if workers is None else workers
    problems: list[str | None] = []
    with Progress(len(paths), "checking images", unit="img", quiet=quiet or not paths) as bar:
        if threads > 1 and len(paths) > 1:
            with ThreadPoolExecutor(max_workers=min(threads, len(paths))) as pool:
                for found in pool.map(problem, paths):
                    problems.append(found)
                    bar.update(1)
        else:
            for path in paths:
                problems.append(problem(path))
                bar.update(1)
    failures = {p: why for p, why in zip(paths, problems, strict=True) if why is not None}
    return dataset.without(failures) if failures else dataset
