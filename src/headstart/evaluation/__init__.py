"""Metrics and pictures of how a classifier did (the report is :mod:`headstart.reporting`)."""

from headstart.evaluation.metrics import classification_metrics, format_metrics
from headstart.evaluation.plots import plot_curves

__all__ = ["classification_metrics", "format_metrics", "plot_curves"]
