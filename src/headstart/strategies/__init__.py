"""Transfer strategies, one per module, behind one call: :func:`fit_strategy`.

- ``features``: frozen backbone, cached features, head only (optionally with cached augmented
  views, ``aug_views``, or features of an earlier stage, ``layer``);
- ``augment``: frozen backbone end to end, on augmented images every epoch;
- ``finetune``: the head on cached features, then the top stages with per-depth learning rates;
- ``scratch``: the same architecture from random initialisation, as the baseline.

Each takes a :class:`Job` and returns a :class:`Fitted`, so a strategy chooser can run them as
the estimator does.
"""

from __future__ import annotations

from types import ModuleType

from headstart.strategies._common import Fitted, Job, targets, xy
from headstart.strategies._cost import CostEstimate
from headstart.strategies._network import Network, backbone_stages, inner_module, select_layer
from headstart.strategies._settings import (
    BN_POLICIES,
    SCHEDULES,
    STRATEGIES,
    STRATEGY_DEFAULTS,
    ResolvedSettings,
    TrainSettings,
    augment_choice,
    backbone_weights,
    refit_by_default,
    refuse_C_without_linear_head,
    resolve_settings,
    resolve_train_settings,
)

__all__ = [
    "BN_POLICIES",
    "SCHEDULES",
    "STRATEGIES",
    "STRATEGY_DEFAULTS",
    "CostEstimate",
    "Fitted",
    "Job",
    "Network",
    "ResolvedSettings",
    "TrainSettings",
    "augment_choice",
    "backbone_stages",
    "backbone_weights",
    "fit_strategy",
    "inner_module",
    "refit_by_default",
    "refuse_C_without_linear_head",
    "resolve_settings",
    "resolve_train_settings",
    "select_layer",
    "targets",
    "xy",
]


def _module(name: str) -> ModuleType:
    from headstart.strategies import augment, features, finetune, scratch

    modules: dict[str, ModuleType] = {
        "features": features,
        "augment": augment,
        "finetune": finetune,
        "scratch": scratch,
    }
    return modules[name]


def fit_strategy(job: Job) -> Fitted:
    """Run the strategy ``job.settings.strategy`` names."""
    fitted: Fitted = _module(job.settings.strategy).fit(job)
    return fitted
