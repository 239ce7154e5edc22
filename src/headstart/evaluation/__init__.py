"""Metrics and pictures of how a classifier did."""

from headstart.evaluation.metrics import classification_metrics, format_metrics
from headstart.evaluation.plots import plot_curves
from headstart.evaluation.report import write_report

__all__ = ["classification_metrics", "format_metrics", "plot_curves", "write_report"]
