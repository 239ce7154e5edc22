"""A doctor for data and preprocessing: find what is wrong with a dataset before training on it.

``diagnose(DATA)`` reads a dataset as training would and reports every problem it finds, sorted
by severity: broken and lying files, empty, tiny and imbalanced classes, duplicates that leak
between splits or carry conflicting labels, tiny or grayscale images, and, with a model, the
preprocessing its weights expect and the images whose label its features doubt.
``quick_checks(dataset)`` is the duplicate/leakage subset, cheap enough for ``train`` to run on
every dataset it is given, and ``warn_on_pretrained_view`` is ``train``'s warning when the
weights' own classifier sees nothing in the training images.
"""

from headstart.doctor._diagnose import diagnose, quick_checks
from headstart.doctor._duplicates import DEFAULT_NEAR_THRESHOLD
from headstart.doctor._findings import SEVERITIES, Finding, Report, Severity
from headstart.doctor._pretrained_view import warn_on_pretrained_view

__all__ = [
    "DEFAULT_NEAR_THRESHOLD",
    "SEVERITIES",
    "Finding",
    "Report",
    "Severity",
    "diagnose",
    "quick_checks",
    "warn_on_pretrained_view",
]
