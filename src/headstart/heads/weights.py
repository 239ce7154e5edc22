"""Class weights for the loss: ``"balanced"`` (scikit-learn's) or a weight per class name.

With imbalanced classes, an unweighted cross-entropy is mostly the large classes' loss: the head
learns that the small class is rare and calls it less often than it occurs among the images that
are it, which costs its recall (and the macro-F1 and balanced accuracy that count every class
alike). ``"balanced"`` weights each image by ``n / (k * n_c)`` (``n`` images of ``k`` classes,
``n_c`` of its class), scikit-learn's ``class_weight="balanced"``: every class then carries the
same share of the loss, the loss a balanced training set would have.

A weighted loss is normalised by the number of images, not by the sum of the weights, as
scikit-learn does: balanced weights sum to ``n`` anyway, so the loss keeps its scale (and the
linear head's ``C`` its meaning), and a mini-batch's weighted mean is an unbiased estimate of the
whole set's.

What is scored with the weights: every held-out loss that *chooses* a model (the linear head's
``C``, the epoch an MLP or an end-to-end run keeps), since a choice must be made for the objective
being minimised, the balanced risk. What is not: the temperature calibration fitted afterwards,
which stays on the unweighted held-out likelihood, so that confidences are scored against the
classes' true frequencies, the ones new images will come in. It cannot undo the weights' tilt
towards the small classes (a temperature rescales logits, it does not shift them), and must not:
subtracting ``log w_c`` from the logits would restore the frequencies and, with them, the
unweighted head's decisions, which is what the user asked to change. A balanced head's
probabilities therefore lean towards the small classes by design; the held-out ECE shows by how
much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

from headstart.errors import InvalidParameterError

__all__ = [
    "CLASS_WEIGHTS",
    "ClassWeight",
    "class_weights",
    "weight_vector",
    "correct",
    "weighted_cross_entropy",
]

# The named settings: "none" is an explicit "unweighted", which auto then does not measure.
CLASS_WEIGHTS: tuple[str, ...] = ("balanced", "none")

# What a head accepts: "balanced" (from the labels it fits), one weight per class index, or None.
ClassWeight = Literal["balanced"] | Sequence[float] | None


def weight_vector(
    class_weight: str | Mapping[str, float] | None, classes: Sequence[str]
) -> ClassWeight:
    """The user's ``class_weight`` in the form heads take: a dict of names becomes a vector,
    ``"none"`` (an explicit "unweighted", which ``auto`` does not second-guess) None.

    A class the dict leaves out keeps weight 1 (as in scikit-learn).

    Raises:
        HeadstartError: An unknown option, a class name the data does not have (a typo would
            otherwise silently weight nothing), or a weight that is not a positive number.
    """
    if class_weight is None or class_weight == "none":
        return None
    if class_weight == "balanced":
        return "balanced"
    if not isinstance(class_weight, Mapping):
        raise InvalidParameterError(
            f"Unknown class weight {class_weight!r}; use 'balanced', 'none', a dict of class "
            "name to weight, or leave it unset."
        )
    unknown = sorted(str(k) for k in class_weight if k not in classes)
    if unknown:
        raise InvalidParameterError(
            f"Class weight for {', '.join(map(repr, unknown))}, not a class of this data "
            f"({', '.join(classes)}); use the class names as the data spells them."
        )
    vector = []
    for name in classes:
        value = class_weight.get(name, 1.0)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(float(value)) or float(value) <= 0:
            raise InvalidParameterError(
                f"Invalid class weight {value!r} for {name!r}; use a positive number."
            )
        vector.append(float(value))
    return vector


def class_weights(
    class_weight: ClassWeight, y: np.ndarray | torch.Tensor, num_classes: int
) -> torch.Tensor | None:
    """One weight per class index (float32), or None for an unweighted loss.

    Args:
        class_weight: ``"balanced"``, a weight per class index, or None.
        y: The labels of the images the loss is over: ``"balanced"`` counts them. Classes with
            no image get weight 0 (they add nothing to the loss either way).
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise InvalidParameterError(
                f"Unknown class weight {class_weight!r}; choose 'balanced', or give one weight "
                "per class."
            )
        counts = np.bincount(np.asarray(y, np.int64), minlength=num_classes).astype(np.float64)
        present = counts > 0
        weights = np.zeros(num_classes)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return torch.from_numpy(weights.astype(np.float32))
    if len(class_weight) != num_classes:
        raise InvalidParameterError(
            f"{len(class_weight)} class weights for {num_classes} classes; give one per class."
        )
    return torch.tensor([float(w) for w in class_weight], dtype=torch.float32)


def correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """How many images are right: the arg-max is the class; with several labels an image, the
    share of its labels right at a logit of 0 (probability 0.5), summed over images."""
    if y.dim() == 2:
        return ((logits > 0) == (y > 0)).float().mean(1).sum()
    return (logits.argmax(1) == y).sum()


def weighted_cross_entropy(
    logits: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    label_smoothing: float = 0.0,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Cross-entropy over images, each weighted by its class: their mean (or sum).

    Not ``F.cross_entropy(weight=...)``'s mean, which divides by the batch's sum of weights: a
    batch with one image of a small class would give that image nearly the whole batch's say.
    Without weights, exactly ``F.cross_entropy``.

    With a 0/1 matrix ``y`` (several labels an image), binary cross-entropy with logits, each
    image's the mean over its labels (the loss of one logistic regression a label); no class
    weights there.
    """
    if y.dim() == 2:
        per_image = F.binary_cross_entropy_with_logits(logits, y.float(), reduction="none")
        summed = per_image.mean(1).sum()
        return summed if reduction == "sum" else summed / max(1, len(y))
    if weights is None:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction=reduction)
    per_image = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    summed = (per_image * weights.to(per_image.device)[y]).sum()
    return summed if reduction == "sum" else summed / max(1, len(y))
