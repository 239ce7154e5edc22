"""Pooled backbone features, computed once and kept in a content-addressed on-disk cache.

Names are imported lazily (PEP 562): the cache alone needs no torch, so a dataset check that only
reads stored image facts does not load it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headstart.features.cache import FeatureCache, default_cache_dir
    from headstart.features.extract import ExtractResult, extract_features, feature_namespace

_EXPORTS = {
    "ExtractResult": "headstart.features.extract",
    "FeatureCache": "headstart.features.cache",
    "default_cache_dir": "headstart.features.cache",
    "extract_features": "headstart.features.extract",
    "feature_namespace": "headstart.features.extract",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'headstart.features' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
