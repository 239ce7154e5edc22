"""What a person looks at after training: the HTML report and class-activation maps.

This package sits above the estimator: it uses :class:`~headstart.estimator.ImageClassifier`'s
public methods and :mod:`headstart.runs`' readers, and nothing below imports it.
"""

from headstart.reporting.explain import Explanation, explain_image, overlay, side_by_side
from headstart.reporting.report import REPORT_NAME, write_report

__all__ = ["REPORT_NAME", "Explanation", "explain_image", "overlay", "side_by_side", "write_report"]
