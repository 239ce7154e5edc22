"""The report of a multi-label run: per-label figures, precision-recall curves, largest errors.

A confusion matrix and "the most confident wrong class" need one class an image. With several
labels an image, what a person checks is each label on its own (its precision-recall curve, its
threshold, its AP beside how many positives it had) and the images the model got most wrong
(the largest sum over labels of ``|truth - probability|``): there a missing label, a label that
is not there, or a label wrongly annotated shows first.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.data.multilabel import label_matrix
from headstart.reporting._html import GRID_LIMIT, esc, note, num, pct, section
from headstart.reporting._images import THUMB_SIDE, data_uri, jpeg_uri, thumbnail

if TYPE_CHECKING:
    from headstart.data import CsvColumns
    from headstart.estimator import ImageClassifier
    from headstart.reporting._gather import Evaluation

__all__ = ["LabelSetResults", "evaluate_label_sets", "label_grids_html", "label_results_html"]


@dataclass
class LabelSetItem:
    """One evaluated image: its true and predicted labels, and how wrong it was."""

    path: Path
    true: tuple[str, ...]
    predicted: tuple[str, ...]
    error: float  # sum over labels of |truth - probability|


@dataclass
class LabelSetResults:
    """What the multi-label report shows beyond the metrics."""

    items: list[LabelSetItem]
    curves: str | None  # the precision-recall curves as a data: URI


def evaluate_label_sets(
    clf: ImageClassifier, data: Path, columns: CsvColumns | None = None
) -> Evaluation:
    """The split ``headstart evaluate`` would pick, with each image's labels and error."""
    from headstart.reporting._gather import Evaluation

    assert clf.thresholds_ is not None
    classes = list(clf.classes_)
    dataset = clf.evaluation_dataset(data, columns=columns)
    split = next((s for s in ("test", "val", "train") if dataset.splits.get(s)), "train")
    metrics = clf.evaluate(dataset, split=split)
    predicted = clf.predict_split(dataset, split)
    truth = label_matrix(predicted.samples, len(classes))
    proba = predicted.proba
    above = proba >= np.asarray(clf.thresholds_)
    errors = np.abs(truth - proba).sum(1) if len(proba) else np.zeros(0)
    items = [
        LabelSetItem(
            sample.path,
            tuple(classes[j] for j in np.flatnonzero(truth[row])),
            tuple(classes[j] for j in np.flatnonzero(above[row])),
            float(errors[row]),
        )
        for row, sample in enumerate(predicted.samples)
    ]
    skipped = [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped]
    skipped += metrics.get("skipped", [])
    shown = split if (split != "train" or dataset.split_spec is None) else "all"
    evaluation = Evaluation(data, shown, metrics, [], skipped)
    evaluation.label_sets = LabelSetResults(items, _curves_uri(truth, proba, classes))
    return evaluation


def _curves_uri(truth: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> str | None:
    """Each label's precision-recall curve, in one figure (matplotlib, Agg)."""
    if not len(truth):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for j, name in enumerate(classes):
        positives = int(truth[:, j].sum())
        if positives == 0:
            continue
        order = np.argsort(-proba[:, j], kind="stable")
        hits = np.cumsum(truth[order, j])
        precision = hits / np.arange(1, len(order) + 1)
        recall = hits / positives
        ax.step(np.concatenate([[0.0], recall]), np.concatenate([[1.0], precision]), label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if len(classes) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return data_uri(buf.getvalue(), "image/png")


def _per_label_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{num(row.get('precision'))}</td>"
        f"<td>{num(row.get('recall'))}</td><td>{num(row.get('f1'))}</td>"
        f"<td>{num(row.get('ap'))}</td><td>{num(row.get('threshold'))}</td>"
        f"<td>{row.get('support', 0)}</td></tr>"
        for name, row in (metrics.get("per_label") or {}).items()
    )
    return (
        '<table id="per-label"><thead><tr><th>label</th><th>precision</th><th>recall</th>'
        "<th>F1</th><th>AP</th><th>threshold</th><th>positives</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def label_results_html(
    metrics: Mapping[str, Any], source: str, evaluation: Evaluation | None
) -> str:
    """The body of "how it did" for a multi-label run."""
    results = evaluation.label_sets if evaluation is not None else None
    curves = (
        f'<div class="box"><h3>Precision-recall curves</h3><img class="plot" '
        f'src="{results.curves}" alt="precision-recall curve of each label"></div>'
        if results is not None and results.curves
        else ""
    )
    return (
        f"<p>{source} mAP <b>{num(metrics.get('mAP'))}</b>, micro-F1 "
        f"{num(metrics.get('f1_micro'))}, macro-F1 {num(metrics.get('f1_macro'))}, whole label "
        f"set right on {pct(metrics.get('subset_accuracy'))} of images, Hamming loss "
        f"{num(metrics.get('hamming_loss'))}, {metrics.get('n')} images.</p>"
        '<div class="flow"><div class="box" id="per-label-box"><h3>Per label</h3>'
        f"{_per_label_table(metrics)}"
        '<p class="note">Each label is predicted from its threshold, chosen on held-out '
        "images to maximise its F1; AP is over every threshold.</p></div>"
        f"{curves}</div>"
    )


def label_grids_html(evaluation: Evaluation | None, data_note: str) -> str:
    """The images the model got most wrong, largest error first."""
    if evaluation is None or evaluation.label_sets is None:
        return section("Largest errors", f'<p class="note">{note(data_note)}</p>', "mistakes")
    items = sorted(evaluation.label_sets.items, key=lambda i: -i.error)
    wrong = [i for i in items if i.true != i.predicted]
    tiles = []
    for item in wrong[:GRID_LIMIT]:
        thumb = thumbnail(item.path, THUMB_SIDE)
        if thumb is None:
            continue
        true = ", ".join(item.true) or "(none)"
        predicted = ", ".join(item.predicted) or "(none)"
        tiles.append(
            f'<figure class="tile wrong" title="{esc(item.path)}"><img src="{jpeg_uri(thumb)}" '
            f'alt="{esc(item.path.name)}" width="{thumb.width}" height="{thumb.height}">'
            f'<figcaption><span class="lbl">true</span> {esc(true)}<br><span class="lbl">'
            f'predicted</span> <b class="bad">{esc(predicted)}</b>'
            f'<span class="p">error {item.error:.2f}</span>'
            f'<span class="file">{esc(item.path.name)}</span></figcaption></figure>'
        )
    body = (
        f'<p class="note">{len(wrong)} of {len(items)} {esc(evaluation.split)} images have a '
        "label set other than the true one; largest error (sum over labels of |truth - "
        f'probability|) first.</p><div class="grid">{"".join(tiles)}</div>'
        if wrong
        else f'<p class="note">Every one of the {len(items)} images has its label set right.</p>'
    )
    return section(f"Largest errors ({len(wrong)})", body, "mistakes")
