"""``auto``: measure the data, then pick the strategy the transfer-learning literature would.

The advice that circulates (shared/USERS.md story 3) is a two-by-two table: small or large dataset,
similar to the pretraining data or not. Both axes are measured here rather than guessed:

- *size*: the median number of training images per class;
- *similarity*: how well the frozen features already separate the classes, as the cross-validated
  accuracy of a linear probe (logistic regression) on cached features, scaled so that chance is 0
  and perfect is 1. The same probe on an earlier stage tells whether generic, earlier features
  separate the classes better than the last stage's, the sign of data unlike the pretraining's.

The table then reads: small and similar -> a linear head on the last stage's features; small and
different -> the same on an earlier stage; large and similar -> fine-tune the top stage; large and
different -> fine-tune everything. With very few images per class, the head also gets augmented
views of every training image, cached like plain features (``aug_views``): that is where
augmentation pays for a head on frozen features (BENCHMARKS.md). ``scratch`` is never chosen: it
is the baseline to compare with. The probe runs on cached features, so measuring costs one
extraction that training then reuses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from headstart.backbones import Backbone
from headstart.data import Dataset
from headstart.errors import HeadstartError
from headstart.features import ExtractResult

__all__ = ["Advice", "DataFacts", "decide", "measure"]

# Below this many training images per class, fine-tuning rarely beats a linear head on frozen
# features and overfits easily; above it, updating the backbone starts to pay.
LARGE_PER_CLASS = 300
# Probe accuracy, scaled from chance (0) to perfect (1), from which the data counts as "similar".
SIMILAR_SCORE = 0.5
# How much better (in accuracy) an earlier stage must probe to be preferred over the last one.
EARLY_MARGIN = 0.03
# The probe subsamples to this many images: enough to rank, cheap on a CPU.
PROBE_MAX_IMAGES = 3000
# Below this many training images per class, cached augmented views help a head on frozen
# features (demo data, mean of 5 seeds: +2.1 test points at 20 a class, +0.9 at 30, none at 60).
FEW_PER_CLASS = 40
AUG_VIEWS = 4
# Views cost AUG_VIEWS more forward passes per training image; above this many training images
# that is no longer a few minutes on a CPU, so auto leaves it to the user.
AUG_VIEWS_MAX_TRAIN = 5000

Extractor = Callable[[Backbone, Sequence[Path], str], ExtractResult]


@dataclass(frozen=True)
class DataFacts:
    """What was measured before choosing."""

    n_classes: int
    n_train: int
    median_per_class: float
    min_per_class: int
    chance: float
    probe_last: float | None
    probe_early: float | None = None
    early_layer: str | None = None
    probe_images: int = 0

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
        return "\n".join([head, *(f"  - {r}" for r in self.reasons)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "options": dict(self.options),
            "reasons": list(self.reasons),
            "facts": asdict(self.facts) if self.facts else None,
        }


def _probe(x: np.ndarray, y: np.ndarray, seed: int) -> float | None:
    """Cross-validated accuracy of a logistic-regression probe on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(y)
    folds = int(min(5, counts[counts > 0].min())) if len(counts) else 0
    if folds < 2 or len(np.unique(y)) < 2:
        return None
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.5))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(model, x, y, cv=cv).mean())


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
) -> DataFacts:
    """Count the training data and probe the frozen features of the last and an earlier stage."""
    train = dataset.splits.get("train", [])
    per_class = np.bincount([s.label for s in train], minlength=len(dataset.classes))
    samples = _subsample(train, seed, PROBE_MAX_IMAGES)
    paths = [s.path for s in samples]

    def probe(net: Backbone, desc: str) -> float | None:
        result = extract(net, paths, desc)
        row = {p: i for i, p in enumerate(result.paths)}
        kept = [s for s in samples if s.path in row]
        if not kept:
            return None
        x = result.features[[row[s.path] for s in kept]]
        y = np.array([s.label for s in kept], dtype=np.int64)
        return _probe(x, y, seed)

    last = probe(backbone, "probing features")
    early: float | None = None
    early_name: str | None = None
    if early_layer is not None:
        from headstart.strategies._network import select_layer

        try:
            earlier = select_layer(backbone, early_layer)
        except HeadstartError:
            earlier = None  # not a timm backbone, or too few stages: nothing to compare
        if earlier is not None:
            early = probe(earlier, "probing earlier features")
            early_name = str(earlier.spec.get("layer_module"))
    present = per_class[per_class > 0]
    return DataFacts(
        n_classes=len(dataset.classes),
        n_train=len(train),
        median_per_class=float(np.median(present)) if len(present) else 0.0,
        min_per_class=int(present.min()) if len(present) else 0,
        chance=1.0 / max(1, len(dataset.classes)),
        probe_last=last,
        probe_early=early,
        early_layer=early_name,
        probe_images=len(paths),
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def decide(
    facts: DataFacts,
    *,
    large_per_class: int = LARGE_PER_CLASS,
    similar_score: float = SIMILAR_SCORE,
    early_margin: float = EARLY_MARGIN,
) -> Advice:
    """Apply the small/large x similar/different table to measured facts."""
    large = facts.median_per_class >= large_per_class
    score = facts.score(facts.probe_last)
    similar = score is None or score >= similar_score
    early_better = (
        facts.probe_early is not None
        and facts.probe_last is not None
        and facts.probe_early >= facts.probe_last + early_margin
    )
    size_line = (
        f"{facts.n_train} training images in {facts.n_classes} classes, median "
        f"{facts.median_per_class:.0f} per class: "
        + (f"large (>= {large_per_class})" if large else f"small (< {large_per_class})")
    )
    probe_line = (
        f"a linear probe on the frozen last-stage features reaches {_pct(facts.probe_last)} "
        f"(cross-validated on {facts.probe_images} images; chance {_pct(facts.chance)}): "
        + ("similar to the pretraining data" if similar else "different from the pretraining data")
    )
    reasons = [size_line, probe_line]
    if facts.probe_early is not None:
        reasons.append(
            f"an earlier stage ({facts.early_layer}) probes at {_pct(facts.probe_early)}"
            + (", better than the last stage" if early_better else ", no better than the last")
        )
    options: dict[str, Any] = {}
    if not large and early_better:
        strategy = "features"
        options["layer"] = facts.early_layer
        reasons.append(
            "small and different: a linear head on earlier, more generic features; "
            "fine-tuning would overfit this few images"
        )
    elif not large:
        strategy = "features"
        reasons.append(
            "small and similar: a head on cached frozen features is as accurate as "
            "fine-tuning here and trains in seconds"
        )
    elif similar:
        strategy = "finetune"
        options["unfreeze"] = 1
        reasons.append(
            "large and similar: fine-tune the top stage, keep the generic early stages frozen"
        )
    else:
        strategy = "finetune"
        options["unfreeze"] = "all"
        reasons.append(
            "large and different: fine-tune every stage from the pretrained initialisation"
        )
    if strategy == "features" and facts.median_per_class < FEW_PER_CLASS:
        if facts.n_train <= AUG_VIEWS_MAX_TRAIN:
            options["aug_views"] = AUG_VIEWS
            reasons.append(
                f"few images per class (< {FEW_PER_CLASS}): {AUG_VIEWS} augmented views of each "
                f"training image, cached like plain features, give the head augmentation "
                f"for {AUG_VIEWS} more passes over the training images"
            )
        else:
            reasons.append(
                f"few images per class (< {FEW_PER_CLASS}) but {facts.n_train} training images: "
                f"--aug-views {AUG_VIEWS} would help the head, at {AUG_VIEWS} more passes over "
                "them; not chosen automatically"
            )
    return Advice(strategy=strategy, options=options, reasons=tuple(reasons), facts=facts)
