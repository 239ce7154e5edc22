"""Classification heads and their training on cached features."""

from headstart.heads.modules import HEAD_KINDS, MLPHead, create_head
from headstart.heads.training import HeadTrainingConfig, TrainedHead, train_head

__all__ = [
    "HEAD_KINDS",
    "HeadTrainingConfig",
    "MLPHead",
    "TrainedHead",
    "create_head",
    "train_head",
]
