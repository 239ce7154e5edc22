"""Pooled backbone features, computed once and kept in a content-addressed on-disk cache."""

from headstart.features.cache import FeatureCache, default_cache_dir
from headstart.features.extract import ExtractResult, extract_features, feature_namespace

__all__ = [
    "ExtractResult",
    "FeatureCache",
    "default_cache_dir",
    "extract_features",
    "feature_namespace",
]
