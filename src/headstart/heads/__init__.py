"""Classification heads and their training on cached features."""

from headstart.heads.fitting import HeadFit, fit_head
from headstart.heads.logistic import LinearFit, fit_linear
from headstart.heads.modules import HEAD_KINDS, MLPHead, create_head
from headstart.heads.training import HeadTrainingConfig, TrainedHead, train_head

__all__ = [
    "HEAD_KINDS",
    "HeadFit",
    "HeadTrainingConfig",
    "LinearFit",
    "MLPHead",
    "TrainedHead",
    "create_head",
    "fit_head",
    "fit_linear",
    "train_head",
]
