"""``auto``: measure the options on cached features, keep what wins, and say why with the numbers.

The advice that circulates (docs/why.md, story 3) is a two-by-two table: small or large dataset,
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
- *class weights* are measured where the training classes are imbalanced (the largest at least
  ``IMBALANCE_RATIO`` times the smallest): the linear head on the chosen features, unweighted and
  with ``balanced`` weights, by the same protocol and folds, compared by held-out macro-F1 (not
  log-loss: a weighted fit's loss is another loss, and what weights buy is the small classes'
  recall, which macro-F1 counts and accuracy hides). ``balanced`` is kept only when it raises
  macro-F1. Weights the user gave are used as given, for every option.
- *similarity* is the baseline's held-out accuracy, scaled so that chance is 0 and perfect is 1:
  with large data it decides how much of the backbone fine-tuning unfreezes.

What cannot be measured is said, with the reason, and the safe choice (the plain linear head on
cached features) is taken: a missing number is never read as "similar". ``scratch`` is never
chosen: it is the baseline to compare with. Measuring costs the extractions that training then
reuses from the cache, and seconds of head fitting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from headstart.augment import AugmentConfig, AugmentedView, resolve_augment
from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.errors import HeadstartError
from headstart.evaluation.metrics import macro_f1
from headstart.features import ExtractResult
from headstart.heads.logistic import Protocol, choose_protocol, score_linear
from headstart.heads.weights import ClassWeight, weight_vector

__all__ = ["AUG_VIEWS", "Advice", "DataFacts", "OptionScore", "advise", "decide", "measure"]

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
# Class weights are measured when the largest training class has at least this many times the
# images of the smallest (a 75/25 split of two classes). The measurement is cheap (one more
# linear fit on cached features) and decides by itself; the threshold spares balanced-enough data
# a comparison whose answer is mostly noise. Balanced weights shift the small class's logit
# against the large one's by the log of their count ratio (log 3 = 1.1 here), which moves only
# images near the boundary, and every comparison on held-out images is one more chance to keep a
# variant on noise. The doctor warns from 10x, where the problem is worth a warning.
IMBALANCE_RATIO = 3.0
# Balanced weights are kept when they raise held-out macro-F1 by more than this; a tie keeps
# unweighted, the simpler model, whose probabilities follow the classes' frequencies. No margin
# beyond that: on benchmarks/imbalance.py (one class of 8 cut to a tenth, so 8 of its images held
# out) the held-out gains were +0.006, -0.008 and +0.003 on three seeds while balanced weights
# changed test macro-F1 by +0.016, +0.073 and +0.018 (+0.012, +0.033 and -0.006 on a test split as
# imbalanced as training): a margin of 0.01 kept them in none of the three.
MACRO_F1_MARGIN = 0.0

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
    macro_f1: float | None = None

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
    imbalance: float = 1.0
    class_weight: str | dict[str, float] | None = None
    unweighted: OptionScore | None = None
    balanced: OptionScore | None = None

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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Advice:
        """The advice a run folder recorded (:meth:`to_dict`); fields a later version added and
        this one does not know are left out, so an old reader still reads a newer run."""
        raw = d.get("facts")
        facts = None
        if isinstance(raw, Mapping):
            score_names = {f.name for f in fields(OptionScore)}

            def score(s: Mapping[str, Any]) -> OptionScore:
                return OptionScore(**{k: v for k, v in s.items() if k in score_names})

            values: dict[str, Any] = {}
            for f in fields(DataFacts):
                value = raw.get(f.name)
                if f.name not in raw:
                    continue
                if f.name == "scores":
                    value = tuple(score(s) for s in value or ())
                elif "OptionScore" in str(f.type) and isinstance(value, Mapping):
                    value = score(value)
                values[f.name] = value
            facts = DataFacts(**values)
        return cls(
            str(d["strategy"]), dict(d.get("options") or {}), tuple(d.get("reasons") or ()), facts
        )


def _subsample(samples: Sequence[Any], seed: int, limit: int) -> list[Any]:
    if len(samples) <= limit:
        return list(samples)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(samples), size=limit, replace=False))
    return [samples[i] for i in keep]


def _counts(
    dataset: Dataset, train: Sequence[Any], class_weight: str | dict[str, float] | None
) -> dict[str, Any]:
    """The size facts of the training images: how many, per class, and how imbalanced."""
    per_class = np.bincount([s.label for s in train], minlength=len(dataset.classes))
    present = per_class[per_class > 0]
    return {
        "n_classes": len(dataset.classes),
        "n_train": len(train),
        "median_per_class": float(np.median(present)) if len(present) else 0.0,
        "min_per_class": int(present.min()) if len(present) else 0,
        "chance": 1.0 / max(1, len(dataset.classes)),
        "imbalance": float(present.max() / present.min()) if len(present) else 1.0,
        "class_weight": class_weight,
    }


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
    class_weight: str | dict[str, float] | None = None,
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
        class_weight: Set by the user: every option is scored with it, and weighting is not
            measured. None: ``balanced`` is measured against unweighted on imbalanced data.
        quiet: No progress lines while each option's head is fitted (they can take minutes).
    """
    given = weight_vector(class_weight, dataset.classes)  # an unknown class name fails first
    # A stage the user chose is the one training will pool: every option is scored on it.
    backbone = _layer(backbone, layer)
    stage = None if layer is None else str(backbone.spec.get("layer_module", layer))
    train_all = dataset.splits.get("train", [])
    train = _subsample(train_all, seed, PROBE_MAX_IMAGES)
    val = _subsample(dataset.splits.get("val", []), seed, PROBE_MAX_IMAGES // 3)
    n_classes = len(dataset.classes)

    def features(net: Backbone, desc: str, view: Any = None) -> dict[Path, np.ndarray]:
        paths = [s.path for s in (train if view is not None else [*train, *val])]
        result = extract(net, paths, desc, view=view)
        return dict(zip(result.paths, result.features, strict=True))

    plain = features(backbone, "measuring features")
    # The counts the explanation states are of the images training will use: a file that
    # would not decode (a truncated JPEG) is no training image, though the dataset lists it.
    # Only the measured sample is decoded: above PROBE_MAX_IMAGES training images, an
    # unreadable file outside it is still counted, as the dataset lists it.
    unreadable = {s.path for s in train if s.path not in plain}
    base = _counts(dataset, [s for s in train_all if s.path not in unreadable], class_weight)
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
        name: str,
        options: dict[str, Any],
        by_path: dict[Path, np.ndarray],
        extra: Any = (),
        weight: ClassWeight = given,
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
            class_weight=weight,
            quiet=quiet,
            desc=f"measuring {name}",
        )
        f1 = None
        if fit.heldout_logits is not None and fit.heldout_y is not None:
            f1 = macro_f1(fit.heldout_y, fit.heldout_logits.argmax(1), n_classes)
        return OptionScore(name, options, fit.val_loss, fit.val_accuracy, fit.C, macro_f1=f1)

    stage_options: dict[str, Any] = {} if stage is None else {"layer": stage}
    baseline = linear(
        "linear head, last stage" if stage is None else f"linear head, {stage}",
        dict(stage_options),
        plain,
    )
    scores = [baseline]
    best_features, best = plain, baseline
    if layer is None and early_layer is not None:
        earlier, earlier_features = _earlier_stage(backbone, early_layer, features, linear)
        scores.append(earlier)
        if earlier_features is not None and _beats(earlier, best):
            best, best_features = earlier, earlier_features
            stage_options = dict(best.options)
    if class_weight is None and facts["imbalance"] >= IMBALANCE_RATIO:
        # The head on the chosen features, weighted: the same protocol, folds and features.
        facts["unweighted"] = best
        facts["balanced"] = linear(
            f"{best.name}, balanced class weights",
            {**stage_options, "class_weight": "balanced"},
            best_features,
            weight="balanced",
        )
    config = augment if augment is not None else resolve_augment("default")
    if len(train_all) > AUG_VIEWS_MAX_TRAIN:
        scores.append(
            OptionScore(
                _on_stage("linear head", stage_options) + f" + {views} augmented views",
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
        # The user's stage is already the backbone's; otherwise the stage the options kept.
        net = backbone if layer is not None else _layer(backbone, stage_options.get("layer"))
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
                _on_stage("linear head", stage_options) + f" + {views} augmented views",
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
                given,
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
    class_weight: ClassWeight = None,
    *,
    quiet: bool = True,
) -> OptionScore:
    """The MLP head scored on the validation split; with cross-validation, not measured.

    The MLP's epochs are chosen by early stopping on held-out images; inside k folds that would
    choose on the very images it is scored on, an optimistic score the linear head does not get.
    """
    name = _on_stage("MLP head", stage_options)
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
        class_weight=class_weight,
    )
    best = trained.history[trained.best_epoch - 1] if trained.best_epoch else {}
    return OptionScore(
        name, {**stage_options, "head": "mlp"}, best.get("val_loss"), best.get("val_accuracy")
    )


def _on_stage(name: str, stage_options: dict[str, Any]) -> str:
    """``name`` with the stage its features came from when that is not the last one, as the
    earlier stage's own option is named ("linear head, layer3"): the kept option's label must say
    what it was scored on, or the summary reads as if the views were of the last stage."""
    layer = stage_options.get("layer")
    return f"{name}, {layer}" if layer is not None else name


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
        # What was measured, not what it suggests: the pretrained view's warning may call the
        # same images far from the pretraining's (its classifier's view of them), and both hold.
        + (
            "the frozen features separate your classes well"
            if similar
            else "the frozen features separate your classes poorly (unlike what they learned from)"
        )
    )
    weighting = _weighting(facts)
    if weighting is not None:
        reasons.append(weighting[1])
    weights = {"class_weight": "balanced"} if weighting is not None and weighting[0] else {}
    if large:
        options: dict[str, Any] = {"unfreeze": 1 if similar else "all", **weights}
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
    return Advice("features", {**best.options, **weights}, tuple(reasons), facts)


def _weighting(facts: DataFacts) -> tuple[bool, str] | None:
    """Whether to weight the classes (``balanced``) and the reason, or None where nothing was
    asked or measured (balanced enough classes, no weights given)."""
    if facts.class_weight is not None:
        return False, f"class weights: {facts.class_weight}, as given (not measured)"
    unweighted, balanced = facts.unweighted, facts.balanced
    if unweighted is None or balanced is None:
        return None
    ratio = (
        f"imbalanced classes (the largest has {facts.imbalance:.1f}x the images of the "
        f"smallest, >= {IMBALANCE_RATIO:g}x)"
    )
    before, after = unweighted.macro_f1, balanced.macro_f1
    if before is None or after is None:
        return False, f"{ratio}: balanced class weights could not be scored; unweighted"
    gain = after - before
    keep = gain > MACRO_F1_MARGIN
    verdict = (
        "balanced class weights kept" if keep else "unweighted kept (balanced did not improve it)"
    )
    return keep, (
        f"{ratio}: held-out macro-F1 of {unweighted.name} {before:.3f} unweighted, "
        f"{after:.3f} with balanced class weights ({gain:+.3f}): {verdict}"
    )


def advise(
    dataset: Dataset, backbone: Backbone, extract: Extractor, params: Mapping[str, Any]
) -> Advice:
    """Measure with what the user set (``ImageClassifier``'s parameters), and decide.

    What the user fixed is not measured: a head (or a ``C``, which is the linear head's), a layer;
    the augmentation and the number of views given are the ones measured.
    """
    from headstart.strategies._settings import augment_choice, plain_class_weight

    preset, values = augment_choice(params.get("augment"))
    augment = None if preset is None and not values else resolve_augment(preset, **values)
    facts = measure(
        dataset,
        backbone,
        extract,
        seed=int(params.get("seed") or 0),
        # A C given is the linear head's: auto then compares linear heads only.
        head=params.get("head") or ("linear" if params.get("C") is not None else None),
        layer=params.get("layer"),
        augment=augment,
        views=params.get("aug_views") or AUG_VIEWS,
        class_weight=plain_class_weight(params.get("class_weight")),
        quiet=bool(params.get("quiet", True)),
    )
    return decide(facts)
