"""A run's settings in words: what the strategy chose and which training settings applied.

``headstart info`` and the report both describe a run from its ``config.json``, and they must say
the same thing. A run records every field of its settings, including those its training never
read: a linear head on cached features is a logistic regression solved by L-BFGS on the whole
training set at once, so it has no epochs, learning rate, batch size or patience, and printing
the defaults of those ("epochs 100, lr 0.001, best epoch 0 of 0") tells a reader something false.
What ``--strategy auto`` chose (an earlier stage, augmented views, the head) is recorded apart
from the strategy's name; a description that leaves it out hides what was trained.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "applied_settings",
    "describe_strategy",
    "describe_unknowns",
    "format_number",
    "format_settings",
    "has_typicality",
]

# Settings an epoch-based training reads (the MLP head on features, and every end-to-end strategy).
_EPOCH_SETTINGS = ("epochs", "lr", "weight_decay", "batch_size", "patience")
_FINETUNE_SETTINGS = ("unfreeze", "layer_decay")


def format_number(value: object) -> str:
    """A setting or figure as a person reads it: floats to 3 significant digits.

    Settings go through float32 on their way (``0.0010000000474974513``); the digits past the
    third are noise, never a choice anyone made.
    """
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return str(value)


def _training(hs: Mapping[str, Any]) -> Mapping[str, Any]:
    training = hs.get("training")
    return training if isinstance(training, Mapping) else {}


def _strategy_name(hs: Mapping[str, Any]) -> str:
    raw = hs.get("strategy")
    if isinstance(raw, Mapping):
        return str(raw.get("name") or raw.get("kind") or raw.get("strategy") or "?")
    return str(raw or "features")


def solved_by_lbfgs(hs: Mapping[str, Any]) -> bool:
    """Whether the head was a logistic regression solved by L-BFGS (no epochs at all)."""
    selection = _training(hs).get("selection")
    return isinstance(selection, Mapping) and selection.get("solver") == "lbfgs"


def applied_settings(hs: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings that decided this run, in the order a person reads them.

    Args:
        hs: The ``headstart`` section of a run's ``config.json``.

    Returns:
        ``{name: value}``: for an L-BFGS head only the solver and the seed (its L2 strength is
        described with its selection); for epoch-based training the epochs, learning rate, weight
        decay, batch size, patience and seed, plus the stages fine-tuning trained.
    """
    training = _training(hs)
    out: dict[str, Any] = {}
    if solved_by_lbfgs(hs):
        out["solver"] = "L-BFGS"
    else:
        out.update({k: training[k] for k in _EPOCH_SETTINGS if k in training})
        if _strategy_name(hs) == "finetune":
            out.update({k: training[k] for k in _FINETUNE_SETTINGS if k in training})
    if "seed" in training:
        out["seed"] = training["seed"]
    return out


def format_settings(hs: Mapping[str, Any]) -> str:
    """:func:`applied_settings` as one line: ``epochs 100, lr 0.001, ..., seed 0``."""
    return ", ".join(
        f"{name.replace('_', ' ')} {format_number(value)}"
        for name, value in applied_settings(hs).items()
    )


def describe_strategy(hs: Mapping[str, Any]) -> str:
    """The strategy with what it trained on: ``features, layer3 features, 4 augmented views,
    linear head``.

    The stage comes from the backbone the run saved (the module's name when it has one, so an
    index such as ``-2`` reads as the stage it picked).
    """
    training = _training(hs)
    backbone = hs.get("backbone")
    backbone = backbone if isinstance(backbone, Mapping) else {}
    strategy = _strategy_name(hs)
    parts = [strategy]
    layer = backbone.get("layer_module") or backbone.get("layer") or training.get("layer")
    if layer is not None and layer != "":
        parts.append(f"{layer} features")
    views = training.get("aug_views")
    if strategy == "features" and isinstance(views, int) and views > 0:
        parts.append(f"{views} augmented view{'s' if views != 1 else ''}")
    if strategy == "finetune" and "unfreeze" in training:
        unfreeze = training["unfreeze"]
        parts.append(
            "every stage trained" if unfreeze == "all" else f"top {unfreeze} stage(s) trained"
        )
    head = hs.get("head")
    kind = head.get("kind") if isinstance(head, Mapping) else training.get("head")
    if kind:
        parts.append(f"{'MLP' if kind == 'mlp' else kind} head")
    return ", ".join(parts)


def has_typicality(hs: Mapping[str, Any]) -> bool:
    """Whether the run saved a typicality score (``config.json``'s ``unknowns`` names one)."""
    unknowns = hs.get("unknowns")
    return isinstance(unknowns, Mapping) and unknowns.get("score") not in (None, "none")


def describe_unknowns(hs: Mapping[str, Any]) -> str:
    """The run's typicality score in one line: ``mahalanobis score, threshold 0.05 (scale from
    45 held-out images)``, or ``none: <why>``.

    A run saved before headstart had the score records nothing about it; saying so (and that a
    retrain gives one) beats a silent gap, since predict then prints no typicality either.
    """
    unknowns = hs.get("unknowns")
    if not isinstance(unknowns, Mapping) or not unknowns:
        return "none: saved before headstart had a typicality score; retrain to get one"
    if not has_typicality(hs):
        return f"none: {unknowns.get('reason') or 'no typicality score was fitted'}"
    held = unknowns.get("heldout_images")
    scale = f" (scale from {held} held-out images)" if held is not None else ""
    return f"{unknowns['score']} score, threshold {format_number(unknowns.get('threshold'))}{scale}"
