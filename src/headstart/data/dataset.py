"""The dataset model: labelled samples split into train/val/test, and the files left out.

What discovery produces and every later stage (training, evaluation, the doctor, the report)
reads. Kept apart from discovery, which decides *how* files become samples, so that code that
only consumes a dataset does not depend on folder walking and CSV parsing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from headstart.errors import DataError

__all__ = ["SPLIT_NAMES", "CsvColumns", "Dataset", "Layout", "Sample", "Skipped"]

Layout = Literal["split-folders", "class-folders", "csv", "lists"]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""The splits a dataset can have, in the order :attr:`Dataset.splits` lists them."""


class CsvColumns(TypedDict, total=False):
    """The CSV columns a dataset is read with, as keywords of ``load_dataset``; a role left out
    takes its default name (path, label, and split if the CSV has one)."""

    path_column: str
    label_column: str
    split_column: str


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        path: Absolute path of the file (symlinks kept as named, not resolved).
        label: Index into :attr:`Dataset.classes`; -1 in a multi-label dataset, where no one
            label is the image's (an index there would be silently wrong wherever it is read).
        labels: Multi-label datasets only: the image's label indices, sorted (empty: none of the
            labels); None in a single-label dataset.
    """

    path: Path
    label: int
    labels: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Skipped:
    """A file that is not used, and why, so runs can list what they left out.

    Attributes:
        path: The file.
        reason: Short and human, e.g. "empty file (0 bytes)" or "not an image (unrecognised
            content)".
    """

    path: Path
    reason: str


@dataclass
class Dataset:
    """The labelled images of a dataset, split into train/val/test, plus what was skipped.

    Attributes:
        root: The folder (or CSV file) it was read from.
        layout: How the labels were given.
        classes: Class names; a sample's label indexes this list. Sorted folder names (or
            labels), the order torchvision's ``ImageFolder`` uses, unless given explicitly.
        splits: Among "train", "val", "test", in that order; only non-empty splits are present.
            Each list is sorted by path.
        skipped: Files left out, with the reason, sorted by path.
        split_spec: ``{"val_fraction", "test_fraction", "seed"}`` when headstart chose the split
            itself (so it can be reproduced from the run folder), else None.
        columns: The CSV columns named by the caller (``{"path_column": "filename", ...}``),
            else None (``path,label[,split]``); recorded in the run, so that evaluating on the
            same CSV later reads it the same way.
        multi_label: Each image has a set of labels (:attr:`Sample.labels`), possibly empty,
            rather than one class (:mod:`headstart.data.multilabel`).
    """

    root: Path
    layout: Layout
    classes: list[str]
    splits: dict[str, list[Sample]]
    skipped: list[Skipped]
    split_spec: dict[str, float | int] | None = None
    columns: CsvColumns | None = None
    multi_label: bool = False
    # True when read against known classes (evaluation data): some classes may have no images.
    _relaxed: bool = field(default=False, init=False, repr=False, compare=False)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class; every class is listed, so an absent class shows as 0.

        In a multi-label dataset, a label's positive images (an image counts once per label).
        """
        out: dict[str, dict[str, int]] = {}
        for split, samples in self.splits.items():
            per_class = dict.fromkeys(self.classes, 0)
            for sample in samples:
                for label in (sample.label,) if sample.labels is None else sample.labels:
                    per_class[self.classes[label]] += 1
            out[split] = per_class
        return out

    def without(self, failures: Mapping[Path, str]) -> Dataset:
        """A copy with some files moved from the splits to :attr:`skipped`.

        Header sniffing cannot see a truncated file; feature extraction finds it when decoding.
        Rather than stop a run for one bad file, the run drops it here and lists it.

        Args:
            failures: Path to the reason it failed (e.g. an ``ImageDecodeError``'s reason).
                Paths that are not samples of this dataset are ignored.

        Returns:
            A new dataset; this one is unchanged.

        Raises:
            DataError: A class that had training images has none left, or no image is left at
                all; the message says which files failed and why.
        """
        reasons = {Path(path).absolute(): reason for path, reason in failures.items()}
        splits: dict[str, list[Sample]] = {}
        removed: list[Skipped] = []
        for split, samples in self.splits.items():
            kept = []
            for sample in samples:
                if sample.path in reasons:
                    removed.append(Skipped(sample.path, reasons[sample.path]))
                else:
                    kept.append(sample)
            if kept:
                splits[split] = kept
        result = Dataset(
            root=self.root,
            layout=self.layout,
            classes=list(self.classes),
            splits=splits,
            skipped=sorted([*self.skipped, *removed], key=lambda s: str(s.path)),
            split_spec=None if self.split_spec is None else dict(self.split_spec),
            columns=None if self.columns is None else CsvColumns(**self.columns),
            multi_label=self.multi_label,
        )
        result._relaxed = self._relaxed
        if not removed:
            return result
        if not self._relaxed:
            train_labels = {s.path: _labels_of(s) for s in self.splits.get("train", [])}
            before = set().union(*train_labels.values())
            after = set().union(*(_labels_of(s) for s in splits.get("train", [])))
            for label in sorted(before - after):
                name = self.classes[label]
                lost = [r for r in removed if label in train_labels.get(r.path, ())]
                noun = "label" if self.multi_label else "class"
                raise DataError(
                    f"{noun} {name!r} has no usable training images left "
                    f"({_describe_skips(lost)} when decoding); replace those files or remove "
                    "the class"
                )
        if not splits:
            raise DataError(
                f"no usable images left in {self.root} ({_describe_skips(removed)} when "
                "decoding); list them with `headstart data`"
            )
        return result

    def summary(self) -> dict[str, Any]:
        """A JSON-able description, for ``headstart data --json`` and the run folder."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": list(self.classes),
            "counts": self.counts(),
            "split_spec": None if self.split_spec is None else dict(self.split_spec),
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
            # Only when named: the summaries (and run folders) of other datasets stay as they were.
            **({} if self.columns is None else {"columns": dict(self.columns)}),
            # Counts are positives per label there; the images are counted apart.
            **(
                {"multi_label": True, "images": {s: len(v) for s, v in self.splits.items()}}
                if self.multi_label
                else {}
            ),
        }


def _labels_of(sample: Sample) -> tuple[int, ...]:
    return (sample.label,) if sample.labels is None else sample.labels


def _describe_skips(skips: Sequence[Skipped]) -> str:
    """E.g. "3 files skipped: 2 not an image (unrecognised content), 1 empty file (0 bytes)"."""
    kinds = Counter(s.reason.split(":")[0] for s in skips)
    parts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    noun = "file" if len(skips) == 1 else "files"
    return f"{len(skips)} {noun} skipped: {parts}"
