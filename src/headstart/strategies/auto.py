"""``auto``: measure the options on cached features, keep what wins, and say why with the numbers.

The advice that circulates (shared/USERS.md story 3) is a two-by-two table: small or large dataset,
similar to the pretraining data or not. Here nothing in it is guessed:

- *size* is counted: the median number of training images per class. Below ``LARGE_PER_CLASS``
  the backbone stays frozen, since fine-tuning rarely beats a good head on frozen features there
  and overfits easily; above it, updating the backbone starts to pay.
- *which head on which features* is measured, not looked up: every option is scored on cached
  features by the protocol the head itself uses (held-out log-loss on the validation split, or by
  k-fold cross-validation over train + val when that split is small; the same folds for every
  option): the plain linear head on the last stage (the baseline), the linear head on an earlier
  stage, the linear head with K cached augmented views of every training image, and an MLP head.
  An option replaces the baseline only when its held-out log-loss is lower by ``MARGIN``: auto
  never picks an option that scored below the plain linear head. An augmentation the labels do
  not survive (flipped digits or text) scores worse on plain held-out images, and is left out.
- *similarity* is the baseline's held-out accuracy, scaled so that chance is 0 and perfect is 1:
  with large data it decides how much of the backbone fine-tuning unfreezes.

What cannot be measured is said, with the reason, and the safe choice (the plain linear head on
cached features) is taken: a missing number is never read as "similar". ``scratch`` is never
chosen: it is the baseline to compare with. Measuring costs the extractions that training then
reuses from the cache, and seconds of head fitting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.augment import AugmentConfig, AugmentedView, resolve_augment
from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.errors import HeadstartError
from headstart.features import ExtractResult
from headstart.heads.logistic import Protocol, choose_protocol, score_linear

__all__ = ["AUG_VIEWS", "Advice", "DataFacts", "OptionScore", "decide", "measure"]

LARGE_PER_CLASS = 300
# Baseline accuracy, scaled from chance (0) to perfect (1), from which the data counts as similar.
SIMILAR_SCORE = 0.5
# An option must lower the baseline's held-out log-loss by this fraction to replace it: less is
# within the noise of a few dozen held-out images, and the baseline is the simpler model.
MARGIN = 0.02
# Measuring subsamples the training images to this many (and validation to a third of it):
# enough to rank options and gauge similarity; small data, where the choice matters, is used whole.
PROBE_MAX_IMAGES = 3000
AUG_VIEWS = 4
# Augmented views cost AUG_VIEWS more forward passes per training image; above this many training
# images that is no longer a few minutes on a CPU, so they are not measured (nor chosen).
AUG_VIEWS_MAX_TRAIN = 5000

Extractor = Callable[..., ExtractResult]


@dataclass(frozen=True)
class OptionScore:
    """One option as measured: held-out log-loss and accuracy, or why it was not measured."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    log_loss: float | None = None
    accuracy: float | None = None
    C: float | None = None
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.log_loss is not None and math.isfinite(self.log_loss)


@dataclass(frozen=True)
class DataFacts:
    """What was counted and measured before choosing."""

    n_classes: int
    n_train: int
    median_per_class: float
    min_per_class: int
    chance: float
    n_val: int = 0
    protocol: str = ""
    protocol_reason: str = ""
    scores: tuple[OptionScore, ...] = ()
    unmeasured: str | None = None
    probe_images: int = 0

    @property
    def baseline(self) -> OptionScore | None:
        """The plain linear head on the last stage, when it could be measured."""
        first = self.scores[0] if self.scores else None
        return first if first is not None and first.measured else None

    def score(self, accuracy: float | None) -> float | None:
        """Accuracy scaled so that chance is 0 and perfect is 1."""
        if accuracy is None or self.chance >= 1:
            return None
        return (accuracy - self.chance) / (1 - self.chance)


@dataclass(frozen=True)
class Advice:
    """The chosen strategy, its options, and the reasons, with the numbers behind them."""

    strategy: str
    options: dict[str, Any] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()
    facts: DataFacts | None = None

    def explain(self) -> str:
        opts = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.options.items())
        head = f"strategy: {self.strategy}" + (f" ({opts})" if opts else "")
        lines = [f"      {r.strip()}" if r.startswith("  ") else f"  - {r}" for r in self.reasons]
        return "\n".join([head, *lines])

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "options": dict(self.options),
            "reasons": list(self.reasons),
            "facts": asdict(self.facts) if self.facts else None,
        }


def _subsample(samples: Sequence[Any], seed: int, limit: int) -> list[Any]:
    if len(samples) <= limit:
        return list(samples)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(samples), size=limit, replace=False))
    return [samples[i] for i in keep]


def measure(
    dataset: Dataset,
    backbone: Backbone,
    extract: Extractor,
    *,
    seed: int = 0,
    early_layer: int | str | None = -2,
    head: str | None = None,
    layer: int | str | None = None,
    augment: AugmentConfig | None = None,
    views: int = AUG_VIEWS,
    quiet: bool = True,
) -> DataFacts:
    """Count the data and score each option on cached features by the same held-out protocol.

    Args:
        extract: ``extract(backbone, paths, desc, view=None)``: cached features.
        early_layer: The earlier stage to compare with (None: don't).
        head, layer: Set by the user: then not measured (only what they allow is compared).
        augment: The augmentation of the views (default: the ``default`` preset); a config that
            changes no image measures no views.
        views: How many augmented views of each training image to measure.
        quiet: No progress lines while each option's head is fitted (they can take minutes).
    """
    train_all = dataset.splits.get("train", [])
    per_class = np.bincount([s.label for s in train_all], minlength=len(dataset.classes))
    present = per_class[per_class > 0]
    base: dict[str, Any] = {
        "n_classes": len(dataset.classes),
        "n_train": len(train_all),
        "median_per_class": float(np.median(present)) if len(present) else 0.0,
        "min_per_class": int(present.min()) if len(present) else 0,
        "chance": 1.0 / max(1, len(dataset.classes)),
    }
    train = _subsample(train_all, seed, PROBE_MAX_IMAGES)
    val = _subsample(dataset.splits.get("val", []), seed, PROBE_MAX_IMAGES // 3)
    n_classes = len(dataset.classes)

    def features(net: Backbone, desc: str, view: Any = None) -> dict[Path, np.ndarray]:
        paths = [s.path for s in (train if view is not None else [*train, *val])]
        result = extract(net, paths, desc, view=view)
        return dict(zip(result.paths, result.features, strict=True))

    plain = features(backbone, "measuring features")
    train = [s for s in train if s.path in plain]
    val = [s for s in val if s.path in plain]
    ty = np.array([s.label for s in train], np.int64)
    vy = np.array([s.label for s in val], np.int64)
    facts: dict[str, Any] = {**base, "n_val": len(val), "probe_images": len(train) + len(val)}
    if len(np.unique(ty)) < 2:
        return DataFacts(**facts, unmeasured="fewer than two classes have readable training images")
    protocol = choose_protocol(ty, vy if len(vy) else None, n_classes)
    facts.update(protocol=protocol.describe(), protocol_reason=protocol.reason)
    if protocol.kind == "none":
        return DataFacts(**facts, unmeasured=protocol.reason)

    def xs(by_path: dict[Path, np.ndarray], samples: Sequence[Any]) -> np.ndarray:
        width = len(next(iter(by_path.values())))
        if not samples:
            return np.zeros((0, width), np.float32)
        return np.stack([by_path[s.path] for s in samples]).astype(np.float32, copy=False)

    def linear(
        name: str, options: dict[str, Any], by_path: dict[Path, np.ndarray], extra: Any = ()
    ) -> OptionScore:
        fit = score_linear(
            xs(by_path, train),
            ty,
            xs(by_path, val),
            vy,
            n_classes,
            seed=seed,
            train_extra=extra,
            protocol=protocol,
            quiet=quiet,
            desc=f"measuring {name}",
        )
        return OptionScore(name, options, fit.val_loss, fit.val_accuracy, fit.C)

    baseline = linear("linear head, last stage", {}, plain)
    scores = [baseline]
    best_features, best = plain, baseline
    stage_options: dict[str, Any] = {}
    if layer is None and early_layer is not None:
        earlier, earlier_features = _earlier_stage(backbone, early_layer, features, linear)
        scores.append(earlier)
        if earlier_features is not None and _beats(earlier, best):
            best, best_features = earlier, earlier_features
            stage_options = dict(best.options)
    config = augment if augment is not None else resolve_augment("default")
    if len(train_all) > AUG_VIEWS_MAX_TRAIN:
        scores.append(
            OptionScore(
                f"linear head + {views} augmented views",
                {**stage_options, "aug_views": views},
                note=f"not measured: {len(train_all)} training images (> {AUG_VIEWS_MAX_TRAIN}) "
                f"would cost {views} more passes over them",
            )
        )
    elif config.is_identity:
        scores.append(
            OptionScore(
                f"linear head + {views} augmented views",
                note="not measured: the augmentation changes no image",
            )
        )
    else:
        net = _layer(backbone, layer if layer is not None else stage_options.get("layer"))
        extra = [
            xs(
                features(
                    net, f"measuring augmented view {i}/{views}", AugmentedView(config, seed, i)
                ),
                train,
            )
            for i in range(1, views + 1)
        ]
        scores.append(
            linear(
                f"linear head + {views} augmented views",
                {**stage_options, "aug_views": views},
                best_features,
                extra,
            )
        )
    if head is None:
        scores.append(
            _mlp(
                protocol,
                xs(best_features, train),
                ty,
                xs(best_features, val),
                vy,
                n_classes,
                seed,
                stage_options,
                quiet=quiet,
            )
        )
    return DataFacts(**facts, scores=tuple(scores))


def _layer(backbone: Backbone, layer: int | str | None) -> Backbone:
    if layer is None:
        return backbone
    from headstart.strategies._network import select_layer

    return select_layer(backbone, layer)


def _earlier_stage(
    backbone: Backbone,
    early_layer: int | str,
    features: Callable[..., dict[Path, np.ndarray]],
    linear: Callable[..., OptionScore],
) -> tuple[OptionScore, dict[Path, np.ndarray] | None]:
    """The earlier stage's score and its features (None when it has no stages to pool)."""
    try:
        earlier = _layer(backbone, early_layer)
    except HeadstartError:
        unmeasured = OptionScore(
            "linear head, an earlier stage",
            note="not measured: this backbone has no stages to pool earlier features from",
        )
        return unmeasured, None
    name = str(earlier.spec.get("layer_module"))
    by_path = features(earlier, "measuring earlier features")
    return linear(f"linear head, {name}", {"layer": name}, by_path), by_path


def _mlp(
    protocol: Protocol,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    num_classes: int,
    seed: int,
    stage_options: dict[str, Any],
    *,
    quiet: bool = True,
) -> OptionScore:
    """The MLP head scored on the validation split; with cross-validation, not measured.

    The MLP's epochs are chosen by early stopping on held-out images; inside k folds that would
    choose on the very images it is scored on, an optimistic score the linear head does not get.
    """
    name = "MLP head"
    if protocol.kind != "validation" or not len(val_y):
        return OptionScore(
            name,
            note="not measured: the validation split is too small to choose its epochs on "
            "and score it apart (the linear head is the safe choice here)",
        )
    from headstart.heads.training import HeadTrainingConfig, train_head

    trained = train_head(
        "mlp",
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes,
        HeadTrainingConfig(seed=seed),
        quiet=quiet,
    )
    best = trained.history[trained.best_epoch - 1] if trained.best_epoch else {}
    return OptionScore(
        name, {**stage_options, "head": "mlp"}, best.get("val_loss"), best.get("val_accuracy")
    )


def _beats(option: OptionScore, baseline: OptionScore) -> bool:
    """Lower held-out log-loss than ``baseline`` by more than the margin."""
    if not option.measured or not baseline.measured:
        return False
    assert option.log_loss is not None and baseline.log_loss is not None
    return option.log_loss < baseline.log_loss * (1 - MARGIN)


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _score_line(option: OptionScore, kept: OptionScore | None) -> str:
    if not option.measured:
        return f"{option.name}: {option.note or 'not measured'}"
    c = f", C={option.C:.3g}" if option.C is not None else ""
    mark = " <- kept" if option is kept else ""
    return (
        f"{option.name}: log-loss {option.log_loss:.3f}, accuracy {_pct(option.accuracy)}{c}{mark}"
    )


def decide(
    facts: DataFacts,
    *,
    large_per_class: int = LARGE_PER_CLASS,
    similar_score: float = SIMILAR_SCORE,
) -> Advice:
    """Small data: the best measured option on cached features; large data: fine-tune."""
    large = facts.median_per_class >= large_per_class
    reasons = [
        f"{facts.n_train} training images in {facts.n_classes} classes, median "
        f"{facts.median_per_class:.0f} per class: "
        + (f"large (>= {large_per_class})" if large else f"small (< {large_per_class})")
    ]
    baseline = facts.baseline
    if baseline is None:
        why = facts.unmeasured or "the plain linear head could not be scored"
        reasons.append(f"the frozen features could not be measured: {why}")
        reasons.append(
            "so the choice that is safe without a measurement: a linear head on cached "
            "features of the last stage, no augmented views"
        )
        return Advice("features", {}, tuple(reasons), facts)
    reasons.append(
        f"options scored on cached features by {facts.protocol} ({facts.protocol_reason}), "
        "held-out log-loss, lower is better:"
    )
    best = baseline
    for option in facts.scores[1:]:
        if _beats(option, best):
            best = option
    kept = best if not large else baseline
    reasons.extend(f"  {_score_line(option, kept)}" for option in facts.scores)
    score = facts.score(baseline.accuracy)
    similar = score is not None and score >= similar_score
    reasons.append(
        f"the plain linear head is right {_pct(baseline.accuracy)} of the time "
        f"(chance {_pct(facts.chance)}): "
        + ("similar to the pretraining data" if similar else "different from the pretraining data")
    )
    if large:
        options: dict[str, Any] = {"unfreeze": 1 if similar else "all"}
        reasons.append(
            "large and similar: fine-tune the top stage, starting from the best head"
            if similar
            else "large and different: fine-tune every stage, starting from the best head"
        )
        return Advice("finetune", options, tuple(reasons), facts)
    if best is baseline:
        reasons.append(
            "small: the plain linear head on cached features; no other option beat it by "
            f"{100 * MARGIN:.0f}% of its log-loss"
        )
    else:
        gain = (baseline.log_loss or 0.0) - (best.log_loss or 0.0)
        reasons.append(
            f"small: {best.name}, lower held-out log-loss than the plain linear head by {gain:.3f}"
        )
    return Advice("features", dict(best.options), tuple(reasons), facts)
