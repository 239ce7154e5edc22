"""``diagnose``: every check on a dataset, and ``quick_checks``: the duplicate checks alone."""

from __future__ import annotations

import csv
import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart.bulk import bulk
from headstart.data import CsvColumns, Dataset, load_dataset
from headstart.data.facts import FACTS_VERSION, content_problem
from headstart.data.multilabel import SEPARATOR, label_facts
from headstart.doctor._checks import (
    TINY_SIDE,
    class_findings,
    colour_findings,
    file_findings,
    image_stats,
    size_findings,
)
from headstart.doctor._duplicates import (
    DEFAULT_NEAR_THRESHOLD,
    MAX_THUMB_MEAN,
    MAX_THUMB_P95,
    duplicate_findings,
)
from headstart.doctor._findings import Finding, Report, sort_findings
from headstart.doctor._inspect import cached_facts
from headstart.doctor._labels import label_findings
from headstart.doctor._samples import Labelled, labelled_samples
from headstart.errors import DataError, PreprocessOverrideWarning

if TYPE_CHECKING:
    from headstart.backbones import Backbone
    from headstart.features.cache import FeatureCache
    from headstart.preprocess import Preprocess

__all__ = ["diagnose", "quick_checks"]

_SPLIT_ALIASES = {"train", "val", "valid", "validation", "test"}
_MAX_NEAR_THRESHOLD = 32  # half the bits: beyond it unrelated pictures match by chance

# Version of what quick_checks finds and says, part of the key its findings are stored under in
# the feature cache. Bump it whenever the duplicate findings change (grouping, severities, codes,
# message wording, details, their order: _duplicates.py, sort_findings, Finding.to_dict), so that
# findings stored by an older headstart are recomputed rather than shown.
_QUICK_CHECKS_VERSION = 1


def _visible_dirs(folder: Path) -> list[Path]:
    return [
        d
        for d in folder.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX"
    ]


def _class_names(root: Path, label_column: str = "label") -> list[str] | None:
    """Every class name a folder or CSV dataset mentions, or None when it cannot tell.

    Follows discovery's layout rule (split folders when ``train`` holds sub-folders, else class
    folders). A mismatch costs nothing: the relaxed load then fails and the strict one runs.
    """
    try:
        if root.is_file() and root.suffix.lower() == ".csv":
            with open(root, newline="", encoding="utf-8-sig") as fh:
                rows = list(csv.reader(fh))
            header = [cell.strip().lower() for cell in rows[0]]
            col = header.index(label_column.strip().lower())
            cells = [row[col] for row in rows[1:] if len(row) > col]
            labels = {name.strip() for cell in cells for name in cell.split(SEPARATOR)}
            return sorted(labels - {""}) or None
        if not root.is_dir():
            return None
        dirs = _visible_dirs(root)
        splits = [d for d in dirs if d.name.lower() in _SPLIT_ALIASES]
        train = [d for d in splits if d.name.lower() == "train"]
        if train:
            is_split = bool(_visible_dirs(train[0]))
        else:
            is_split = bool(splits) and all(_visible_dirs(d) for d in splits)
        if is_split:
            names = {c.name for d in splits for c in _visible_dirs(d)}
        else:
            names = {d.name for d in dirs}
        return sorted(names) or None
    except (OSError, ValueError, IndexError, UnicodeDecodeError, csv.Error):
        return None


def _load(
    source: str | Path,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    columns: CsvColumns | None = None,
    multi_label: bool = False,
) -> Dataset:
    """Read the dataset as training would, except that an empty class is not an error.

    Training refuses a dataset with an empty class (or one class, or a val class missing from
    train) before reading further, but the doctor's job is to list every such problem next to
    the others. Rather than re-implement discovery, it reads the dataset in discovery's relaxed
    mode, the one evaluation data uses: given all class names up front, it accepts classes without
    images and still applies the same layout, split and file rules. Anything else wrong (a missing
    path, no class folders at all) is a usage error and raised as training would raise it.
    """
    root = Path(source).expanduser().absolute()
    columns = columns or CsvColumns()
    names = _class_names(root, columns.get("label_column", "label"))
    if names is not None:
        try:
            return load_dataset(
                root,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                seed=seed,
                classes=names,
                multi_label=multi_label,
                **columns,
            )
        except DataError:
            pass  # the strict load below raises the accurate message
    return load_dataset(
        root,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        multi_label=multi_label,
        **columns,
    )


def _model_preprocess(
    model: str, weights: str | Path, overrides: Mapping[str, Any] | None
) -> tuple[Preprocess, Preprocess, list[Finding]]:
    """(expected, used, findings): overrides that change the weights' values become findings."""
    from headstart.backbones import resolve_model_preprocess

    expected = resolve_model_preprocess(model, weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PreprocessOverrideWarning)
        used = resolve_model_preprocess(model, weights, overrides)
    findings = []
    for w in caught:
        if not issubclass(w.category, PreprocessOverrideWarning):
            warnings.warn(w.message, w.category, stacklevel=2)
            continue
        findings.append(
            Finding(
                "warning",
                "preprocess-override",
                f"{w.message}; the weights learned from inputs prepared their way, so drop the "
                "override unless the weights really came from elsewhere",
                details={"overrides": list(used.overrides)},
            )
        )
    return expected, used, findings


def _check_threshold(near_threshold: int | None) -> None:
    if near_threshold is None:
        return
    if (
        isinstance(near_threshold, bool)
        or not isinstance(near_threshold, int)
        or not 0 <= near_threshold <= _MAX_NEAR_THRESHOLD
    ):
        raise DataError(
            f"near_threshold must be a whole number of bits from 0 to {_MAX_NEAR_THRESHOLD}, got "
            f"{near_threshold!r}; the default {DEFAULT_NEAR_THRESHOLD} finds resized and "
            "recompressed copies"
        )


def diagnose(
    source: str | Path | Dataset,
    *,
    model: str | None = None,
    weights: str | Path = "default",
    preprocess_overrides: Mapping[str, Any] | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.1,
    seed: int = 0,
    near_threshold: int | None = DEFAULT_NEAR_THRESHOLD,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
    device: str = "auto",
    engine: str = "auto",
    quiet: bool = False,
    columns: CsvColumns | None = None,
    multi_label: bool = False,
) -> Report:
    """Check a dataset before anyone trains on it.

    Reads the dataset as training would (same layout rules and split), decodes every image once
    and reports: files training would skip (empty, truncated, not images, unsupported, unlabelled)
    and extensions that lie; classes that are empty, too small to learn or to validate, and
    imbalance; exact and near duplicates inside a class (info), across classes (conflicting
    labels) and across splits (leakage); tiny images, extreme aspect ratios and grayscale splits
    or classes. With a model, also the preprocessing its weights expect, overrides that disagree
    with it, and label-noise candidates from cross-validated predictions on its features.

    Nothing is changed on disk; everything is reported, even what would stop training (an empty
    class), so one run lists all that needs fixing.

    Args:
        source: A dataset folder or CSV (as for ``headstart train``), or a loaded ``Dataset``.
        model: A backbone name; None skips the model checks and needs no deep-learning weights.
        weights: "default", "none" or a weights file, as for training.
        preprocess_overrides: The overrides a run would use; each one that changes the weights'
            value is reported.
        val_fraction: As for training, so the split checked is the split a run would use.
        test_fraction: As for training.
        seed: As for training.
        near_threshold: Perceptual-hash distance (bits of 64) of near-duplicate candidates;
            None checks exact duplicates only.
        cache: Read the images' facts (sizes, hashes) from the feature cache where a run stored
            them, store the ones computed here, and keep the model's features there too (a later
            training run reuses them).
        cache_dir: Feature cache folder (default: the user cache).
        num_workers: Decoding processes (None: chosen from the dataset size and the cores).
        device: Where the model runs ("auto", "cpu", "cuda", ...).
        engine: What runs it on a CPU (:mod:`headstart.features.engines`).
        quiet: No progress output.
        columns: The columns of a CSV ``source`` (``load_dataset``'s ``path_column``,
            ``label_column``, ``split_column``), for a CSV made for something else.
        multi_label: Read a CSV's labels as sets even if every row holds one (as training's
            ``--multi-label``); label checks then replace the class checks, and label noise,
            which needs one class an image, is not checked.

    Returns:
        The report; ``report.has_errors`` says whether anything serious was found.

    Raises:
        DataError: The dataset cannot be read at all (missing path, no class folders, bad CSV),
            or a bad ``near_threshold`` or split argument.
        BackboneNotFoundError: Unknown model, or weights not available offline.
        WeightsError: A bad weights file.
    """
    started = time.monotonic()
    _check_threshold(near_threshold)
    findings: list[Finding] = []
    expected = used = None
    backbone = None
    if model is not None:
        # Before the scan: a typo in the model name should cost a second, not a full pass.
        from headstart.backbones import create_backbone

        expected, used, override_findings = _model_preprocess(model, weights, preprocess_overrides)
        findings += override_findings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreprocessOverrideWarning)  # reported just above
            backbone = create_backbone(
                model, weights=weights, preprocess_overrides=preprocess_overrides
            )
    if isinstance(source, Dataset):
        dataset = source
    else:
        dataset = _load(
            source,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            columns=columns,
            multi_label=multi_label,
        )
    root = dataset.root
    samples = labelled_samples(dataset)
    folder = _cache_folder(cache, cache_dir)
    facts = {
        f.path: f
        for f in cached_facts(
            [s.path for s in samples], cache_dir=folder, num_workers=num_workers, quiet=quiet
        )
    }
    findings += file_findings(dataset.skipped, samples, facts, root)
    if dataset.multi_label:
        findings += label_findings(dataset)
    else:
        unreadable = [path for path, f in facts.items() if not f.ok]
        findings += class_findings(dataset, unreadable)
    duplicates, duplicate_stats = duplicate_findings(
        samples,
        facts,
        near_threshold=near_threshold,
        split_by_headstart=dataset.split_spec is not None,
        cache_dir=folder,
    )
    findings += duplicates
    if used is not None:
        given = " (overridden)" if "input_size" in used.overrides else ""
        min_side, why = min(used.input_size), f"the input size of {model}{given}"
    else:
        min_side, why = TINY_SIDE, "too small to show much"
    findings += size_findings(samples, facts, min_side=min_side, why=why)
    findings += colour_findings(samples, facts)
    stats: dict[str, Any] = {
        "images": len(samples),
        "unreadable": sum(not f.ok for f in facts.values()),
        "skipped": len(dataset.skipped),
        "counts": dataset.counts(),
        "split_spec": dataset.split_spec,
        **image_stats(samples, facts),
        "duplicates": duplicate_stats,
        **({"label_facts": label_facts(dataset)} if dataset.multi_label else {}),
    }
    if backbone is not None and dataset.multi_label:
        findings.append(
            Finding(
                "info",
                "label-noise-skipped",
                "label noise not checked: its cross-validation needs one class an image",
            )
        )
    elif backbone is not None:
        from headstart.doctor._noise import label_noise_findings

        noise, stats["label_noise"] = label_noise_findings(
            backbone,
            [s for s in samples if facts[s.path].ok],
            root=root,
            cache_dir=folder,
            num_workers=num_workers,
            device=device,
            engine=engine,
            quiet=quiet,
            seed=seed,
        )
        findings += noise
        view_finding = _pretrained_view_check(
            backbone,
            [s for s in samples if facts[s.path].ok],
            model=str(model),
            own=expected,
            cache_dir=folder,
            num_workers=num_workers,
            device=device,
            engine=engine,
            quiet=quiet,
            seed=seed,
        )
        if view_finding is not None:
            findings.append(view_finding)
            stats["pretrained_view"] = dict(view_finding.details)
    stats["seconds"] = round(time.monotonic() - started, 3)
    return Report(
        root=root,
        layout=dataset.layout,
        classes=list(dataset.classes),
        findings=sort_findings(findings),
        stats=stats,
        model=model,
        expected_preprocess=expected,
        preprocess=used,
    )


def _pretrained_view_check(
    backbone: Backbone,
    samples: Sequence[Labelled],
    *,
    model: str,
    own: Preprocess | None,
    cache_dir: Path | None,
    num_workers: int | None,
    device: str,
    engine: str,
    quiet: bool,
    seed: int,
) -> Finding | None:
    """The ``pretrained-view`` finding, or None when the weights came without a classifier.

    When the view collapses, the same sample runs through the common wrong preprocessings (and
    ``own``, the weights' preprocessing, when the user overrode it), so the finding can say
    whether wrong preprocessing or data far from the pretraining's is to blame.
    """
    from headstart.backbones import load_pretrained_classifier
    from headstart.doctor._pretrained_view import (
        DOCTOR_SAMPLE,
        judge_pretrained_view,
        sample_images,
    )
    from headstart.features.extract import extract_cached

    classifier = load_pretrained_classifier(backbone)
    if classifier is None:
        return None

    def extract(net: Backbone, paths: Sequence[Path]) -> Any:
        return extract_cached(
            net,
            paths,
            use_cache=cache_dir is not None,
            cache_dir=cache_dir,
            desc="asking the pretrained classifier",
            num_workers=num_workers,
            device=device,
            engine=engine,
            quiet=quiet,
        )

    sample = sample_images([(s.path, s.label) for s in samples], DOCTOR_SAMPLE, seed=seed)
    judged = judge_pretrained_view(
        backbone, sample, extract, model=model, classifier=classifier, own=own
    )
    return None if judged is None else judged[1]


def _cache_folder(cache: bool, cache_dir: str | Path | None) -> Path | None:
    if not cache:
        return None
    from headstart.features.cache import default_cache_dir

    return Path(cache_dir) if cache_dir else default_cache_dir()


@bulk
def quick_checks(
    dataset: Dataset,
    *,
    near_threshold: int | None = DEFAULT_NEAR_THRESHOLD,
    cache: bool = False,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
    quiet: bool = True,
    digests: Mapping[Path, str] | None = None,
) -> list[Finding]:
    """The duplicate checks alone, on an already loaded dataset: what training warns about.

    Exact (SHA-256) and near (perceptual hash) duplicates, grouped: across splits ("leak-exact",
    "leak-near": the held-out score is inflated), across classes ("conflicting-labels",
    "conflicting-labels-near"), and inside one class and split ("duplicate", "near-duplicate",
    info). Costs one decode of every image (about 0.5 ms for a small JPEG), except, with
    ``cache``, of images whose facts the feature cache holds (feature extraction stores them in
    its own decoding pass): a dataset trained on before costs no decode. Unreadable files are
    left out silently, since feature extraction reports them.

    With ``cache``, the findings themselves are stored too, under a hash of every sample's path,
    content digest, class and split (and the thresholds): they depend on nothing else, and a warm
    run checks the very dataset it checked before, so hashing those and reading the findings back
    (about 0.15 s at 100,000 images) replaces reading every image's facts again (3 to 5 s).

    Args:
        cache: Read and store the images' facts, and the findings, in the feature cache in
            ``cache_dir`` (default: the user's cache folder).
        digests: Content digests the caller's feature extraction just found (see
            :func:`~headstart.doctor._inspect.cached_facts`); the other files' digests are
            looked up in the cache (a ``stat`` each for files it has seen).

    Returns:
        Sorted findings, errors first; a caller warning about leakage keeps those with severity
        "error" or "warning".
    """
    _check_threshold(near_threshold)
    folder = _cache_folder(cache, cache_dir)
    if folder is None:
        return _quick_findings(dataset, near_threshold, None, num_workers, quiet, digests)[0]
    from headstart.features.cache import FeatureCache

    with FeatureCache(folder) as store:
        known, paths, found = _sample_digests(dataset, digests or {}, store)
        key = _quick_checks_key(dataset, paths, found, near_threshold)
        stored = _read_findings(store.get_result(key))
    if stored is not None:
        return stored
    findings, complete = _quick_findings(dataset, near_threshold, folder, num_workers, quiet, known)
    if complete:
        with FeatureCache(folder) as store:
            store.put_result(key, json.dumps([f.to_dict() for f in findings]))
    return findings


def _quick_findings(
    dataset: Dataset,
    near_threshold: int | None,
    folder: Path | None,
    num_workers: int | None,
    quiet: bool,
    digests: Mapping[Path, str] | None,
) -> tuple[list[Finding], bool]:
    """:func:`quick_checks`' findings, computed; and whether they may be stored under the key of
    ``digests``.

    They may not when an image's facts are not those of the digest in the key: the file changed
    since its digest was taken, or it could not be read (a reason about the file, which the next
    run may not share, rather than about its bytes).
    """
    samples = labelled_samples(dataset)
    facts = {
        f.path: f
        for f in cached_facts(
            [s.path for s in samples],
            cache_dir=folder,
            num_workers=num_workers,
            quiet=quiet,
            desc="checking for duplicates",
            digests=digests,
        )
    }
    findings, _ = duplicate_findings(
        samples,
        facts,
        near_threshold=near_threshold,
        split_by_headstart=dataset.split_spec is not None,
        cache_dir=folder,
    )
    known = digests or {}
    complete = folder is not None and all(
        f.sha256 == known.get(path)
        and (f.ok or f.sha256 is None or content_problem(f.problem or "") is not None)
        for path, f in facts.items()
    )
    return sort_findings(findings), complete


def _sample_digests(
    dataset: Dataset, given: Mapping[Path, str], store: FeatureCache
) -> tuple[Mapping[Path, str], list[Path], list[str]]:
    """The content digest of every sample: ``given`` ones as they are, the others from ``store``.

    Returns:
        (known, paths, digests): the digests by path, for :func:`cached_facts` (so no file is
        looked at twice); every sample's path, in :func:`labelled_samples`' order; and the
        digest of each ("" when the file cannot be read).
    """
    paths = [s.path for samples in dataset.splits.values() for s in samples]
    if len(given) == len(paths) and list(given) == paths:
        # The caller's digests are often those of exactly these paths in this very order (a
        # training run extracts features of this list), and of the same objects, so comparing
        # costs no Python call: take them as they are rather than hash every path to look each
        # up (0.06 s at 100,000 samples).
        return given, paths, list(given.values())
    # map over two iterables: given.get(path, "") for each, with no lambda call per sample.
    digests = list(map(given.get, paths, repeat("")))
    if "" not in digests:
        return given, paths, digests
    known, _ = store.digests(paths, known=given)
    return known, paths, list(map(known.get, paths, repeat("")))


def _quick_checks_key(
    dataset: Dataset, paths: Sequence[Path], digests: Sequence[str], near_threshold: int | None
) -> str:
    """The feature cache's key for :func:`quick_checks`' findings on ``dataset``.

    A hash of all the findings depend on: the version of their logic and of the facts (whether a
    digest's content is readable, its perceptual hash), the thresholds, who drew the split, and
    each sample's path, content digest, class and split, in the order :func:`labelled_samples`
    lists them (``paths`` and ``digests``). The class is its index, with the list of class names
    hashed once, and the splits are their names and sizes; the samples are hashed as three long
    strings (paths, digests, classes), not as an object each: 100,000 take about 0.1 s, most of
    it ``str`` of each path.
    """
    splits = [[split, len(samples)] for split, samples in dataset.splits.items()]
    header = [
        _QUICK_CHECKS_VERSION,
        FACTS_VERSION,
        near_threshold,
        MAX_THUMB_MEAN,
        MAX_THUMB_P95,
        dataset.split_spec is not None,
        list(dataset.classes),
        splits,
    ]
    labels = [str(s.label) for samples in dataset.splits.values() for s in samples]
    h = hashlib.sha256(json.dumps(header).encode())
    for values in (map(str, paths), digests, labels):
        # Each string is prefixed with its length, and within one, NUL separates the samples'
        # values: no path holds a NUL, and a digest is hex (empty when unreadable). A file name
        # that is not UTF-8 holds lone surrogates (as Python decodes it), hence "surrogatepass".
        data = "\0".join(values).encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    return "leakage:" + h.hexdigest()


def _read_findings(stored: str | None) -> list[Finding] | None:
    """Findings :func:`quick_checks` stored, or None when there are none or they do not parse
    (a damaged cache costs a recomputation, never an error)."""
    if stored is None:
        return None
    try:
        data = json.loads(stored)
        if not isinstance(data, list):
            return None
        return [Finding.from_dict(item) for item in data]
    except (ValueError, RecursionError):
        return None
