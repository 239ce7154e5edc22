"""The warnings before training: a class a split lacks, leaked duplicates, a blind backbone.

Each says something that would make the run's numbers mean less than they seem, and none stops
training: the user may have reasons (augmented copies made on purpose, a class too rare to
split), so ``fit`` warns (``DataWarning``, ``PretrainedViewWarning``) and goes on. They are called
from ``ImageClassifier.fit`` itself, so their ``stacklevel`` points at the caller of ``fit``.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from headstart.backbones import Backbone
from headstart.bulk import bulk
from headstart.data import Dataset, Sample
from headstart.errors import DataWarning

__all__ = ["warn_on_leakage", "warn_on_pretrained_view", "warn_on_small_classes"]


def warn_on_small_classes(dataset: Dataset) -> None:
    """One line per class that a split it needs is missing: it cannot be validated or tested."""
    totals = Counter(i for split in dataset.splits.values() for s in split for i in _indices(s))
    for name in ("val", "test"):
        samples = dataset.splits.get(name)
        if not samples:
            continue
        present = {i for s in samples for i in _indices(s)}
        for index, cls in enumerate(dataset.classes):
            if index in present:
                continue
            total = totals[index]
            needs = (
                "add images to it (at least one per split)" if total else "it has no images at all"
            )
            warnings.warn(
                f"class {cls!r} has no {name} images ({total} in all), so it cannot be "
                f"{'validated' if name == 'val' else 'tested'}; {needs}.",
                DataWarning,
                stacklevel=3,
            )


def _indices(sample: Sample) -> tuple[int, ...]:
    """The class of a sample, or the labels of a multi-label one."""
    return (sample.label,) if sample.labels is None else sample.labels


def warn_on_leakage(
    dataset: Dataset,
    digests: Mapping[Path, str] | None,
    *,
    cache: bool,
    cache_dir: str | Path | None,
    num_workers: int | None,
    quiet: bool,
) -> None:
    """Warn, never refuse, when the same picture sits in two splits or two classes.

    A leaked duplicate inflates the validation and test scores silently; the user may have
    reasons (augmented copies made on purpose), so training goes on after saying so.
    """
    from headstart.doctor import quick_checks

    findings = quick_checks(
        dataset,
        cache=cache,
        cache_dir=cache_dir,
        num_workers=num_workers,
        quiet=quiet,
        digests=digests,
    )
    # One line per kind of problem, not per group: a folder copied into another class
    # makes a group per picture, and a thousand lines would bury the one that matters.
    by_kind: dict[str, list[str]] = {}
    for finding in findings:
        if finding.severity in ("error", "warning"):
            by_kind.setdefault(finding.code, []).append(finding.message)
    for first, *others in by_kind.values():
        more = ""
        if others:
            more = f"; {len(others)} more group{'s' if len(others) > 1 else ''} like it"
        warnings.warn(
            f"{first}{more} (`headstart doctor DATA` lists them all)",
            DataWarning,
            stacklevel=3,
        )


@bulk
def warn_on_pretrained_view(
    dataset: Dataset,
    backbone: Backbone,
    extract: Callable[[Backbone, Sequence[Path]], Any],
    *,
    model: str,
    seed: int,
) -> None:
    """Ask the weights' own classifier about a few training images; warn if it collapses.

    The features it needs are the training images' own, so they land in the cache that
    training reads next: the check costs a classifier pass, not a forward pass.
    """
    from headstart.doctor import warn_on_pretrained_view as warn

    samples = [
        (s.path, ";".join(dataset.classes[i] for i in _indices(s)))
        for s in dataset.splits.get("train", [])
    ]
    warn(backbone, samples, extract, model=model, seed=seed)
