"""The doctor's label checks for a multi-label dataset, in place of its per-class ones.

Class checks (imbalance, a class too small to learn) assume one class an image. With several
labels an image, what stops training is a label with no positive training image or with no
negative one; what makes its figures unreadable is a label with too few validation positives;
and two labels on exactly the same images can never be told apart by any model. Duplicates with
different label sets are found by the duplicate checks, which compare the label sets as they
compare classes (:func:`headstart.doctor._samples.labelled_samples`).
"""

from __future__ import annotations

from headstart.data import Dataset
from headstart.data.multilabel import MIN_VAL_POSITIVES, label_facts
from headstart.doctor._findings import Finding

__all__ = ["label_findings"]


def label_findings(dataset: Dataset) -> list[Finding]:
    """Labels training cannot learn (errors), and labels hard to validate or to tell apart."""
    facts = label_facts(dataset)
    train = facts["positives"].get("train", dict.fromkeys(dataset.classes, 0))
    n_train = len(dataset.splits.get("train", []))
    findings: list[Finding] = []
    for name in dataset.classes:
        if train[name] == 0:
            findings.append(
                Finding(
                    "error",
                    "empty-label",
                    f"label {name!r} has no positive training image; add training images with "
                    "it or remove the label",
                    details={"label": name},
                )
            )
        elif train[name] == n_train:
            findings.append(
                Finding(
                    "error",
                    "label-everywhere",
                    f"label {name!r} is on every training image, so there is nothing to tell it "
                    "from; add training images without it or remove the label",
                    details={"label": name},
                )
            )
    if "val" in dataset.splits and facts["few_to_validate"]:
        few = facts["few_to_validate"]
        findings.append(
            Finding(
                "warning",
                "few-val-positives",
                f"{len(few)} label{'s' if len(few) != 1 else ''} with fewer than "
                f"{MIN_VAL_POSITIVES} validation positives ({', '.join(map(repr, few[:10]))}"
                f"{' ...' if len(few) > 10 else ''}): their thresholds and figures rest on too "
                "few images; add positives or raise --val-fraction",
                details={"labels": few, "val": {n: facts["positives"]["val"][n] for n in few}},
            )
        )
    for a, b in facts["always_together"]:
        findings.append(
            Finding(
                "warning",
                "labels-always-together",
                f"labels {a!r} and {b!r} are on exactly the same images: no model can tell them "
                "apart; merge them or add images with only one of them",
                details={"labels": [a, b]},
            )
        )
    return findings
