"""The weights' own view of the data: what the pretraining classifier sees in the user's images.

The seed's story (docs/why.md, story 1): a ResNet50 fed ``rescale=1/255`` instead of its own
preprocessing called every cat and dog a "nematode". Its pretraining classifier said so before
a single step of training, to anyone who asked. This check asks: it runs the classifier the
weights came with (:func:`headstart.backbones.load_pretrained_classifier`) on a seeded sample of
the user's images, with the preprocessing training would use, and calls the predictions
*collapsed* when they carry no information about the images:

- one pretraining class is the top guess for more than :data:`COLLAPSE_SHARE` of the sample,
  across at least two of the user's classes (the "nematode");
- the mean top probability is below :data:`UNIFORM_FACTOR` times the uniform ``1/K`` (it
  recognises nothing); or
- the mean entropy of its predictions is below :data:`SATURATED_ENTROPY` of the maximum
  ``log K`` (it is near-certain about every image).

Right preprocessing on images unlike the pretraining's does none of these: the guesses spread
over the nearest pretraining classes, with doubt. Wrong preprocessing moves every image out of
the range the weights were trained on: a 0..1 input to a 0..255 network shrinks the logits
towards uniform or one constant answer, and a 0..255 input to a 0..1 network (a Keras "caffe"
override on headstart-tiny: 11x larger features) inflates them into one-hot certainty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.doctor._findings import Finding

if TYPE_CHECKING:
    from headstart.backbones import Backbone, PretrainedClassifier

__all__ = [
    "COLLAPSE_SHARE",
    "DOCTOR_SAMPLE",
    "MIN_CLASSES",
    "TRAIN_SAMPLE",
    "SATURATED_ENTROPY",
    "UNIFORM_FACTOR",
    "PretrainedView",
    "pretrained_view",
    "pretrained_view_finding",
    "sample_images",
    "warn_on_pretrained_view",
]

COLLAPSE_SHARE = 0.6
"""Collapsed when one pretraining class is the top guess for more than this share of the sample
(and the sample spans two or more of the user's classes): varied images that all look like one
class to the weights are seen through the wrong preprocessing."""
UNIFORM_FACTOR = 2.0
"""Collapsed when the mean top probability is below this many times uniform (``2/K``): the
classifier recognises nothing in any image."""
SATURATED_ENTROPY = 0.08
"""Collapsed when the mean prediction entropy is below this fraction of ``log K``: certainty a
classifier trained with the usual label smoothing cannot give in-range inputs. On the demo data
headstart-tiny's right preprocessing gives 0.37 of ``log K``, the "caffe" override 0.04."""
MIN_CLASSES = 10
"""No view of a classifier with fewer classes: twice uniform is then over 0.2 (for two classes,
1.0: every binary classifier would "recognise nothing"), and a sample spread evenly over the
user's classes puts a correct classifier's top guess on a large share of it. A user's own Keras
classifier (``keras:PATH.keras``) often has two or three classes; the criteria say nothing there."""
DOCTOR_SAMPLE = 64  # images `headstart doctor` asks about
TRAIN_SAMPLE = 16  # images `headstart train` asks about: its features are cached for training
TOP_SHOWN = 5

Extract = Callable[["Backbone", Sequence[Path]], Any]
"""An ``ExtractResult`` (``.paths``, ``.features``) of the images, through the feature cache."""


@dataclass(frozen=True)
class PretrainedView:
    """What the pretraining classifier saw in a sample of the user's images.

    Attributes:
        classifier: Where the classifier came from.
        images: How many images it saw.
        top_classes: ``(pretraining class, images it is the top guess for)``, most first.
        mean_max_probability: Mean over images of the top probability.
        entropy_fraction: Mean prediction entropy over the maximum ``log K``.
        num_classes: Pretraining classes (K).
        collapsed: True when either criterion in the module docstring holds.
        reason: Why it collapsed, in words; empty when it did not.
    """

    classifier: str
    images: int
    top_classes: tuple[tuple[str, int], ...]
    mean_max_probability: float
    entropy_fraction: float
    num_classes: int
    collapsed: bool
    reason: str = ""
    user_classes: int = 0
    per_class_top: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def uniform(self) -> float:
        return 1.0 / self.num_classes

    def summary(self) -> str:
        """One line: the top classes it sees and how sure it is."""
        tops = ", ".join(f"{name!r} {n}" for name, n in self.top_classes)
        return (
            f"on {self.images} images, top guesses {tops}; mean top probability "
            f"{self.mean_max_probability:.3f} (uniform {self.uniform:.3g}), mean entropy "
            f"{self.entropy_fraction:.2f} of the maximum"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier,
            "images": self.images,
            "top_classes": [
                {"class": name, "images": n, "share": round(n / max(1, self.images), 4)}
                for name, n in self.top_classes
            ],
            "mean_max_probability": round(self.mean_max_probability, 6),
            "uniform_probability": self.uniform,
            "entropy_fraction": round(self.entropy_fraction, 6),
            "num_classes": self.num_classes,
            "collapsed": self.collapsed,
            "reason": self.reason,
            "criteria": {
                "collapse_share": COLLAPSE_SHARE,
                "uniform_factor": UNIFORM_FACTOR,
                "saturated_entropy": SATURATED_ENTROPY,
            },
            "top_guess_per_user_class": dict(self.per_class_top),
        }


def sample_images(
    samples: Sequence[tuple[Path, str]], n: int, *, seed: int = 0
) -> list[tuple[Path, str]]:
    """A seeded sample of ``(path, user class)``, as even over the user's classes as it can be."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Path]] = {}
    for path, label in samples:
        by_class.setdefault(label, []).append(path)
    queues = {c: [ps[i] for i in rng.permutation(len(ps))] for c, ps in sorted(by_class.items())}
    picked: list[tuple[Path, str]] = []
    while len(picked) < n and any(queues.values()):
        for label, queue in queues.items():
            if queue and len(picked) < n:
                picked.append((queue.pop(0), label))
    return picked


def pretrained_view(
    backbone: Backbone,
    samples: Sequence[tuple[Path, str]],
    extract: Extract,
    *,
    classifier: PretrainedClassifier | None = None,
) -> PretrainedView | None:
    """Run the pretraining classifier on ``samples`` (path, user class); None when there is none.

    None too for a classifier of fewer than :data:`MIN_CLASSES` classes, whose view the
    criteria cannot judge.

    Args:
        backbone: The backbone with the preprocessing training would use.
        samples: The images to look at, with the user's class of each.
        extract: Gives the backbone's pooled features of the images.
        classifier: The pretraining classifier, if already loaded.
    """
    import torch

    from headstart.backbones import load_pretrained_classifier

    classifier = classifier or load_pretrained_classifier(backbone)
    if classifier is None or not samples or len(classifier.classes) < MIN_CLASSES:
        return None
    label_of = {p: c for p, c in samples}
    paths, features = _features(backbone, [p for p, _ in samples], extract)
    if not len(paths):
        return None
    with torch.no_grad():
        logits = classifier.module(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
        proba = torch.softmax(logits.float(), dim=1).numpy()
    top = proba.argmax(1)
    k = proba.shape[1]
    counts = np.bincount(top, minlength=k)
    order = np.argsort(-counts, kind="stable")
    shown = tuple((classifier.classes[i], int(counts[i])) for i in order[:TOP_SHOWN] if counts[i])
    mean_max = float(proba.max(1).mean())
    entropy = float(-(proba * np.log(np.clip(proba, 1e-12, None))).sum(1).mean() / np.log(k))
    user = [label_of[p] for p in paths]
    user_classes = sorted(set(user))
    per_class_top: dict[str, str] = {}
    for c in user_classes:
        rows = [i for i, u in enumerate(user) if u == c]
        per_class_top[c] = classifier.classes[int(np.bincount(top[rows], minlength=k).argmax())]
    share = counts[order[0]] / len(paths)
    reasons = []
    if share > COLLAPSE_SHARE and len(user_classes) >= 2:
        reasons.append(
            f"{classifier.classes[order[0]]!r} is its top guess for {counts[order[0]]} of "
            f"{len(paths)} images ({100 * share:.0f}%) across {len(user_classes)} of your classes"
        )
    if mean_max < UNIFORM_FACTOR / k:
        reasons.append(
            f"its mean top probability {mean_max:.3g} is under {UNIFORM_FACTOR:g}x uniform "
            f"({1 / k:.3g}): it recognises nothing"
        )
    if entropy < SATURATED_ENTROPY:
        reasons.append(
            f"it is near-certain about every image (mean entropy {entropy:.3f} of the maximum, "
            f"under {SATURATED_ENTROPY:g}; top guesses "
            + ", ".join(f"{name!r} {n}" for name, n in shown[:3])
            + ")"
        )
    return PretrainedView(
        classifier=classifier.source,
        images=len(paths),
        top_classes=shown,
        mean_max_probability=mean_max,
        entropy_fraction=entropy,
        num_classes=k,
        collapsed=bool(reasons),
        reason="; ".join(reasons),
        user_classes=len(user_classes),
        per_class_top=per_class_top,
    )


def _features(
    backbone: Backbone, paths: Sequence[Path], extract: Extract
) -> tuple[list[Path], np.ndarray]:
    result = extract(backbone, paths)
    return list(result.paths), np.asarray(result.features)


def pretrained_view_finding(
    view: PretrainedView,
    *,
    model: str,
    overrides: Sequence[str],
    without_overrides: PretrainedView | None = None,
) -> Finding:
    """The ``pretrained-view`` finding: an error when collapsed (naming what to suspect), else info.

    Args:
        view: What the classifier saw with the preprocessing training would use.
        model: The model name, for the message.
        overrides: The preprocessing values the user overrode.
        without_overrides: The same check with the weights' own preprocessing, when there were
            overrides: it tells whether they are to blame.
    """
    details = view.to_dict()
    if not view.collapsed:
        return Finding(
            "info",
            "pretrained-view",
            f"{model}'s pretraining classifier {view.summary()}: its view of the data varies, as "
            "it should with the right preprocessing",
            details=details,
        )
    if overrides:
        flags = ", ".join(overrides)
        if without_overrides is not None and not without_overrides.collapsed:
            suspect = (
                f"suspect your preprocessing override ({flags}): with the weights' own "
                f"preprocessing it does not collapse ({without_overrides.summary()})"
            )
            details["without_overrides"] = without_overrides.to_dict()
        else:
            suspect = f"suspect your preprocessing override ({flags}) first"
    else:
        suspect = (
            "nothing was overridden, so suspect the weights' config (mean, std, scale, channel "
            "order: compare `headstart preprocess --model M IMAGE` with the model card) or "
            "images far from the pretraining's"
        )
    return Finding(
        "error",
        "pretrained-view",
        f"{model}'s pretraining classifier cannot see your images: {view.reason}. "
        f"That is the 'nematode' symptom of wrong preprocessing; {suspect}",
        details=details,
    )


def warn_on_pretrained_view(
    backbone: Backbone,
    samples: Sequence[tuple[Path, str]],
    extract: Extract,
    *,
    model: str,
    seed: int = 0,
) -> PretrainedView | None:
    """``headstart train``'s version of the check: :data:`TRAIN_SAMPLE` images, a warning.

    Training goes on (the user may know better), but the warning comes before any epoch, with
    the same words as ``headstart doctor``'s error.
    """
    import warnings

    from headstart.errors import PretrainedViewWarning

    view = pretrained_view(backbone, sample_images(samples, TRAIN_SAMPLE, seed=seed), extract)
    if view is not None and view.collapsed:
        finding = pretrained_view_finding(
            view, model=model, overrides=backbone.preprocess.overrides
        )
        warnings.warn(
            f"{finding.message} (`headstart doctor DATA --model M` checks more images)",
            PretrainedViewWarning,
            stacklevel=3,
        )
    return view
