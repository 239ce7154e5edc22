"""Which backbone for these images: each one scored on them by the head's own protocol, timed.

"Which pretrained model should I use?" is usually answered with an ImageNet leaderboard, but the
transfer rank differs from the ImageNet rank (Kornblith et al. 2019; Goldblum et al. 2023,
"Battle of the Backbones") and differs again on a user's own images. What decides it can be
measured in the time one extraction takes: every backbone's features are extracted once (through
the content-addressed cache, so training afterwards extracts nothing again) and the linear head is
scored on them by the protocol it is chosen with (:func:`headstart.heads.logistic.score_linear`:
held-out log-loss on the validation split, or k-fold cross-validation over train + val when that
split is small). Every backbone is scored on the same images with the same protocol and the same
folds: the images every backbone could read, the protocol chosen once from their labels. Test
images are never looked at.

The concatenated features of the two best backbones are scored as well: cheap once both are
cached, and often a few points better. A run holds one backbone, so the recommendation is always
a single model (the one ``--model`` can name); the table says when the pair would beat it.

Speed is measured too, as extraction images per second on this machine: from the extraction
itself when it computed enough images to time, else from a short uncached pass over a few images.
With a ``budget`` in seconds, the recommendation is the best backbone whose extraction of the
whole dataset, at that rate, fits in it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from headstart._text import format_duration
from headstart.backbones import (
    EMBEDDED_MODEL,
    Backbone,
    create_backbone,
    list_cached_backbones,
    resolve_model_preprocess,
)
from headstart.data import Dataset
from headstart.errors import BackboneNotFoundError, DataError, InvalidParameterError
from headstart.features import ExtractResult
from headstart.heads.logistic import choose_protocol, score_linear

__all__ = [
    "AUTO_MODELS",
    "AUTO_SAMPLE_IMAGES",
    "AUTO_SECONDS",
    "BackboneScore",
    "Comparison",
    "compare_backbones",
    "expand_models",
    "wants_comparison",
    "write_comparison",
]

COMPARE_JSON = "compare.json"
COMPARE_PNG = "compare.png"

AUTO_MODELS: tuple[str, ...] = (
    EMBEDDED_MODEL,
    "mobilenetv4_conv_small.e2400_r224_in1k",
    "efficientnet_b0.ra_in1k",
    "resnet50.a1_in1k",
    "convnext_tiny.in12k_ft_in1k",
    "vit_small_patch16_224.augreg_in21k_ft_in1k",
    "eva02_small_patch14_224.mim_in22k",
    "vit_base_patch16_clip_224.openai",
    "convnext_base.fb_in22k_ft_in1k",
)
"""``--model auto``: small and fast to large, CNNs and ViTs, timm names; the shipped backbone
first, so the comparison has an answer on a machine without a network."""

AUTO_SAMPLE_IMAGES = 3000
"""Under ``auto``, train + val are scored on a stratified sample of at most this many images
(``auto``'s measurement uses the same size): enough to rank backbones, and the extraction of
eight of them stays minutes on a CPU."""

AUTO_SECONDS = 900.0
"""Under ``auto``, a backbone whose extraction of the sample would take the comparison past this
many seconds (at its rate on a few images) is not measured, and the table says so."""

SKIPPED = "skipped:"

# Fewer computed images than this are too few to time the extraction by: a short uncached pass
# over PROBE_IMAGES images gives the rate instead.
MIN_TIMED_IMAGES = 64
PROBE_IMAGES = 32

Extractor = Callable[..., ExtractResult]
"""``extract(backbone, paths, desc=..., cache=True)``: features, through the cache or not."""


@dataclass(frozen=True)
class BackboneScore:
    """One backbone (or pair) as measured, or why it was not.

    Attributes:
        model: The name as the user gave it (``A + B`` for the concatenation of two).
        accuracy, log_loss: Held-out figures of the linear head on its features (None: not
            measured, see ``note``).
        images_per_second: Extraction rate on this machine (decoding included).
        rate_from: ``"extraction"`` (timed over the images it computed) or ``"probe"`` (a short
            uncached pass, when the features were already cached).
        features, parameters, input_size: Feature width, backbone parameters, (height, width).
        seconds: The extraction of the whole dataset at that rate (what ``budget`` is held to).
        C: The chosen inverse L2 strength of the head.
        note: Why it was not measured, or anything else the table should say.
    """

    model: str
    accuracy: float | None = None
    log_loss: float | None = None
    images_per_second: float | None = None
    rate_from: str = ""
    features: int | None = None
    parameters: int | None = None
    input_size: tuple[int, int] | None = None
    seconds: float | None = None
    C: float | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.log_loss is not None and math.isfinite(self.log_loss)


@dataclass(frozen=True)
class Comparison:
    """Every backbone's score on the same held-out protocol, and the one recommended.

    Attributes:
        scores: One per model, in the order given (skipped ones included, with their note).
        pair: The concatenated features of the two best, or None with fewer than two measured.
        recommended: The model name as the user gave it (a single backbone: a run holds one).
        reason: One line: why that one.
        protocol: How the held-out figures were obtained.
        images: Images in the whole dataset (every split): what ``seconds`` extracts.
        scored: Images scored, by split (``{"train": 60, "val": 15}``).
        budget: The extraction budget in seconds, if one was given.
        seconds: How long the comparison took.
    """

    scores: tuple[BackboneScore, ...]
    recommended: str
    reason: str
    protocol: str
    images: int
    scored: dict[str, int] = field(default_factory=dict)
    pair: BackboneScore | None = None
    budget: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """``compare.json`` and ``--json``: the table, with the recommended model's name."""
        return {
            "format_version": 1,
            "recommended": self.recommended,
            "reason": self.reason,
            "protocol": self.protocol,
            "images": self.images,
            "scored": dict(self.scored),
            "budget": self.budget,
            "seconds": self.seconds,
            "scores": [asdict(s) for s in self.scores],
            "pair": asdict(self.pair) if self.pair is not None else None,
        }

    def table(self) -> str:
        """The comparison as people read it: one row a backbone, the recommended one starred."""
        header = ("", "model", "accuracy", "log-loss", "img/s", "features", "params", "input")
        rows = [header]
        shown = [s for s in self.scores if not s.note.startswith(SKIPPED)]
        for s in (*shown, *([self.pair] if self.pair is not None else [])):
            mark = "*" if s.model == self.recommended else ""
            size = f"{s.input_size[0]}x{s.input_size[1]}" if s.input_size else "-"
            rows.append(
                (
                    mark,
                    s.model,
                    _fmt(s.accuracy, "{:.4f}"),
                    _fmt(s.log_loss, "{:.4f}"),
                    _fmt(s.images_per_second, "{:.1f}"),
                    _fmt(s.features, "{:d}"),
                    _count(s.parameters),
                    size,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        skipped: dict[str, list[str]] = {}
        for s in self.scores:
            if s.note.startswith(SKIPPED):
                skipped.setdefault(s.note.removeprefix(SKIPPED).strip(), []).append(s.model)
        notes = [f"  skipped, {why}: {', '.join(names)}" for why, names in skipped.items()]
        scored = " + ".join(f"{n} {split}" for split, n in self.scored.items())
        footer = [
            f"held-out figures of the linear head on {scored} images, by {self.protocol}",
            f"recommended: {self.recommended} ({self.reason})",
        ]
        return "\n".join([*lines, *(["notes:", *notes] if notes else []), *footer])


def write_comparison(comparison: Comparison, folder: Path) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.png`` (accuracy against speed) into ``folder``."""
    from headstart.evaluation.plots import plot_comparison
    from headstart.runs import write_json

    folder.mkdir(parents=True, exist_ok=True)
    data = comparison.to_dict()
    write_json(folder / COMPARE_JSON, data)
    points = [*data["scores"], *([{**data["pair"], "pair": True}] if data["pair"] else [])]
    return folder / COMPARE_JSON, plot_comparison(
        points, comparison.recommended, folder / COMPARE_PNG
    )


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}k" if n >= 1000 else str(n)


def wants_comparison(model: str) -> bool:
    """Whether a ``--model`` value names several backbones (``A,B``) or ``auto``: compare them
    and train on the recommended one."""
    parts = [p.strip() for p in model.split(",") if p.strip()]
    return len(parts) > 1 or parts == ["auto"]


def expand_models(models: Sequence[str]) -> tuple[list[str], set[str]]:
    """The models to compare, and those ``auto`` added (skipped, not refused, when they cannot
    be had). ``auto`` is :data:`AUTO_MODELS` plus every backbone whose weights are on this
    machine already (:func:`headstart.backbones.list_cached_backbones`: the Hugging Face, torch
    hub and Keras caches), beside any others named; names may also be given as ``A,B``.

    Raises:
        InvalidParameterError: no model, or one named twice.
    """
    names = [part.strip() for m in models for part in m.split(",") if part.strip()]
    if not names:
        raise InvalidParameterError(
            "Give the backbones to compare, e.g. --model headstart-tiny resnet18.a1_in1k, "
            "or --model auto."
        )
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise InvalidParameterError(f"--model names {twice!r} twice; give it once.")
    expanded: list[str] = []
    added: set[str] = set()
    for name in names:
        auto = name == "auto"
        for model in (*AUTO_MODELS, *list_cached_backbones()) if auto else (name,):
            if model not in expanded:
                expanded.append(model)
                if auto and model not in names:
                    added.add(model)
    return expanded, added


def compare_backbones(
    dataset: Dataset,
    models: Sequence[str],
    extract: Extractor,
    *,
    weights: str = "default",
    preprocess: Mapping[str, Any] | None = None,
    budget: float | None = None,
    seed: int = 0,
    quiet: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Score the linear head on each backbone's features by one held-out protocol; recommend one.

    Args:
        models: Backbone names (``auto`` for the curated list: backbones whose weights cannot be
            had offline are skipped and named, and train + val are sampled to
            :data:`AUTO_SAMPLE_IMAGES`).
        extract: ``extract(backbone, paths, desc=..., cache=True)``: the features of ``paths``
            (``cache=False``: a timing pass that neither reads nor writes the cache).
        weights, preprocess: As :func:`headstart.backbones.create_backbone` takes them, for
            every backbone.
        budget: Seconds the extraction of the whole dataset may take: the recommendation is the
            best backbone that fits (None: the best).
        seed: Seeds the sample and the folds of cross-validation.
        clock: Seconds, for timing the extractions (injectable for tests).

    Raises:
        InvalidParameterError: No model, a budget that is not positive.
        DataError: No training images, or fewer than two classes to tell apart.
        BackboneNotFoundError: A backbone named explicitly that cannot be created (under
            ``auto`` it is skipped and named instead).
    """
    started = clock()
    if budget is not None and not budget > 0:
        raise InvalidParameterError(f"--budget is in seconds and must be positive, got {budget}.")
    names, added = expand_models(models)
    auto = any(part.strip() == "auto" for m in models for part in m.split(","))
    train = list(dataset.splits.get("train", []))
    val = list(dataset.splits.get("val", []))
    if not train:
        raise DataError(f"{dataset.root} has no training images to compare backbones on.")
    if auto:
        train, val = _sample(train, val, AUTO_SAMPLE_IMAGES, seed)
    images = sum(len(s) for s in dataset.splits.values())
    paths = [s.path for s in (*train, *val)]
    for name in names:  # a typo in the last name fails now, not after the others' extraction
        if name not in added:
            resolve_model_preprocess(name, weights, preprocess)
    measured: dict[str, dict[Path, np.ndarray]] = {}
    scores: dict[str, BackboneScore] = {}
    spent = 0.0
    for name in names:
        try:
            backbone = create_backbone(name, weights=weights, preprocess_overrides=preprocess)
        except BackboneNotFoundError as exc:
            if name not in added:
                raise
            scores[name] = BackboneScore(name, note=_skip_note(exc))
            continue
        row = _describe(name, backbone)
        if name in added:
            rate = _probe(backbone, paths, extract, clock)
            cost = len(paths) / rate
            if spent + cost > AUTO_SECONDS:
                scores[name] = replace(
                    row,
                    images_per_second=rate,
                    rate_from="probe",
                    seconds=images / rate,
                    note=f"{SKIPPED} extracting {len(paths)} images at {rate:.1f}/s would take "
                    f"the comparison past its {AUTO_SECONDS:.0f} s",
                )
                continue
        t0 = clock()
        result = extract(backbone, paths, desc=f"extracting {name}")
        took = clock() - t0
        spent += took
        if result.n_computed >= MIN_TIMED_IMAGES and took > 0:
            rate, rate_from = result.n_computed / took, "extraction"
        else:
            rate, rate_from = _probe(backbone, paths, extract, clock), "probe"
        measured[name] = dict(zip(result.paths, result.features, strict=True))
        scores[name] = replace(
            row, images_per_second=rate, rate_from=rate_from, seconds=images / rate
        )
        del backbone
    if not measured:
        raise BackboneNotFoundError(
            "None of the backbones could be had: "
            + "; ".join(f"{n} ({s.note})" for n, s in scores.items())
        )
    # The images every backbone could read: the same rows, labels, protocol and folds for all.
    readable = set.intersection(*(set(m) for m in measured.values()))
    train = [s for s in train if s.path in readable]
    val = [s for s in val if s.path in readable]
    ty = np.array([s.label for s in train], np.int64)
    vy = np.array([s.label for s in val], np.int64)
    n_classes = len(dataset.classes)
    if len(np.unique(ty)) < 2:
        raise DataError(
            f"{dataset.root} has readable training images of fewer than two classes; a "
            "comparison needs at least two classes to tell apart."
        )
    protocol = choose_protocol(ty, vy if len(vy) else None, n_classes)
    if protocol.kind == "none":
        raise DataError(
            f"Nothing can be held out to score the backbones on: {protocol.reason}. Add images "
            "(two or more in at least two classes)."
        )

    def score(name: str, x_of: Callable[[Sequence[Any]], np.ndarray]) -> tuple[float, float, float]:
        fit = score_linear(
            x_of(train),
            ty,
            x_of(val),
            vy,
            n_classes,
            seed=seed,
            protocol=protocol,
            quiet=quiet,
            desc=f"scoring {name}",
        )
        return float(fit.val_loss or math.nan), float(fit.val_accuracy or math.nan), fit.C

    for name, by_path in measured.items():
        loss, accuracy, C = score(name, _rows_of(by_path))
        scores[name] = replace(scores[name], log_loss=loss, accuracy=accuracy, C=C)
    ordered = [scores[n] for n in names]
    pair = _pair(ordered, measured, score, images)
    recommended, reason = _recommend(ordered, budget, pair)
    return Comparison(
        scores=tuple(ordered),
        recommended=recommended,
        reason=reason,
        protocol=protocol.describe(),
        images=images,
        scored={"train": len(train), **({"val": len(val)} if len(val) else {})},
        pair=pair,
        budget=budget,
        seconds=clock() - started,
    )


def _rows_of(by_path: Mapping[Path, np.ndarray]) -> Callable[[Sequence[Any]], np.ndarray]:
    """The feature rows of a list of samples, in its order (an empty list: no rows)."""
    width = len(next(iter(by_path.values())))

    def rows(samples: Sequence[Any]) -> np.ndarray:
        if not samples:
            return np.zeros((0, width), np.float32)
        return np.stack([by_path[s.path] for s in samples]).astype(np.float32, copy=False)

    return rows


def _pair(
    scores: Sequence[BackboneScore],
    measured: Mapping[str, Mapping[Path, np.ndarray]],
    score: Callable[..., tuple[float, float, float]],
    images: int,
) -> BackboneScore | None:
    """The concatenated features of the two best (by held-out log-loss), scored the same way."""
    ranked = sorted((s for s in scores if s.measured), key=lambda s: s.log_loss or 0.0)
    if len(ranked) < 2:
        return None
    first, second = ranked[0], ranked[1]
    a, b = _rows_of(measured[first.model]), _rows_of(measured[second.model])
    name = f"{first.model} + {second.model}"
    loss, accuracy, C = score(name, lambda samples: np.hstack([a(samples), b(samples)]))
    rate = None
    if first.images_per_second and second.images_per_second:
        rate = 1.0 / (1.0 / first.images_per_second + 1.0 / second.images_per_second)
    return BackboneScore(
        name,
        accuracy=accuracy,
        log_loss=loss,
        images_per_second=rate,
        rate_from="both",
        features=(first.features or 0) + (second.features or 0),
        parameters=(first.parameters or 0) + (second.parameters or 0),
        seconds=None if rate is None else images / rate,
        C=C,
    )


def _recommend(
    scores: Sequence[BackboneScore], budget: float | None, pair: BackboneScore | None
) -> tuple[str, str]:
    """(model, why): the lowest held-out log-loss, among those within ``budget`` if given.

    Held-out log-loss, not accuracy: it is what the head's own setting is chosen by, and on a
    few dozen held-out images accuracy ties where log-loss still ranks.
    """
    measured = [s for s in scores if s.measured]
    best = min(measured, key=lambda s: s.log_loss or 0.0)
    reason = f"lowest held-out log-loss, {best.log_loss:.4f}"
    if budget is not None:
        fits = [s for s in measured if s.seconds is not None and s.seconds <= budget]
        if not fits:
            fastest = min(measured, key=lambda s: s.seconds or math.inf)
            return fastest.model, (
                f"none extracts the whole dataset within {budget:g} s; this is the fastest, "
                f"about {_took(fastest.seconds)}"
            )
        chosen = min(fits, key=lambda s: s.log_loss or 0.0)
        reason = (
            f"lowest held-out log-loss, {chosen.log_loss:.4f}, of those that extract the whole "
            f"dataset within {budget:g} s (about {_took(chosen.seconds)})"
        )
        if chosen.model != best.model:
            reason += f"; {best.model} scores {best.log_loss:.4f} but takes {_took(best.seconds)}"
        best = chosen
    if pair is not None and pair.measured and (pair.log_loss or 0.0) < (best.log_loss or 0.0):
        within = budget is None or (pair.seconds is not None and pair.seconds <= budget)
        if within:
            reason += (
                f"; the pair {pair.model} scores {pair.log_loss:.4f}, but a run holds one backbone"
            )
    return best.model, reason


def _took(seconds: float | None) -> str:
    return "?" if seconds is None else format_duration(seconds)


def _describe(name: str, backbone: Backbone) -> BackboneScore:
    size = backbone.preprocess.input_size
    return BackboneScore(
        name,
        features=int(backbone.num_features),
        parameters=sum(p.numel() for p in backbone.module.parameters()),
        input_size=(int(size[0]), int(size[1])),
    )


def _probe(
    backbone: Backbone, paths: Sequence[Path], extract: Extractor, clock: Callable[[], float]
) -> float:
    """Images per second of an uncached extraction of a few images (the first of ``paths``)."""
    few = list(paths[:PROBE_IMAGES])
    t0 = clock()
    extract(backbone, few, desc="timing", cache=False)
    return len(few) / max(clock() - t0, 1e-9)


def _skip_note(exc: BaseException) -> str:
    """Why ``auto`` skipped a backbone, in words the same for every one skipped for that reason
    (the table names them together)."""
    text = str(exc)
    if "no connection and not in the local cache" in text:
        return f"{SKIPPED} weights not to be had offline (no connection, not in the local cache)"
    head, dot, _ = text.partition(". ")
    return f"{SKIPPED} {head}." if dot else f"{SKIPPED} {text}"


def _sample(
    train: Sequence[Any], val: Sequence[Any], cap: int, seed: int
) -> tuple[list[Any], list[Any]]:
    """At most ``cap`` of train + val in all, each split and each class in its share (at least
    two images a class, or all it has), seeded: every backbone sees the same sample."""
    total = len(train) + len(val)
    if total <= cap:
        return list(train), list(val)
    rng = np.random.default_rng(seed)

    def take(samples: Sequence[Any]) -> list[Any]:
        by_class: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            by_class.setdefault(s.label, []).append(i)
        keep: list[int] = []
        for members in by_class.values():
            n = max(min(2, len(members)), round(len(members) * cap / total))
            keep.extend(rng.permutation(members)[:n].tolist())
        return [samples[i] for i in sorted(keep)]

    return take(train), take(val)
