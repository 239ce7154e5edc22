"""Exact and near duplicates, grouped, and what each group means for training.

Exact duplicates share the SHA-256 of their bytes. Near duplicates (a resized, recompressed or
converted copy) have 64-bit perceptual hashes within ``near_threshold`` bits *and* 8x8 colour
thumbnails that agree everywhere: a mean absolute difference within :data:`MAX_THUMB_MEAN` grey
levels and 95% of the 192 values within :data:`MAX_THUMB_P95`. The hash alone is not enough:
pictures that merely share a layout (a small object on a plain background, as product photos are)
fall within a few bits of each other, and calling them conflicting labels would be a false alarm;
the mean alone misses a small object that differs, hence the percentile.

Measured on varied synthetic 64 px JPEGs (``headstart.synthetic``): 170 copies (48 px JPEG q75,
32 px JPEG q50, 100 px PNG) were within 10 bits, mean 5.9 and p95 17 of their originals; among
16,660 pairs of distinct images within 12 bits (of 50 million pairs), the closest had mean 5.7
but p95 26.9, or p95 19 but mean 10.3, so none passed both.

The pair search compares every hash with every other in NumPy blocks, so its cost grows with the
square of the count: 0.14 s for 10,000 images, 3 s for 50,000 (measured), about 12 s for 100,000.
Beyond a few hundred thousand images, check exact duplicates only (``near_threshold=None``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headstart.doctor._findings import Finding, Severity
from headstart.doctor._inspect import THUMB_SIDE, ImageFacts
from headstart.doctor._samples import Labelled, split_order

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "MAX_THUMB_MEAN",
    "MAX_THUMB_P95",
    "duplicate_findings",
    "near_pairs",
]

DEFAULT_NEAR_THRESHOLD = 12
"""Hamming distance (bits of 64) below which two perceptual hashes make a candidate pair."""

MAX_THUMB_MEAN = 7.0
"""Largest mean absolute difference (0..255) of two near-duplicates' 8x8 colour thumbnails."""

MAX_THUMB_P95 = 18.0
"""Largest 95th percentile of that difference: a small region that differs a lot is no copy."""

# Elements per block of the all-pairs distance matrix, and candidate pairs checked at once: bounds
# memory (tens of MB) whatever the dataset size, even when thousands of blank images all match.
_BLOCK_ELEMENTS = 1 << 22
_CANDIDATE_CHUNK = 1 << 16
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_SHOWN_NAMES = 5


def _popcount(x: np.ndarray) -> np.ndarray:
    bitcount = getattr(np, "bitwise_count", None)  # NumPy >= 2.0
    if bitcount is not None:
        return np.asarray(bitcount(x))
    as_bytes = np.ascontiguousarray(x).view(np.uint8).reshape(*x.shape, 8)
    return _POP8[as_bytes].sum(axis=-1, dtype=np.uint8)


def near_pairs(
    hashes: np.ndarray, thumbs: np.ndarray, threshold: int
) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, distance)``, ``i < j``, of near-identical images.

    Args:
        hashes: ``uint64 [N]`` perceptual hashes.
        thumbs: ``[N, THUMB_SIDE * THUMB_SIDE * 3]`` thumbnails (any integer type).
        threshold: Largest Hamming distance of a candidate pair.
    """
    n = len(hashes)
    thumbs = thumbs.astype(np.int16, copy=False)
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        # Upper triangle only: rows start..stop against columns start..n.
        dist = _popcount(hashes[start:stop, None] ^ hashes[None, start:])
        rows, cols = np.nonzero(dist <= threshold)
        keep = cols > rows  # column offset equals row offset here, so this is j > i
        rows, cols = rows[keep], cols[keep]
        for lo in range(0, len(rows), _CANDIDATE_CHUNK):
            r, c = rows[lo : lo + _CANDIDATE_CHUNK], cols[lo : lo + _CANDIDATE_CHUNK]
            i, j = r + start, c + start
            diff = np.abs(thumbs[i] - thumbs[j])
            ok = (diff.mean(axis=1) <= MAX_THUMB_MEAN) & (
                np.percentile(diff, 95, axis=1) <= MAX_THUMB_P95
            )
            out.extend(
                zip(i[ok].tolist(), j[ok].tolist(), dist[r[ok], c[ok]].tolist(), strict=True)
            )
    return out


def _cached_near_pairs(
    digests: Sequence[str],
    first: Mapping[str, ImageFacts],
    threshold: int,
    cache_dir: Path | None,
) -> list[tuple[int, int, int]]:
    """:func:`near_pairs` of the images ``digests`` name, through the feature cache.

    The pairs depend only on the set of contents and the threshold, so they are stored under a
    hash of exactly that (with the facts' version and these thresholds) as digest pairs, and
    mapped back to this call's order.
    """

    def search() -> list[tuple[int, int, int]]:
        hashes = np.array([first[d].phash for d in digests], dtype=np.uint64)
        width = THUMB_SIDE * THUMB_SIDE * 3
        thumbs = np.frombuffer(b"".join(first[d].thumb for d in digests), dtype=np.uint8)
        return near_pairs(hashes, thumbs.reshape(len(digests), width), threshold)

    if cache_dir is None:
        return search()
    from headstart.data.facts import FACTS_VERSION
    from headstart.features.cache import FeatureCache

    inputs = [FACTS_VERSION, threshold, MAX_THUMB_MEAN, MAX_THUMB_P95, sorted(digests)]
    key = "near-pairs:" + hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
    index = {d: i for i, d in enumerate(digests)}
    with FeatureCache(cache_dir) as cache:
        stored = cache.get_result(key)
        if stored is not None:
            pairs = [(index[a], index[b], int(d)) for a, b, d in json.loads(stored)]
            return [(min(i, j), max(i, j), d) for i, j, d in pairs]
        found = search()
        cache.put_result(key, json.dumps([[digests[i], digests[j], d] for i, j, d in found]))
    return found


def _components(n: int, pairs: Sequence[tuple[int, int, int]]) -> list[tuple[list[int], int]]:
    """Connected groups (size >= 2) of a pair list, each with its largest pair distance.

    Only images in some pair can be in a group: the others are never visited (a loop over every
    index cost 1 s at 100,000 images with ten pairs).
    """
    nodes = sorted({k for i, j, _ in pairs for k in (i, j)})
    parent = {k: k for k in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for x in nodes:
        groups.setdefault(find(x), []).append(x)
    worst: dict[int, int] = {}
    for i, _, d in pairs:
        r = find(i)
        worst[r] = max(worst.get(r, 0), d)
    return [(members, worst[r]) for r, members in groups.items() if len(members) > 1]


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN_NAMES])
    return shown + (f" and {len(names) - _SHOWN_NAMES} more" if len(names) > _SHOWN_NAMES else "")


def _group_finding(
    members: Sequence[Labelled],
    *,
    exact: bool,
    conflict: bool,
    leak: bool,
    split_by_headstart: bool,
    extra: Mapping[str, Any],
) -> Finding:
    members = sorted(members, key=lambda m: (split_order(m.split), str(m.path)))
    classes = sorted({m.label for m in members})
    splits = sorted({m.split for m in members}, key=split_order)
    n = len(members)
    what = f"{n} identical files" if exact else f"{n} near-identical images"
    suffix = "" if exact else "-near"
    of_class = f"class {classes[0]!r}" if len(classes) == 1 else f"classes {_names(classes)}"
    where = " and ".join(splits)
    severity: Severity
    if conflict:
        severity, code = "error", "conflicting-labels" + suffix
        message = (
            f"{what} carry different labels ({_names(classes)}): the model is taught two answers "
            "for one picture; keep one copy, in the right class"
        )
    elif leak:
        code = "leak-exact" if exact else "leak-near"
        if "train" in splits:
            severity = "error"
            scored = "test" if "test" in splits else "validation"
            message = (
                f"{what} of {of_class} are in {where}: the {scored} score is measured on "
                "pictures the model trained on; keep each picture in one split"
            )
        else:
            severity = "warning"
            message = (
                f"{what} of {of_class} are in {where}: one picture is scored in two held-out "
                "splits; keep it in one"
            )
        if split_by_headstart:
            message += " (headstart made this split: delete the extra copies from the class folder)"
    else:
        severity, code = "info", "duplicate" if exact else "near-duplicate"
        message = (
            f"{what} of {of_class} in {where}: one picture counts {n} times; delete the extra "
            "copies if they are accidental"
        )
    details = {"classes": classes, "splits": splits, **extra}
    return Finding(severity, code, message, tuple(m.path for m in members), details)


def duplicate_findings(
    samples: Sequence[Labelled],
    facts: Mapping[Path, ImageFacts],
    *,
    near_threshold: int | None = DEFAULT_NEAR_THRESHOLD,
    split_by_headstart: bool = False,
    cache_dir: Path | None = None,
) -> tuple[list[Finding], dict[str, int]]:
    """Findings for exact and near-duplicate groups, and counts for the report's stats.

    A group is reported once, with its most serious meaning: different labels (an error), then
    different splits (leakage: an error when train is involved), else a plain duplicate (info).
    Near groups are built over distinct contents, so exact copies are reported as exact groups
    and their near relatives as a near group that lists every file; a near group is a conflict
    (or a leak) only when no one label (split) is shared by a copy of each of its pictures, so
    one stray copy is not reported twice.

    Args:
        samples: The samples to compare.
        facts: :func:`inspect_image` results for (at least) those samples; unreadable files are
            left out, as training leaves them out.
        near_threshold: Largest perceptual-hash distance of a near pair; None skips the
            near-duplicate search.
        split_by_headstart: The split was drawn by headstart from class folders, so the fix for a
            leak is deleting copies rather than moving files between split folders.
        cache_dir: A feature cache folder: the near pairs of this set of images are read from
            it when a run searched the same set before (the search is quadratic: 12 s for
            100,000 images), and stored there otherwise.
    """
    by_digest: dict[str, list[Labelled]] = {}
    first: dict[str, ImageFacts] = {}
    for sample in samples:
        f = facts[sample.path]
        if not f.ok or f.sha256 is None:
            continue
        by_digest.setdefault(f.sha256, []).append(sample)
        first.setdefault(f.sha256, f)

    findings: list[Finding] = []
    exact = [(d, m) for d, m in by_digest.items() if len(m) > 1]
    for digest, members in sorted(exact, key=lambda dm: min(str(m.path) for m in dm[1])):
        findings.append(
            _group_finding(
                members,
                exact=True,
                conflict=len({m.label for m in members}) > 1,
                leak=len({m.split for m in members}) > 1,
                split_by_headstart=split_by_headstart,
                extra={"sha256": digest},
            )
        )

    near_groups: list[Finding] = []
    digests = list(by_digest)
    if near_threshold is not None and len(digests) > 1:
        pairs = _cached_near_pairs(digests, first, near_threshold, cache_dir)
        for group, distance in _components(len(digests), pairs):
            copies = [by_digest[digests[index]] for index in group]
            near_groups.append(
                _group_finding(
                    [m for same in copies for m in same],
                    exact=False,
                    # Only what the exact groups do not already say: if one label (split) is
                    # shared by a copy of every picture, deleting the exact copies fixes it.
                    conflict=not set.intersection(*({m.label for m in c} for c in copies)),
                    leak=not set.intersection(*({m.split for m in c} for c in copies)),
                    split_by_headstart=split_by_headstart,
                    extra={"max_distance": distance},
                )
            )
    near_groups.sort(key=lambda f: str(f.paths[0]))
    findings.extend(near_groups)
    stats = {
        "exact_groups": len(exact),
        "exact_files": sum(len(m) for _, m in exact),
        "near_groups": len(near_groups),
        "near_files": sum(len(f.paths) for f in near_groups),
    }
    return findings, stats
