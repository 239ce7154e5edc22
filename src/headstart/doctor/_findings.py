"""What the doctor reports: findings with a severity, and the report that holds them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from headstart.preprocess import Preprocess

__all__ = ["SEVERITIES", "Finding", "Report", "Severity", "sort_findings"]

Severity = Literal["error", "warning", "info"]

SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
"""Most serious first, the order findings are listed in.

- error: training would learn from or be measured on wrong data (leakage, conflicting labels, a
  class that cannot be trained), or a file that claims to be an image is lost (truncated, empty).
- warning: probably a problem, but a run stays sound (imbalance, tiny images, suspicious labels).
- info: worth knowing, nothing to fix (duplicates inside one class and split, a README).
"""


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found.

    Attributes:
        severity: "error", "warning" or "info" (see :data:`SEVERITIES`).
        code: Stable, machine-readable kind, e.g. "leak-exact", "truncated", "label-noise"; scripts
            filter on it, so it never changes with the wording of the message.
        message: One line for a person: what is wrong, and the fix.
        paths: The files concerned (a duplicate group lists all its members).
        details: JSON-able specifics (classes, splits, probabilities) for ``--json`` readers.
    """

    severity: Severity
    code: str
    message: str
    paths: tuple[Path, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; :meth:`from_dict` reads it back."""
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "paths": [str(p) for p in self.paths],
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """The finding :meth:`to_dict` wrote (for findings stored in the feature cache).

        Raises:
            ValueError: ``data`` is not such a dict (wrong keys or types, unknown severity), so
                a caller reading stored findings can treat it as nothing stored.
        """
        try:
            severity, code, message = data["severity"], data["code"], data["message"]
            paths, details = data["paths"], data["details"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a finding: {exc!r}") from None
        if (
            severity not in SEVERITIES
            or not isinstance(code, str)
            or not isinstance(message, str)
            or not isinstance(paths, list)
            or not all(isinstance(p, str) for p in paths)
            or not isinstance(details, dict)
        ):
            raise ValueError(f"not a finding: {str(data)[:200]}")
        return cls(severity, code, message, tuple(Path(p) for p in paths), dict(details))


# Within a severity, the kinds that change what a run learns or measures come first, then broken
# files; kinds not listed follow in the order they were found.
_CODE_ORDER = (
    "too-few-classes",
    "empty-class",
    "empty-label",
    "label-everywhere",
    "conflicting-labels",
    "conflicting-labels-near",
    "leak-exact",
    "leak-near",
    "truncated",
    "empty-file",
    "not-an-image",
    "unreadable",
    "pretrained-view",
    "preprocess-override",
    "label-noise",
    "imbalance",
    "small-class",
    "no-val-split",
    "no-val-images",
    "few-val-positives",
    "labels-always-together",
    "grayscale-split",
    "grayscale-class",
    "tiny-image",
)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then info; within a severity, grouped by kind.

    The sort is stable, so within a kind the caller's order stands: files by path, duplicate
    groups by their first file, label-noise candidates most suspicious first.
    """
    items = list(findings)
    order = {code: i for i, code in enumerate(_CODE_ORDER)}
    for f in items:
        order.setdefault(f.code, len(order))
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(items, key=lambda f: (rank[f.severity], order[f.code]))


@dataclass(frozen=True)
class Report:
    """Everything :func:`headstart.doctor.diagnose` found in one dataset.

    Attributes:
        root: The dataset folder (or CSV file).
        layout: How its labels were given ("split-folders", "class-folders", "csv", "lists").
        classes: Class names, as training would index them.
        findings: Sorted by severity (errors first).
        stats: JSON-able facts: counts per split and class, image sizes, colour modes and
            formats, duplicate groups, timings; with a model, the label-noise cross-validation.
        model: The model checked against, or None.
        expected_preprocess: The preprocessing the model's weights expect, or None.
        preprocess: What a run with the given overrides would use (equal to
            ``expected_preprocess`` when nothing was overridden), or None.
    """

    root: Path
    layout: str
    classes: list[str]
    findings: list[Finding]
    stats: dict[str, Any]
    model: str | None = None
    expected_preprocess: Preprocess | None = None
    preprocess: Preprocess | None = None

    @property
    def has_errors(self) -> bool:
        """True when any finding is an error: the dataset should be fixed before training."""
        return any(f.severity == "error" for f in self.findings)

    def severity_counts(self) -> dict[str, int]:
        """Findings per severity, every severity listed (0 when none)."""
        counts: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def by_code(self, code: str) -> list[Finding]:
        """The findings of one kind, e.g. ``report.by_code("leak-exact")``."""
        return [f for f in self.findings if f.code == code]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form, for ``headstart doctor --json``."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": list(self.classes),
            "model": self.model,
            "has_errors": self.has_errors,
            "severity_counts": self.severity_counts(),
            "findings": [f.to_dict() for f in self.findings],
            "stats": self.stats,
            "expected_preprocess": (
                None if self.expected_preprocess is None else self.expected_preprocess.to_dict()
            ),
            "preprocess": None if self.preprocess is None else self.preprocess.to_dict(),
        }
