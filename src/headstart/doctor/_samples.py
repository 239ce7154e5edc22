"""The samples of a dataset flattened with their class name and split, and how paths are shown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headstart.data import Dataset

__all__ = ["Labelled", "display_path", "labelled_samples", "split_order"]


# Not frozen: the checks make one per image, and a frozen dataclass takes twice as long or more
# to create (0.15 s against 0.08 s at 100,000 images, measured). Nothing changes one after it is
# made, and nothing hashes one: no set or dict key holds a sample (and since a dataclass with eq
# but not frozen is unhashable, code that tried would fail loudly, not silently).
@dataclass(slots=True)
class Labelled:
    """One sample as the checks need it: file, class name (or label set) and split."""

    path: Path
    label: str
    split: str


def labelled_samples(dataset: Dataset) -> list[Labelled]:
    """Every sample of every split, in split order then path order; a multi-label sample's
    label is its label names joined by ``;`` (empty for none)."""
    if dataset.multi_label:
        # The label set as one name: copies with different sets are conflicting labels.
        return [
            Labelled(s.path, ";".join(dataset.classes[i] for i in s.labels or ()), split)
            for split, samples in dataset.splits.items()
            for s in samples
        ]
    return [
        Labelled(s.path, dataset.classes[s.label], split)
        for split, samples in dataset.splits.items()
        for s in samples
    ]


def split_order(split: str) -> int:
    """Sort key that lists train, val, test in that order."""
    return {"train": 0, "val": 1, "test": 2}.get(split, 3)


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the dataset (shorter, and what the user sees in their file browser).

    A CSV dataset's paths are shown relative to the CSV's folder; a path outside the dataset is
    shown whole.
    """
    base = root.parent if root.suffix.lower() == ".csv" else root
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
