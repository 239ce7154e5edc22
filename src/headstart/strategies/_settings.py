"""Training settings: one frozen record per run, with defaults that work for each strategy.

Each strategy needs different defaults to work without tuning: a head on cached features wants
many cheap epochs at a high learning rate; fine-tuning a pretrained network wants a few epochs at a
learning rate ten times lower, or it forgets what it was pretrained on; training from scratch wants
a high learning rate with a one-cycle schedule and BatchNorm statistics that follow the data. A
value the user leaves as None takes the strategy's default, and the resolved record is what the
run folder keeps, so a run says exactly how it was trained.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from headstart.augment import AugmentConfig, resolve_augment
from headstart.errors import InvalidParameterError
from headstart.features.engines import check_engine
from headstart.heads import HEAD_KINDS
from headstart.heads.training import SCHEDULES, HeadTrainingConfig, Schedule

if TYPE_CHECKING:
    from headstart.strategies.auto import Advice

__all__ = [
    "BN_POLICIES",
    "SCHEDULES",
    "STRATEGIES",
    "SETTINGS_ADDED",
    "STRATEGY_DEFAULTS",
    "ResolvedSettings",
    "TrainSettings",
    "augment_choice",
    "backbone_weights",
    "REFIT_MAX_TRAIN",
    "REFIT_MIN_VAL_SHARE",
    "plain_class_weight",
    "refit_by_default",
    "refuse_C_without_linear_head",
    "resolve_settings",
    "resolve_train_settings",
    "scale_to_data",
]

STRATEGIES: tuple[str, ...] = ("features", "augment", "finetune", "scratch")
BN_POLICIES: tuple[str, ...] = ("frozen", "train")

BNPolicy = Literal["frozen", "train"]

# Head training's own defaults: those of a head on cached features, the ``features`` strategy.
_HEAD = HeadTrainingConfig()

STRATEGY_DEFAULTS: dict[str, dict[str, Any]] = {
    # A linear probe converges in tens of cheap epochs; early stopping ends it.
    "features": {
        "epochs": _HEAD.epochs,
        "lr": _HEAD.lr,
        "weight_decay": _HEAD.weight_decay,
        "batch_size": _HEAD.batch_size,
        "patience": _HEAD.patience,
        "schedule": _HEAD.schedule,
        "warmup_epochs": _HEAD.warmup_epochs,
        "augment": "none",
        "bn": "frozen",
        "unfreeze": 0,
        "layer_decay": 1.0,
    },
    # The head alone trains, so a head's learning rate; every epoch costs a backbone pass.
    "augment": {
        "epochs": 30,
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "batch_size": 32,
        "patience": 8,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "augment": "default",
        "bn": "frozen",
        "unfreeze": 0,
        "layer_decay": 1.0,
    },
    # After the head is trained on frozen features, the top stages move slowly: 1e-4 for the
    # head and decaying by 0.7 per stage downwards, so low-level filters barely change.
    "finetune": {
        "epochs": 15,
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "batch_size": 32,
        "patience": 5,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "augment": "default",
        "bn": "frozen",
        "unfreeze": 2,
        "layer_decay": 0.7,
    },
    # The baseline: random init, everything trains, BatchNorm follows the data.
    "scratch": {
        "epochs": 50,
        "lr": 2e-3,
        "weight_decay": 0.05,
        "batch_size": 32,
        "patience": 15,
        "schedule": "onecycle",
        "warmup_epochs": 0.0,
        "augment": "default",
        "bn": "train",
        "unfreeze": "all",
        "layer_decay": 1.0,
    },
}


SETTINGS_ADDED: tuple[dict[str, Any], ...] = (
    {"class_weight": None},  # --class-weight
    {"engine": "torch"},  # --engine
)
"""Settings added after checkpoints existed, oldest first, each with its value in the runs from
before it: what those runs did. A checkpoint's fingerprint hashes every setting, so one written
before a setting existed hashes without it; :meth:`._common.Job.earlier_fingerprints` gives those
fingerprints as well, and such a run resumes when its settings hold these values (the CLI gives
a stored run's missing arguments the values that do: ``cli/train.py``). A new setting goes at
the end. ``C`` and ``refit`` are not here: the checkpoints from before them hold another head
(a plain linear layer, before the standardized logistic one), which no resume could load, so
their other fingerprint keeps them refused with a message rather than a failed load."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides what a strategy trains (not where or how fast it runs).

    Attributes:
        strategy: "features", "augment", "finetune" or "scratch".
        head, hidden, dropout: The head (linear or MLP) and the MLP's width and dropout.
        epochs, lr, weight_decay, batch_size, patience, seed, label_smoothing: As usual; the
            weights of the epoch with the lowest validation loss are kept.
        schedule: "constant", "cosine" (after a linear warm-up) or "onecycle".
        warmup_epochs: Linear warm-up length for "cosine" (fractions allowed).
        grad_clip: Max gradient norm, or None for no clipping.
        augment: The training augmentation (never applied to validation or test images).
        aug_views: ``features`` only: cache this many augmented views of every training image.
        layer: ``features``/``augment``: pool features from this stage (index into timm's
            ``feature_info``, or its module name) instead of the last one.
        unfreeze: ``finetune``: how many stages from the top train, or "all".
        layer_decay: ``finetune``: each stage below the top learns this factor slower.
        bn: "frozen" (BatchNorm keeps its running statistics) or "train" (batch statistics).
        amp: Mixed precision on CUDA (None: on when CUDA is used). Never used on CPU or MPS.
        C: The linear head's inverse L2 strength (scikit-learn's ``C``); None chooses it on
            held-out data (:mod:`headstart.heads.logistic`).
        refit: After the choice, train again on train + val. ``features``: the head, refitted
            with its chosen setting. End-to-end strategies: the whole run again from the same
            start for the number of epochs validation chose (:mod:`._refit`); on by default
            where the validation images make it pay (:func:`refit_by_default`).
        class_weight: Weight each image's loss by its class, every head and strategy alike:
            ``"balanced"`` (scikit-learn's), a dict of class name to weight, or None/``"none"``
            (unweighted) (:mod:`headstart.heads.weights`).
        engine: What runs the frozen backbone's forward pass on a CPU when features are
            extracted (:mod:`headstart.features.engines`). It decides how fast, not what: the
            features equal torch's to 1e-4 whichever runs. It is here, the one such setting,
            so that the run records it and a resumed run extracts as the first did.
    """

    strategy: str = "features"
    head: str = "linear"
    hidden: int = 512
    dropout: float = 0.2
    epochs: int = _HEAD.epochs
    lr: float = _HEAD.lr
    weight_decay: float = _HEAD.weight_decay
    batch_size: int = _HEAD.batch_size
    patience: int = _HEAD.patience
    seed: int = _HEAD.seed
    label_smoothing: float = _HEAD.label_smoothing
    schedule: Schedule = _HEAD.schedule
    warmup_epochs: float = _HEAD.warmup_epochs
    grad_clip: float | None = _HEAD.grad_clip
    augment: AugmentConfig = AugmentConfig()
    aug_views: int = 0
    layer: int | str | None = None
    unfreeze: int | str = 0
    layer_decay: float = 1.0
    bn: BNPolicy = "frozen"
    amp: bool | None = None
    C: float | None = None
    refit: bool = True
    class_weight: str | dict[str, float] | None = None
    engine: str = "auto"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InvalidParameterError(
                f"Unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}."
            )
        checks: dict[str, bool] = {
            "epochs": _int(self.epochs) and self.epochs >= 1,
            "lr": _num(self.lr) and self.lr > 0,
            "weight_decay": _num(self.weight_decay) and self.weight_decay >= 0,
            "batch_size": _int(self.batch_size) and self.batch_size >= 1,
            "patience": _int(self.patience) and self.patience >= 1,
            "label_smoothing": _num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
            "warmup_epochs": _num(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs,
            "grad_clip": self.grad_clip is None or (_num(self.grad_clip) and self.grad_clip > 0),
            "aug_views": _int(self.aug_views) and 0 <= self.aug_views <= 64,
            "layer_decay": _num(self.layer_decay) and 0 < self.layer_decay <= 1,
            "hidden": _int(self.hidden) and self.hidden >= 1,
            "dropout": _num(self.dropout) and 0 <= self.dropout < 1,
            "C": self.C is None or (_num(self.C) and self.C > 0),
            "refit": isinstance(self.refit, bool),
            "class_weight": self.class_weight in (None, "none", "balanced")
            or (
                isinstance(self.class_weight, Mapping)
                and all(map(_num, self.class_weight.values()))
            ),
        }
        for name, ok in checks.items():
            if not ok:
                raise InvalidParameterError(
                    f"Invalid {name}={getattr(self, name)!r} for {self.strategy} training; "
                    f"{_ALLOWED[name]}."
                )
        check_engine(self.engine)
        if self.schedule not in SCHEDULES:
            raise InvalidParameterError(
                f"Unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}."
            )
        if self.bn not in BN_POLICIES:
            raise InvalidParameterError(
                f"Unknown BatchNorm policy {self.bn!r}; choose one of {', '.join(BN_POLICIES)}."
            )
        if not (self.unfreeze == "all" or (_int(self.unfreeze) and int(self.unfreeze) >= 0)):
            raise InvalidParameterError(
                f"Invalid unfreeze={self.unfreeze!r}; give a number of stages (1, 2, ...) or 'all'."
            )

    @property
    def end_to_end(self) -> bool:
        """True for the strategies that run the backbone on every batch of every epoch."""
        return self.strategy in ("augment", "finetune", "scratch")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainSettings:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if isinstance(values.get("augment"), Mapping):
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return cls(**values)

    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


_ALLOWED = {
    "epochs": "use a whole number >= 1",
    "lr": "use a positive number such as 1e-3",
    "weight_decay": "use a number >= 0",
    "batch_size": "use a whole number >= 1",
    "patience": "use a whole number >= 1",
    "label_smoothing": "use a number from 0 up to (not including) 1",
    "warmup_epochs": "use a number >= 0 and below the number of epochs",
    "grad_clip": "use a positive max gradient norm, or leave it unset",
    "aug_views": "use a whole number from 0 to 64",
    "layer_decay": "use a number in (0, 1]",
    "hidden": "use a whole number >= 1",
    "dropout": "use a number from 0 up to (not including) 1",
    "C": "use a positive number such as 0.1 (smaller: stronger regularisation), or leave it unset",
    "refit": "use true or false",
    "class_weight": "use 'balanced', 'none', or a dict of class name to weight",
}


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _num(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def resolve_settings(
    strategy: str,
    *,
    augment: str | Mapping[str, Any] | AugmentConfig | None = None,
    augment_params: Mapping[str, Any] | None = None,
    explicit: bool = True,
    **values: Any,
) -> TrainSettings:
    """Fill the values left as None with ``strategy``'s defaults and validate the result.

    Args:
        strategy: One of :data:`STRATEGIES`.
        augment: A preset name, a dict of values or a config; None is the strategy's default
            (``none`` for ``features`` unless ``aug_views`` asks for views, else ``default``).
        augment_params: Explicit augmentation values (``rotation=15``...) over the preset.
        explicit: The user named ``strategy`` (False when ``auto`` chose it): options the
            chosen strategy does not use are then refused rather than dropped.
        values: Any other :class:`TrainSettings` field.

    Raises:
        HeadstartError: An unknown strategy, a bad value, or an option the strategy does not
            use (e.g. ``unfreeze`` with ``augment``): accepting and ignoring it would let a user
            believe it took effect.
    """
    if strategy not in STRATEGIES:
        raise InvalidParameterError(
            f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}."
        )
    defaults = STRATEGY_DEFAULTS[strategy]
    given = {k: v for k, v in values.items() if v is not None}
    _refuse_unused(strategy, given, augment, augment_params)
    if explicit:
        _refuse_solver_options(strategy, given)
    refuse_C_without_linear_head(given.get("C"), given.get("head"))
    merged: dict[str, Any] = {k: v for k, v in defaults.items() if k != "augment"}
    merged.update(given)
    if "warmup_epochs" not in given and isinstance(merged["epochs"], int):
        # The default warm-up is at most a tenth of a short run, so --epochs 1 stays valid.
        merged["warmup_epochs"] = min(float(merged["warmup_epochs"]), merged["epochs"] / 10)
    if augment is None:
        wants_views = strategy == "features" and int(given.get("aug_views", 0) or 0) > 0
        augment = "default" if wants_views else defaults["augment"]
    merged["augment"] = resolve_augment(augment, **dict(augment_params or {}))
    layer = merged.get("layer")
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        merged["layer"] = int(layer)
    unfreeze = merged.get("unfreeze")
    if isinstance(unfreeze, str) and unfreeze.isdigit():
        merged["unfreeze"] = int(unfreeze)
    if strategy != "features" and "refit" not in given:
        # Without the data's size, no end-to-end refit; resolve_train_settings knows the size.
        merged["refit"] = False
    return TrainSettings(strategy=strategy, **merged)


def refuse_C_without_linear_head(C: float | None, head: str | None) -> None:
    """``C`` is the linear head's L2 strength: given with another head, it would go unused."""
    if C is not None and head not in (None, "linear"):
        raise InvalidParameterError(
            "--C applies to the linear head only; drop it or use --head linear."
        )


# End-to-end runs need at least this many optimizer steps by default: a run on a few dozen
# images with a strategy's default epochs would stop after a few dozen steps, its validation loss
# still falling.
MIN_STEPS = {"augment": 300, "finetune": 300, "scratch": 600}
# Small data gets small batches (an eighth of the training images, at least this many, or 16
# where BatchNorm learns batch statistics), so that an epoch is several steps rather than one.
MIN_BATCH = 8
MIN_BN_BATCH = 16


def scale_to_data(
    settings: TrainSettings,
    n_train: int,
    *,
    epochs_given: bool,
    batch_given: bool,
    lr_given: bool,
    patience_given: bool,
) -> TrainSettings:
    """End-to-end defaults scaled to the data: smaller batches and more epochs for few images.

    Only values the user left unset change, and the result is what the run records. The learning
    rate follows the batch by the square-root rule (Adam's), so a batch a quarter the size steps
    at half the rate.
    """
    if not settings.end_to_end or n_train <= 0:
        return settings
    changes: dict[str, Any] = {}
    batch = settings.batch_size
    if not batch_given:
        floor = MIN_BN_BATCH if settings.bn == "train" else MIN_BATCH
        batch = max(min(floor, settings.batch_size), min(settings.batch_size, n_train // 8))
        if batch != settings.batch_size:
            changes["batch_size"] = batch
            if not lr_given:
                changes["lr"] = settings.lr * math.sqrt(batch / settings.batch_size)
    if not epochs_given:
        steps = math.ceil(n_train / batch)
        epochs = max(settings.epochs, math.ceil(MIN_STEPS[settings.strategy] / steps))
        if epochs != settings.epochs:
            changes["epochs"] = epochs
            if not patience_given:
                changes["patience"] = max(settings.patience, epochs // 4)
    return replace(settings, **changes) if changes else settings


# End-to-end runs refit on train + val by default when the validation images are at least this
# share of the training images, up to this many training images (benchmarks/strategies.py
# --refit, BENCHMARKS.md "Refit on train + val, end to end").
REFIT_MIN_VAL_SHARE = 0.5
REFIT_MAX_TRAIN = 2000


def refit_by_default(n_train: int, n_val: int) -> bool:
    """Whether an end-to-end run refits on train + val when the user did not say.

    The refit is one more training run (the epochs validation chose, over train + val): it costs
    about as much again, and what it gains is what the validation images add to the training
    ones. On the demo data it paid where they doubled them (15 + 15 images a class: +3.5 test
    points for ``augment``, +2.9 for ``finetune``) and not where they added a third (15 + 5,
    40 + 13 and 60 + 20 a class, the share headstart's own split gives: level on test, within a
    point), so the default asks for validation images at least ``REFIT_MIN_VAL_SHARE`` of the
    training ones. Past ``REFIT_MAX_TRAIN`` training images an end-to-end epoch on a CPU takes
    minutes, and a second run of them is a cost a user should choose (``refit=True``,
    ``--refit trainval``) rather than get.
    """
    return 0 < n_train <= REFIT_MAX_TRAIN and n_val >= REFIT_MIN_VAL_SHARE * n_train


# Options of the AdamW loop, which the linear head on cached features does not run: it is solved
# exactly (L-BFGS), and its one setting, C, is chosen on held-out data.
_LOOP_OPTIONS = (
    "epochs",
    "lr",
    "weight_decay",
    "batch_size",
    "patience",
    "schedule",
    "warmup_epochs",
    "grad_clip",
)


def _refuse_solver_options(strategy: str, given: Mapping[str, Any]) -> None:
    head = given.get("head", "linear")
    if strategy == "features" and head == "linear":
        used = [k for k in _LOOP_OPTIONS if k in given]
        if given.get("label_smoothing"):
            used.append("label_smoothing")
        if used:
            names = ", ".join("--" + k.replace("_", "-") for k in used)
            raise InvalidParameterError(
                f"{names} do(es) not apply to the linear head on cached features: it is a "
                "logistic regression solved to convergence, its L2 strength chosen on held-out "
                "data (set it with --C). They apply to --head mlp and to the end-to-end "
                "strategies."
            )


def _refuse_unused(
    strategy: str,
    given: Mapping[str, Any],
    augment: object,
    augment_params: Mapping[str, Any] | None,
) -> None:
    def refuse(option: str, where: str) -> None:
        raise InvalidParameterError(
            f"{option} does not apply to --strategy {strategy}; it is used by {where}."
        )

    if given.get("aug_views") and strategy != "features":
        refuse("aug_views", "features (augment, finetune and scratch augment every epoch)")
    if given.get("layer") is not None and strategy not in ("features", "augment"):
        refuse("layer", "features and augment (a trained backbone is used whole)")
    if "unfreeze" in given and strategy != "finetune":
        refuse("unfreeze", "finetune")
    if "layer_decay" in given and strategy != "finetune":
        refuse("layer_decay", "finetune")
    if "bn" in given and strategy not in ("finetune", "scratch"):
        refuse(
            "bn",
            "finetune and scratch (a frozen backbone always uses its stored statistics)",
        )
    augments = augment not in (None, "none") or any(
        v is not None for v in (augment_params or {}).values()
    )
    if strategy == "features" and augments and not given.get("aug_views"):
        raise InvalidParameterError(
            "Augmentation with --strategy features needs --aug-views K (K augmented views of "
            "each training image, cached); or use --strategy augment to augment every epoch."
        )


@dataclass(frozen=True)
class ResolvedSettings:
    """The settings a fit trains with, and the options given that they leave unused.

    Attributes:
        settings: The final :class:`TrainSettings`, as the run records them.
        not_used: Under ``auto`` only: the options the user gave that the chosen strategy does
            not use (option name: value given); those settings are the strategy's defaults.
        note: One line naming them, why they were not used, and how to use them; None if none.
    """

    settings: TrainSettings
    not_used: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


def resolve_train_settings(
    params: Mapping[str, Any], *, n_train: int, n_val: int = 0, advice: Advice | None = None
) -> ResolvedSettings:
    """The one place where the user's parameters become the settings a fit trains with.

    The parameters are named as :class:`TrainSettings`' fields (``ImageClassifier``'s
    parameters of the same names, as ``get_params`` gives them); a None takes the strategy's
    default. Under ``auto`` the measured ``advice`` names the strategy and the options it kept
    (head, layer, views, stages to unfreeze), each used unless the user set that option. Last,
    end-to-end defaults are scaled to the ``n_train`` training images (:func:`scale_to_data`),
    and an end-to-end refit on train + val is on by default where the ``n_val`` validation
    images make it pay (:func:`refit_by_default`).

    A user who names a strategy is refused an option it does not use (:func:`resolve_settings`);
    under ``auto`` the user did not choose, so an option that the chosen strategy has no use for
    is left out of the settings and named in ``note`` instead: never silently ignored, never an
    error for a choice the user did not make.

    Raises:
        HeadstartError: an unknown strategy or head, or a bad value.
    """
    auto = params.get("strategy") == "auto"
    if auto and advice is None:
        raise ValueError("strategy 'auto' needs the measured advice to resolve its settings")
    strategy = str(advice.strategy if auto and advice is not None else params.get("strategy"))
    advised = dict(advice.options) if auto and advice is not None else {}
    head = params.get("head") or advised.pop("head", None) or "linear"
    if head not in HEAD_KINDS:
        raise InvalidParameterError(
            f"Unknown head {head!r}; choose one of {', '.join(HEAD_KINDS)}."
        )
    if strategy not in STRATEGIES:
        choices = ", ".join((*STRATEGIES, "auto"))
        raise InvalidParameterError(f"Unknown strategy {strategy!r}; choose one of {choices}.")
    values = {f.name: params.get(f.name) for f in fields(TrainSettings)}
    values.pop("strategy")
    values.pop("augment")
    values["head"] = head
    values["aug_views"] = values["aug_views"] or advised.get("aug_views")
    values["class_weight"] = plain_class_weight(values["class_weight"]) or advised.get(
        "class_weight"
    )
    for name in ("layer", "unfreeze"):
        if values[name] is None:
            values[name] = advised.get(name)
    not_used: dict[str, Any] = {}
    if auto:
        not_used = {**_unused_by_strategy(strategy, params), **_unused_by_solver(strategy, values)}
        values.update(dict.fromkeys(not_used))
    preset, augment_params = augment_choice(params.get("augment"))
    settings = resolve_settings(
        strategy, augment=preset, augment_params=augment_params, explicit=not auto, **values
    )
    settings = scale_to_data(
        settings,
        n_train,
        epochs_given=params.get("epochs") is not None,
        batch_given=params.get("batch_size") is not None,
        lr_given=params.get("lr") is not None,
        patience_given=params.get("patience") is not None,
    )
    if settings.end_to_end and params.get("refit") is None:
        settings = replace(settings, refit=refit_by_default(n_train, n_val))
    return ResolvedSettings(settings, not_used, _not_used_note(not_used, strategy))


def backbone_weights(settings: TrainSettings, weights: str) -> str:
    """The weights to create the backbone with: ``scratch`` starts from random initialisation,
    so other weights given with it are refused, not dropped."""
    if settings.strategy != "scratch":
        return weights
    if str(weights).strip().lower() not in ("default", "none"):
        raise InvalidParameterError(
            f"--strategy scratch trains from random initialisation, but weights {weights!r} "
            "were given; to start from them use --strategy finetune --unfreeze all."
        )
    return "none"


def plain_class_weight(
    class_weight: str | Mapping[str, float] | None,
) -> str | dict[str, float] | None:
    """A class weight as the run's config records it (a dict, not any mapping)."""
    return dict(class_weight) if isinstance(class_weight, Mapping) else class_weight


def augment_choice(augment: str | Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The augmentation preset and explicit values a user gave (None, {}: none given)."""
    if isinstance(augment, Mapping):
        values = dict(augment)
        preset = values.pop("preset", None)
        if preset is None and values:
            preset = "none"
        return preset, values
    return augment, {}


def _unused_by_solver(strategy: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The loop options given that a linear head on cached features has no use for."""
    if strategy != "features" or values.get("head", "linear") != "linear":
        return {}
    unused = {k: values[k] for k in _LOOP_OPTIONS if values.get(k) is not None}
    if values.get("label_smoothing"):
        unused["label_smoothing"] = values["label_smoothing"]
    return unused


# Options of some strategies only, with the strategies that use them.
_STRATEGY_OPTIONS: dict[str, tuple[str, ...]] = {
    "unfreeze": ("finetune",),
    "layer_decay": ("finetune",),
    "bn": ("finetune", "scratch"),
    "aug_views": ("features",),
    "layer": ("features", "augment"),
}


def _unused_by_strategy(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The options the user gave that only other strategies than the one auto chose use (a
    named strategy refuses them instead: :func:`_refuse_unused`)."""
    return {
        name: params[name]
        for name, users in _STRATEGY_OPTIONS.items()
        if params.get(name) not in (None, 0) and strategy not in users
    }


def _not_used_note(unused: Mapping[str, Any], strategy: str = "features") -> str | None:
    """One line naming every option auto left unused, and why each was."""
    if not unused:
        return None
    names = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in unused.items())
    one = len(unused) == 1
    loop = [k for k in unused if k not in _STRATEGY_OPTIONS]
    reasons = [
        f"--{k.replace('_', '-')} is for {' and '.join(_STRATEGY_OPTIONS[k])} only"
        for k in unused
        if k in _STRATEGY_OPTIONS
    ]
    if loop:
        reasons.append(
            "a logistic regression solved to convergence by L-BFGS, which has no epochs, "
            "learning rate, batches or schedule; pass --strategy augment or finetune (or --head "
            f"mlp) to use {'it' if len(loop) == 1 else 'them'}"
        )
        chose = "features with a linear head"
    else:
        reasons[-1] += "; pass --strategy to choose one"
        chose = strategy
    return f"{names} {'was' if one else 'were'} not used: auto chose {chose}, {'; '.join(reasons)}."
