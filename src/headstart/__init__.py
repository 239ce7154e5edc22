"""headstart: transfer learning from pretrained backbones, with the preprocessing they expect.

The public API is small on purpose: most users need only ``ImageClassifier``. Names are imported
lazily (PEP 562), so ``import headstart.data`` stays free of torch and the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from headstart._version import __version__

if TYPE_CHECKING:
    from headstart.backbones import (
        DEFAULT_MODEL,
        EMBEDDED_MODEL,
        Backbone,
        create_backbone,
        list_backbones,
    )
    from headstart.data import Dataset, load_dataset
    from headstart.errors import HeadstartError
    from headstart.estimator import ImageClassifier, Prediction
    from headstart.preprocess import Preprocess, resolve_preprocess

_EXPORTS = {
    "DEFAULT_MODEL": "headstart.backbones",
    "EMBEDDED_MODEL": "headstart.backbones",
    "Backbone": "headstart.backbones",
    "create_backbone": "headstart.backbones",
    "list_backbones": "headstart.backbones",
    "Dataset": "headstart.data",
    "load_dataset": "headstart.data",
    "HeadstartError": "headstart.errors",
    "ImageClassifier": "headstart.estimator",
    "Prediction": "headstart.estimator",
    "Preprocess": "headstart.preprocess",
    "resolve_preprocess": "headstart.preprocess",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headstart' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
