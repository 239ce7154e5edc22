"""The weights' own view of the data: what the pretraining classifier sees in the user's images.

The seed's story (docs/why.md, story 1): a ResNet50 fed ``rescale=1/255`` instead of its own
preprocessing called every cat and dog a "nematode". Its pretraining classifier said so before
a single step of training, to anyone who asked. This check asks: it runs the classifier the
weights came with (:func:`headstart.backbones.load_pretrained_classifier`) on a seeded sample of
the user's images, with the preprocessing training would use, and calls the predictions
*collapsed* when they look like no view of varied images:

- one pretraining class is the top guess for more than :data:`COLLAPSE_SHARE` of the sample,
  across at least two of the user's classes (the "nematode");
- the mean top probability is below :data:`UNIFORM_FACTOR` times the uniform ``1/K`` (it
  recognises nothing); or
- the mean entropy of its predictions is below :data:`SATURATED_ENTROPY` of the maximum
  ``log K`` (it is near-certain about every image: *saturated*).

A collapse has two causes, and only one is the user's to fix. Wrong preprocessing moves every
image out of the range the weights were trained on: a 0..1 input to a 0..255 network leaves a
constant offset that drowns the image, so every image gets the same answer, and a 0..255 input
to a 0..1 network (a Keras "caffe" override on headstart-tiny: 11x larger features) inflates the
logits into one-hot certainty. But images far from the pretraining's collapse too, with the
right preprocessing: flat coloured discs are mostly "solid_circle" to headstart-tiny (62-92% of
64 images, with doubt: entropy 0.09-0.31 of the maximum; the issue-24 false alarm). So a
collapse that is not saturated is put to a test: the same images go through the common wrong
preprocessings (:func:`wrong_preprocessings`: 0..255 pixels instead of 0..1 or the reverse, the
other channel order, no mean/std, ImageNet's mean/std, and the weights' own when the user
overrode them), and it is an error only when one of them does clearly better: when a wrong
preprocessing is the likelier explanation. Otherwise it is a warning that the images are far
from what the weights were trained on. A saturated view is an error whatever the alternatives
say: no image set makes a classifier trained with label smoothing certain of everything.

"Better" is measured without labels of the pretraining classes (the user's images have none):
by the *information* the predictions carry about which image was seen, the mutual information
between image and predicted class, ``H(mean p) - mean H(p)``, over ``log K``. It is 0 when every
image gets the same answer (however confident) and when every answer is uniform: the two
signatures of input out of the weights' range. Measured on 64 and on 16 images with the seed's
caffe-mode Keras classifier (tests/test_keras_story.py) and with headstart-tiny on flat blobs
(one coloured disc per image, 3 classes by colour, on white, black, random flat or blurred
white backgrounds, 3 seeds each: the test's ``blobs`` fixture is the blurred white one):

=========================================  =================  ================================
case                                       used: information  best unsaturated other
=========================================  =================  ================================
caffe classifier fed 0..1 (the nematode)   0.000              own caffe: 0.098 (0.078 on 16)
flat blobs, own preprocessing              0.078-0.175        0.98x-1.59x the used (ImageNet)
digit scans (grey on black, 64 px)         0.017              6.4x (ImageNet), collapsed too
=========================================  =================  ================================

Hence an alternative is *clearly better* when it is not collapsed itself (it sees the images
vary, as the right preprocessing of images like the pretraining's does), and its information is
at least :data:`INFORMATION_RATIO` times the used one's and :data:`INFORMATION_MARGIN` above it.
The digit scans show why the first condition: far from headstart-tiny's pretraining, all 64 were
'gradient_heart' with its own preprocessing and 75% 'gradient_pentagon' with ImageNet's mean/std,
six times the information of a view that is next to none, yet no view of them at all; the ratio
alone called that wrong preprocessing and told a new user to suspect the shipped weights' config.
Two other measures were tried and rejected: the user's classes predicted from the pretraining
log-probabilities (logistic regression, 5-fold cross-validated), and the top-1 concentration.
On flat blobs both
prefer a wrong preprocessing as often as not (ImageNet mean/std: 0.89 cross-validated accuracy
against the own 0.52; no mean/std: top-1 share 0.59 against 0.91), because separating three
colours has nothing to do with seeing the images as the pretraining did. A channel swap ties
with the right order on colour-blind features, so "no better than a wrong one" is read as "a
wrong one does better": a tie says nothing about which is right.

The alternatives cost a backbone forward pass each over the same sample (64 images for the doctor,
:data:`TRAIN_SAMPLE` for ``headstart train``), and they run only when the view collapses: a
healthy run pays nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.doctor._findings import Finding

if TYPE_CHECKING:
    from headstart.backbones import Backbone, PretrainedClassifier
    from headstart.preprocess import ChannelOrder, Preprocess

__all__ = [
    "COLLAPSE_SHARE",
    "DOCTOR_SAMPLE",
    "INFORMATION_MARGIN",
    "INFORMATION_RATIO",
    "MIN_CLASSES",
    "OWN",
    "TRAIN_SAMPLE",
    "SATURATED_ENTROPY",
    "UNIFORM_FACTOR",
    "PretrainedView",
    "judge_pretrained_view",
    "pretrained_view",
    "pretrained_view_finding",
    "sample_images",
    "warn_on_pretrained_view",
    "wrong_preprocessings",
]

COLLAPSE_SHARE = 0.6
"""Collapsed when one pretraining class is the top guess for more than this share of the sample
(and the sample spans two or more of the user's classes): varied images that all look like one
class to the weights are seen through the wrong preprocessing, or are far from the pretraining's."""
UNIFORM_FACTOR = 2.0
"""Collapsed when the mean top probability is below this many times uniform (``2/K``): the
classifier recognises nothing in any image."""
SATURATED_ENTROPY = 0.06
"""Saturated (and so collapsed) when the mean prediction entropy is below this fraction of
``log K``: certainty a classifier trained with the usual label smoothing cannot give in-range
inputs. headstart-tiny with the "caffe" override (0..255 into a 0..1 network) gave 0.014-0.044 on
the demo data and flat blobs; its own preprocessing 0.30-0.37 on the demo data and 0.089-0.31 on
flat blobs far from its pretraining. 0.06 sits between the two (0.08 before the blobs were
measured: too close to their 0.089)."""
INFORMATION_RATIO = 3.0
"""A wrong preprocessing that does not collapse is clearly better when its view carries at least
this many times the used view's information (module docstring): flat blobs gave at most 1.6x,
the nematode infinitely many (0.098 against 0.000); digit scans gave 6.4x, to a view that still
collapsed, which is why a collapsed alternative never counts."""
INFORMATION_MARGIN = 0.01
"""... and at least this much more, in units of ``log K``: a ratio of two near-zero numbers (a
sample of near-identical images) says nothing. The right preprocessing of a collapsed case gave
0.078 or more (the nematode on 16 images), so the margin only guards against that."""
MIN_CLASSES = 10
"""No view of a classifier with fewer classes: twice uniform is then over 0.2 (for two classes,
1.0: every binary classifier would "recognise nothing"), and a sample spread evenly over the
user's classes puts a correct classifier's top guess on a large share of it. A user's own Keras
classifier (``keras:PATH.keras``) often has two or three classes; the criteria say nothing there."""
DOCTOR_SAMPLE = 64  # images `headstart doctor` asks about
TRAIN_SAMPLE = 16  # images `headstart train` asks about: its features are cached for training
TOP_SHOWN = 5
OWN = "the weights' own preprocessing"
"""The name of the alternative that undoes the user's overrides."""
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

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
        collapsed: True when a criterion in the module docstring holds.
        reason: Why it collapsed, in words; empty when it did not.
        user_classes: How many of the user's classes the sample spans.
        per_class_top: The top guess for most images of each user class.
        information: Mutual information between image and predicted class over ``log K``: how
            much the answer depends on the image (0 when every image gets the same answer).
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
    information: float = 0.0

    @property
    def uniform(self) -> float:
        return 1.0 / self.num_classes

    @property
    def saturated(self) -> bool:
        """Near-certain about every image: an error whatever the alternatives say."""
        return self.entropy_fraction < SATURATED_ENTROPY

    def summary(self) -> str:
        """One line: the top classes it sees and how sure it is."""
        tops = ", ".join(f"{name!r} {n}" for name, n in self.top_classes)
        return (
            f"on {self.images} images, top guesses {tops}; mean top probability "
            f"{self.mean_max_probability:.3f} (uniform {self.uniform:.3g}), mean entropy "
            f"{self.entropy_fraction:.2f} of the maximum, information {self.information:.3f}"
        )

    def better_than(self, other: PretrainedView) -> bool:
        """Clearly better than ``other``: not collapsed (so not saturated), with much more
        information (module doc)."""
        return (
            not self.collapsed
            and self.information >= INFORMATION_RATIO * other.information
            and self.information >= other.information + INFORMATION_MARGIN
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
            "information": round(self.information, 6),
            "num_classes": self.num_classes,
            "collapsed": self.collapsed,
            "saturated": self.saturated,
            "reason": self.reason,
            "criteria": {
                "collapse_share": COLLAPSE_SHARE,
                "uniform_factor": UNIFORM_FACTOR,
                "saturated_entropy": SATURATED_ENTROPY,
                "information_ratio": INFORMATION_RATIO,
                "information_margin": INFORMATION_MARGIN,
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
        proba = torch.softmax(logits.float(), dim=1).numpy().astype(np.float64)
    top = proba.argmax(1)
    k = proba.shape[1]
    counts = np.bincount(top, minlength=k)
    order = np.argsort(-counts, kind="stable")
    shown = tuple((classifier.classes[i], int(counts[i])) for i in order[:TOP_SHOWN] if counts[i])
    mean_max = float(proba.max(1).mean())
    entropy = float(_entropy(proba).mean() / np.log(k))
    information = max(0.0, float(_entropy(proba.mean(0)) / np.log(k)) - entropy)
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
        information=information,
    )


def _entropy(proba: np.ndarray) -> np.ndarray:
    return np.asarray(-(proba * np.log(np.clip(proba, 1e-12, None))).sum(-1))


def _features(
    backbone: Backbone, paths: Sequence[Path], extract: Extract
) -> tuple[list[Path], np.ndarray]:
    result = extract(backbone, paths)
    return list(result.paths), np.asarray(result.features)


def wrong_preprocessings(used: Preprocess, own: Preprocess | None = None) -> dict[str, Preprocess]:
    """The common preprocessing mistakes relative to ``used``, by name, and the weights' own.

    Each changes one thing the way users get it wrong: the pixel scale (a missing or an extra
    ``/255``), the channel order (OpenCV's BGR), the normalisation (none, or ImageNet's for
    weights with their own). ``own``, the weights' preprocessing, is added when the user
    overrode it. Alternatives equal in values to ``used`` or to an earlier one are left out.

    Args:
        used: The preprocessing training would use.
        own: The weights' own preprocessing, when it differs from ``used`` by the user's
            overrides; None otherwise.
    """
    scale = used.scale * 255 if used.scale < 0.5 else used.scale / 255
    pixels = (
        "pixels x255 (0..255 instead of 0..1)"
        if used.scale < 0.5
        else "pixels /255 (0..1 instead of 0..255)"
    )
    flipped: ChannelOrder = "BGR" if used.channel_order == "RGB" else "RGB"
    candidates: list[tuple[str, Preprocess]] = []
    if own is not None:
        candidates.append((OWN, dataclasses.replace(own, decode=used.decode)))
    candidates += [
        (pixels, dataclasses.replace(used, scale=scale)),
        (
            f"{flipped} instead of {used.channel_order}",
            dataclasses.replace(used, channel_order=flipped),
        ),
        ("no mean/std normalisation", dataclasses.replace(used, mean=(0.0,) * 3, std=(1.0,) * 3)),
        (
            "ImageNet mean/std on 0..1 RGB",
            dataclasses.replace(
                used, scale=1 / 255, mean=_IMAGENET_MEAN, std=_IMAGENET_STD, channel_order="RGB"
            ),
        ),
    ]
    seen = {_values(used)}
    picked: dict[str, Preprocess] = {}
    for name, preprocess in candidates:
        if _values(preprocess) not in seen:
            seen.add(_values(preprocess))
            picked[name] = preprocess
    return picked


def _values(preprocess: Preprocess) -> str:
    """What makes two preprocessings give the same tensors: not where they came from."""
    return dataclasses.replace(preprocess, source="", overrides=()).fingerprint()


def judge_pretrained_view(
    backbone: Backbone,
    samples: Sequence[tuple[Path, str]],
    extract: Extract,
    *,
    model: str,
    classifier: PretrainedClassifier | None = None,
    own: Preprocess | None = None,
) -> tuple[PretrainedView, Finding] | None:
    """The view with ``backbone``'s preprocessing and its finding; None when there is no view.

    When the view collapses, the same sample goes through :func:`wrong_preprocessings` (with
    ``own`` among them when the user overrode it), so the finding can tell wrong preprocessing
    from data far from the pretraining's. A healthy view costs one classifier pass, no more.

    Args:
        backbone: The backbone with the preprocessing training would use.
        samples: The images to look at, with the user's class of each.
        extract: Gives a backbone's pooled features of the images.
        model: The model name, for the message.
        classifier: The pretraining classifier, if already loaded.
        own: The weights' own preprocessing; only used when ``backbone``'s has overrides.
    """
    from headstart.backbones import load_pretrained_classifier

    classifier = classifier or load_pretrained_classifier(backbone)
    view = pretrained_view(backbone, samples, extract, classifier=classifier)
    if view is None:
        return None
    overrides = tuple(backbone.preprocess.overrides)
    alternatives: list[tuple[str, PretrainedView]] = []
    if view.collapsed:
        wrong = wrong_preprocessings(backbone.preprocess, own if overrides else None)
        for name, preprocess in wrong.items():
            other = dataclasses.replace(backbone, preprocess=preprocess)
            seen = pretrained_view(other, samples, extract, classifier=classifier)
            if seen is not None:
                alternatives.append((name, seen))
    finding = pretrained_view_finding(
        view, model=model, overrides=overrides, alternatives=alternatives
    )
    return view, finding


def pretrained_view_finding(
    view: PretrainedView,
    *,
    model: str,
    overrides: Sequence[str],
    alternatives: Sequence[tuple[str, PretrainedView]] = (),
) -> Finding:
    """The ``pretrained-view`` finding: info, a far-data warning, or a wrong-preprocessing error.

    An error when the view saturates or a wrong preprocessing sees the images clearly better
    (:meth:`PretrainedView.better_than`); a warning when it collapses and none does.

    Args:
        view: What the classifier saw with the preprocessing training would use.
        model: The model name, for the message.
        overrides: The preprocessing values the user overrode.
        alternatives: ``(name, view)`` of the same images through :func:`wrong_preprocessings`,
            :data:`OWN` among them when there were overrides.
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
    others = dict(alternatives)
    if OWN in others:
        details["without_overrides"] = others[OWN].to_dict()
    details["alternatives"] = {
        name: {
            "information": round(other.information, 6),
            "entropy_fraction": round(other.entropy_fraction, 6),
            "collapsed": other.collapsed,
            "saturated": other.saturated,
            "better": other.better_than(view),
        }
        for name, other in alternatives
    }
    better = [(name, other) for name, other in alternatives if other.better_than(view)]
    better.sort(key=lambda item: (item[0] != OWN, -item[1].information))
    if not view.saturated and not better:
        tried = ", ".join(others) or "none"
        return Finding(
            "warning",
            "pretrained-view",
            f"{model}'s pretraining classifier sees your images as far from what it was trained "
            f"on: {view.reason} (information {view.information:.3f} of the maximum). No other "
            f"preprocessing sees them clearly better (tried: {tried}), so it is the data, not the "
            "preprocessing: expect frozen features to transfer less well than on images like "
            "the pretraining's (`--strategy finetune` adapts them)",
            details=details,
        )
    return Finding(
        "error",
        "pretrained-view",
        f"{model}'s pretraining classifier cannot see your images: {view.reason}. "
        f"That is the 'nematode' symptom of wrong preprocessing; "
        f"{_suspect(view, overrides, others, better)}",
        details=details,
    )


def _suspect(
    view: PretrainedView,
    overrides: Sequence[str],
    others: Mapping[str, PretrainedView],
    better: Sequence[tuple[str, PretrainedView]],
) -> str:
    """What to suspect for a wrong-preprocessing error: the override, or the weights' config."""
    flags = ", ".join(overrides)
    own = others.get(OWN)
    if own is not None and (
        (better and better[0][0] == OWN)
        or not own.collapsed
        or (view.saturated and not own.saturated)
    ):
        how = (
            "does not collapse"
            if not own.collapsed
            else "sees them better"
            if own.better_than(view)
            else "is not near-certain"
        )
        suspect = (
            f"suspect your preprocessing override ({flags}): with the weights' own "
            f"preprocessing it {how} ({own.summary()})"
        )
    elif overrides:
        suspect = f"suspect your preprocessing override ({flags}) first"
    else:
        suspect = (
            "nothing was overridden, so suspect the weights' config (mean, std, scale, channel "
            "order: compare `headstart preprocess --model M IMAGE` with the model card)"
        )
    if better and better[0][0] != OWN:
        name, other = better[0]
        suspect += f"; with {name} it sees them better ({other.summary()})"
    return suspect


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
    the same words as ``headstart doctor``'s finding, error or warning. A healthy view costs a
    classifier pass over features training caches anyway; only a collapsed one pays for the
    wrong preprocessings (and the weights' own, read from the model name, when overridden).
    """
    import warnings

    from headstart.errors import PretrainedViewWarning

    sample = sample_images(samples, TRAIN_SAMPLE, seed=seed)
    judged = judge_pretrained_view(
        backbone, sample, extract, model=model, own=_own_preprocess(backbone, model)
    )
    if judged is None:
        return None
    view, finding = judged
    if finding.severity != "info":
        warnings.warn(
            f"{finding.message} (`headstart doctor DATA --model M` checks more images)",
            PretrainedViewWarning,
            stacklevel=3,
        )
    return view


def _own_preprocess(backbone: Backbone, model: str) -> Preprocess | None:
    """The weights' own preprocessing when the user overrode it; None when not, or unknown."""
    if not backbone.preprocess.overrides:
        return None
    from headstart.backbones import resolve_model_preprocess
    from headstart.errors import HeadstartError

    try:
        return resolve_model_preprocess(model, backbone.spec.get("weights", "default"))
    except HeadstartError:
        return None
