"""``report.html``: one self-contained page that shows a person what a run did and how well.

People look at pictures before they read numbers (shared/USERS.md story 5): the curves, the
confusion matrix and, above all, the images the model got wrong. The report puts all of that on
one page that opens from disk, offline, years later: every image and plot is embedded as a
``data:`` URI, the CSS and the few lines of script are inline, and a Content-Security-Policy
forbids the page from loading anything else, so a report cannot silently depend on the network.

The numbers come from the run folder (``config.json``, ``history.csv``); the image grids need the
images, so the model is evaluated again on DATA (by default the training data, if it is still
where the run recorded it). That evaluation goes through ``ImageClassifier.predict_files``, which
reads the feature cache: right after training it costs no forward pass.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart._version import __version__
from headstart.errors import DataError, HeadstartError, ImageDecodeError, RunFolderError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from headstart.data import Sample
    from headstart.estimator import ImageClassifier
    from headstart.preprocess import Preprocess

__all__ = ["REPORT_NAME", "write_report"]

REPORT_NAME = "report.html"
GRID_LIMIT = 32  # images per grid: enough to see a pattern, few enough to keep the file small
THUMB_SIDE = 128
PREVIEW_SIDE = 256
SKIPPED_LIMIT = 200
CM_MAX_CLASSES = 40  # beyond this a confusion matrix is unreadable: list the worst pairs
CONFUSED_PAIRS = 30
EXPLAIN_LIMIT = 12  # mistakes with class-activation maps: two backward passes each, kept quick
CAM_SIDE = 112


def write_report(
    run: str | Path,
    *,
    data: str | Path | None = None,
    clf: ImageClassifier | None = None,
    quiet: bool = True,
) -> Path:
    """Write ``RUN/report.html``, a page a person would rather look at than read.

    The report is rebuilt from the run folder each time, so it always matches the files beside it,
    and it is written atomically, so a browser never opens half a page.

    Args:
        run: The run folder ``headstart train`` wrote.
        data: Labelled images to evaluate on for the confusion matrix and the image grids. None
            means the training data recorded in ``config.json``, if it still exists there. The
            split shown is test, else val, else all of it, as ``headstart evaluate`` picks. Without
            any data the report still shows everything the run folder holds, and says that the
            image grids need DATA.
        clf: The run's classifier when the caller already holds it (``headstart train`` does),
            which saves loading the backbone again. Otherwise the run is loaded only when there
            is data to evaluate.
        quiet: No progress bars while loading and evaluating (only used when ``clf`` is None).

    Returns:
        The path of the report.

    Raises:
        RunFolderError: ``run`` is not a headstart run folder.
        DataError: ``data`` was given but cannot be read as labelled images for this model. (The
            recorded training data is only used if it reads: a moved or changed folder must not
            stop a report, so the report says why it has no image grids instead.)
    """
    folder = Path(run)
    hs = _read_headstart_config(folder)
    data_path, data_note = _resolve_data(hs, data)
    evaluation: _Evaluation | None = None
    if data_path is not None:
        if clf is None:
            from headstart.estimator import ImageClassifier

            clf = ImageClassifier.load(folder, quiet=quiet)
        try:
            evaluation = _evaluate(clf, data_path)
        except DataError as exc:
            if data is not None:
                raise
            data_note = (
                f"The training data recorded in the run ({data_path}) could not be read again: "
                f"{exc}"
            )
    page = _render(folder, hs, _read_history(folder), evaluation, data_note)
    out = folder / REPORT_NAME
    from headstart.runs import atomic_write

    atomic_write(out, page.encode("utf-8"))
    return out


# ----------------------------------------------------------------------------- reading the run
def _read_headstart_config(folder: Path) -> dict[str, Any]:
    from headstart.runs import CONFIG_NAME

    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise RunFolderError(
            f"Run folder '{folder}' does not exist; pass the folder `headstart train` wrote "
            "(it holds config.json and model.safetensors)."
        )
    if not path.is_file():
        raise RunFolderError(
            f"'{folder}' is not a headstart run folder (no {CONFIG_NAME}); pass the folder "
            "`headstart train` wrote."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"Cannot read {path}: {exc}.") from exc
    hs = config.get("headstart") if isinstance(config, dict) else None
    if not isinstance(hs, dict) or not isinstance(hs.get("classes"), list):
        raise RunFolderError(
            f"{path} was not written by headstart (no 'headstart' section with classes); "
            "pass a run folder written by `headstart train`."
        )
    return hs


def _read_history(folder: Path) -> list[dict[str, float]]:
    """history.csv as numbers; an empty cell (no validation split) becomes NaN, a gap in a plot."""
    path = folder / "history.csv"
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                rows.append(
                    {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
                )
            except ValueError:
                continue  # a hand-edited line: the rest of the curve is still worth drawing
    return [r for r in rows if not math.isnan(r.get("epoch", math.nan))]


def _resolve_data(hs: Mapping[str, Any], data: str | Path | None) -> tuple[Path | None, str]:
    if data is not None:
        return Path(data), ""
    root = (hs.get("data") or {}).get("root")
    if not root:
        return None, (
            "The run does not record where its training data is; the image grids need it: "
            "run `headstart report RUN DATA`."
        )
    if not Path(root).exists():
        return None, (
            f"The training data is no longer at {root}; the image grids need the images: "
            "run `headstart report RUN DATA`."
        )
    return Path(root), ""


# ----------------------------------------------------------------------------- evaluating
@dataclass
class _Item:
    path: Path
    true: int
    predicted: int
    probability: float  # of the predicted class


@dataclass
class _Evaluation:
    data: Path
    split: str
    metrics: dict[str, Any]
    items: list[_Item]
    skipped: list[dict[str, str]] = field(default_factory=list)
    # path -> (map of the wrong answer, map of the true class, layer), for the top mistakes
    explanations: dict[Path, tuple[str, str, str]] = field(default_factory=dict)


def _evaluate(clf: ImageClassifier, data: Path) -> _Evaluation:
    from headstart.evaluation.metrics import classification_metrics

    dataset = clf.evaluation_dataset(data)
    split = next((s for s in ("test", "val", "train") if dataset.splits.get(s)), "train")
    samples = dataset.splits.get(split, [])
    classes = list(clf.classes_)
    skipped = [{"path": str(s.path), "reason": s.reason} for s in dataset.skipped]
    # The training run's own probabilities when this is the data it just trained on; otherwise
    # one matrix of predicted ones (a Prediction per image cost half a second at 10,000).
    proba = clf._fitted_proba(dataset, split)
    kept_samples = list(samples)
    if proba is None:
        proba, kept_samples = _predict(clf, samples, skipped)
    predicted = proba.argmax(1)
    items = [
        _Item(sample.path, sample.label, int(guess), float(proba[row, guess]))
        for row, (sample, guess) in enumerate(zip(kept_samples, predicted, strict=True))
    ]
    metrics = classification_metrics(np.array([i.true for i in items]), proba, classes)
    metrics["reliability"] = _reliability(proba, np.array([i.true for i in items]), clf)
    shown_split = split if (split != "train" or dataset.split_spec is None) else "all"
    return _Evaluation(data, shown_split, metrics, items, skipped, _explain_mistakes(clf, items))


def _predict(
    clf: ImageClassifier, samples: Sequence[Sample], skipped: list[dict[str, str]]
) -> tuple[np.ndarray, list[Sample]]:
    """Probabilities of the samples that could be read (the others go to ``skipped``). The
    samples of a dataset are images already (discovery checked each), so none is sniffed again."""
    extracted, all_proba = clf._tta_proba([s.path for s in samples], tta="none", desc="predicting")
    row_of = {p: i for i, p in enumerate(extracted.paths)}
    kept: list[int] = []
    kept_samples: list[Sample] = []
    for sample in samples:
        row = row_of.get(sample.path)
        if row is None:
            reason = extracted.failures.get(sample.path, "could not be read")
            skipped.append({"path": str(sample.path), "reason": reason})
            continue
        kept.append(row)
        kept_samples.append(sample)
    proba = all_proba[kept] if kept else np.zeros((0, len(clf.classes_)))
    return proba, kept_samples


def _reliability(proba: np.ndarray, y: np.ndarray, clf: ImageClassifier) -> dict[str, Any]:
    """Reliability bins of the probabilities as predicted and as they were before calibration.

    The calibrated logits are the raw ones divided by the temperature T, so the uncalibrated
    probabilities are ``softmax(T * log p)``: no second pass over the images.
    """
    from headstart.evaluation.calibration import (
        expected_calibration_error,
        reliability_bins,
        softmax,
    )

    temperature = float(getattr(clf, "temperature_", 1.0))
    calibration = getattr(clf, "calibration_", None) or {}
    raw = softmax(np.log(np.clip(proba, 1e-30, 1.0)) * temperature) if len(proba) else proba
    return {
        "temperature": temperature,
        "test": str(calibration.get("test", "")),
        "before": reliability_bins(raw, y),
        "after": reliability_bins(proba, y),
        "ece_before": expected_calibration_error(raw, y) if len(y) else None,
        "ece_after": expected_calibration_error(proba, y) if len(y) else None,
    }


def _reliability_html(metrics: Mapping[str, Any]) -> str:
    """A reliability diagram (SVG): accuracy against confidence, before and after calibration."""
    rel = metrics.get("reliability")
    if not isinstance(rel, Mapping) or rel.get("ece_after") is None:
        return ""
    size, pad = 220, 24

    def point(conf: float, acc: float) -> str:
        return f"{pad + conf * size:.1f},{pad + (1 - acc) * size:.1f}"

    def line(rows: Sequence[Mapping[str, float]], colour: str, label: str) -> str:
        pts = " ".join(point(r["confidence"], r["accuracy"]) for r in rows)
        dots = "".join(
            f'<circle cx="{pad + r["confidence"] * size:.1f}" '
            f'cy="{pad + (1 - r["accuracy"]) * size:.1f}" r="3" fill="{colour}"/>'
            for r in rows
        )
        return (
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{label}</title></polyline>{dots}"
        )

    total = size + 2 * pad
    svg = (
        f'<svg class="reliability" width="{total}" height="{total}" viewBox="0 0 {total} {total}" '
        'role="img" aria-label="reliability diagram">'
        f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad + size}" x2="{pad + size}" y2="{pad}" stroke="#bbb" '
        'stroke-dasharray="4 3"/>'
        f"{line(rel['before'], '#d62728', 'before calibration')}"
        f"{line(rel['after'], '#1f77b4', 'after calibration')}"
        "</svg>"
    )
    test = f" {html.escape(rel['test'].capitalize())}." if rel.get("test") else ""
    return (
        f"<h3>Calibration</h3>{svg}"
        f'<p class="note">Accuracy against confidence in {len(rel["after"])} confidence bins '
        "(dashed: perfectly calibrated). Red: the softmax before calibration, expected "
        f"calibration error {_num(rel['ece_before'])}; blue: with the temperature "
        f"{rel['temperature']:.3g} fitted on held-out logits at training time, "
        f"{_num(rel['ece_after'])}.{test}</p>"
    )


def _explain_mistakes(
    clf: ImageClassifier, items: Sequence[_Item]
) -> dict[Path, tuple[str, str, str]]:
    """Grad-CAM overlays for the most confident mistakes: for the wrong answer and the truth.

    Capped at :data:`EXPLAIN_LIMIT` images so the report stays quick; a backbone the maps
    cannot be computed for (no spatial activation) gets a gallery without them.
    """
    from headstart.evaluation.explain import explain_image, overlay

    wrong = sorted((i for i in items if i.predicted != i.true), key=lambda i: -i.probability)
    out: dict[Path, tuple[str, str, str]] = {}
    for item in wrong[:EXPLAIN_LIMIT]:
        try:
            pred, true = explain_image(clf, item.path, classes=[item.predicted, item.true])
        except ImageDecodeError:
            continue  # changed on disk since it was evaluated
        except HeadstartError:
            return {}
        images = []
        for explanation in (pred, true):
            shown = overlay(explanation)
            shown.thumbnail((CAM_SIDE, CAM_SIDE))
            images.append(_jpeg_uri(shown))
        out[item.path] = (images[0], images[1], pred.layer)
    return out


# ----------------------------------------------------------------------------- images
def _data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _jpeg_uri(img: Image.Image, quality: int = 85) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return _data_uri(buf.getvalue(), "image/jpeg")


def _png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _data_uri(buf.getvalue(), "image/png")


def _thumbnail(path: Path, side: int) -> Image.Image | None:
    """The image as headstart decodes it (EXIF orientation applied), fitted in side x side."""
    from headstart.data import load_image

    try:
        img = load_image(path, draft_size=(2 * side, 2 * side))
    except ImageDecodeError:
        return None  # changed on disk since it was evaluated: the grid shows the others
    img.thumbnail((side, side))
    return img


def _tensor_to_image(tensor: torch.Tensor, preprocess: Preprocess) -> Image.Image:
    """The tensor a backbone receives, turned back into pixels a person can look at.

    Undoes exactly what :class:`~headstart.preprocess.Preprocess` did after the crop (std, mean,
    pixel scale, channel order), so the picture shows what the network's input *contains*: the
    resize, the crop or the padding. A wrong undo would show wrong colours, which is the point:
    if this picture looks right, the saved preprocessing and the tensor agree.
    """
    from PIL import Image

    x = tensor.detach().to("cpu").float().numpy().astype(np.float64)
    mean = np.asarray(preprocess.mean, dtype=np.float64).reshape(3, 1, 1)
    std = np.asarray(preprocess.std, dtype=np.float64).reshape(3, 1, 1)
    pixels = (x * std + mean) / preprocess.scale
    if preprocess.channel_order == "BGR":
        pixels = pixels[::-1]
    rgb = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")


@dataclass
class _Preview:
    original: str
    original_size: tuple[int, int]
    received: str
    shape: tuple[int, ...]
    low: float
    high: float
    name: str


def _preprocess_preview(path: Path, preprocess: Preprocess) -> _Preview | None:
    from headstart.data import load_image

    try:
        img = load_image(path)
    except ImageDecodeError:
        return None
    tensor = preprocess(img)
    received = _tensor_to_image(tensor, preprocess)
    size = img.size
    shown = img.copy()
    shown.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return _Preview(
        original=_jpeg_uri(shown, 90),
        original_size=size,
        received=_png_uri(received),
        shape=tuple(tensor.shape),
        low=float(tensor.min()),
        high=float(tensor.max()),
        name=path.name,
    )


def _curves_uri(
    history: Sequence[dict[str, float]], best_epoch: int, saved: Path | None = None
) -> str | None:
    """The same figure as the run's curves.png (one look everywhere): that file when the run
    folder has it (drawing it again would cost a second of matplotlib per report), else drawn
    from history.csv."""
    if not history:
        return None
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if any(key not in row for row in history):
            return None
    if saved is not None and saved.is_file():
        return _data_uri(saved.read_bytes(), "image/png")
    from headstart.evaluation.plots import plot_curves

    epochs = {int(row["epoch"]) for row in history}
    with tempfile.TemporaryDirectory(prefix="headstart-report-") as tmp:
        out = plot_curves(history, best_epoch if best_epoch in epochs else 0, Path(tmp) / "c.png")
        return _data_uri(out.read_bytes(), "image/png")


# ----------------------------------------------------------------------------- rendering
def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _note(text: str) -> str:
    """Escaped text, with `commands` in backticks shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def _pct(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "–"
    return f"{100 * value:.1f}%"


def _num(value: object, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def _duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _strategy(hs: Mapping[str, Any]) -> tuple[str, str]:
    """The strategy's name and, when the run recorded one, why it was chosen."""
    raw = hs.get("strategy")
    reason: object = None
    if isinstance(raw, Mapping):
        name = raw.get("name") or raw.get("kind") or raw.get("strategy") or "?"
        reason = raw.get("reason") or raw.get("why") or raw.get("explanation")
    else:
        name = raw or "features"
    for key in ("strategy_reason", "strategy_why", "strategy_explanation"):
        reason = reason or hs.get(key)
    if isinstance(reason, (list, tuple)):
        reason = " ".join(str(r) for r in reason)
    return str(name), str(reason or "")


def _stat(label: str, value: str, detail: str = "") -> str:
    small = f"<small>{_e(detail)}</small>" if detail else ""
    return f'<div class="stat"><span>{_e(label)}</span><b>{_e(value)}</b>{small}</div>'


def _counts_table(classes: Sequence[str], counts: Mapping[str, Mapping[str, int]]) -> str:
    splits = [s for s in ("train", "val", "test") if s in counts] + [
        s for s in counts if s not in ("train", "val", "test")
    ]
    if not splits:
        return '<p class="note">No image counts recorded.</p>'
    head = "".join(f"<th>{_e(s)}</th>" for s in splits) + "<th>total</th>"
    body = []
    for name in classes:
        values = [int(counts[s].get(name, 0)) for s in splits]
        cells = "".join(f"<td>{v}</td>" for v in values)
        body.append(f"<tr><th>{_e(name)}</th>{cells}<td>{sum(values)}</td></tr>")
    totals = [sum(int(v) for v in counts[s].values()) for s in splits]
    foot = "".join(f"<td>{v}</td>" for v in totals) + f"<td>{sum(totals)}</td>"
    return (
        f'<table class="num"><thead><tr><th>class</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody><tfoot><tr><th>all</th>{foot}</tr></tfoot></table>"
    )


def _definition_list(rows: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in rows if v)
    return f'<dl class="facts">{items}</dl>'


def _confusion_html(metrics: Mapping[str, Any]) -> str:
    """A heatmap as an HTML table: crisp at any zoom, counts selectable, no image to decode.

    Each cell is shaded by its share of the row (the true class), so a class with few images
    shows its errors as clearly as a big one; the diagonal is blue, mistakes are red. Beyond
    ``CM_MAX_CLASSES`` classes a matrix is too big to read (and to embed: 1000 classes are a
    million cells), so the most confused pairs are listed instead.
    """
    classes = list(metrics.get("classes") or [])
    cm = metrics.get("confusion_matrix") or []
    if len(classes) > CM_MAX_CLASSES:
        return _confused_pairs_html(classes, cm)
    vertical = len(classes) > 4 or any(len(c) > 8 for c in classes)
    head_class = ' class="v"' if vertical else ""
    head = "".join(f"<th{head_class}><span>{_e(c)}</span></th>" for c in classes)
    body = []
    for i, (name, row) in enumerate(zip(classes, cm, strict=False)):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            share = count / total
            colour = "9,105,218" if i == j else "207,34,46"
            alpha = 0.08 + 0.85 * share if count else 0.0
            ink = "#fff" if alpha > 0.55 else "inherit"
            title = f"true {name}, predicted {classes[j]}: {count} ({100 * share:.0f}% of {name})"
            cells.append(
                f'<td style="background:rgba({colour},{alpha:.3f});color:{ink}" '
                f'title="{_e(title)}">{count if count else ""}</td>'
            )
        body.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return (
        '<table class="cm"><thead><tr><th class="corner">true ↓ predicted →</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _confused_pairs_html(classes: Sequence[str], cm: Sequence[Sequence[int]]) -> str:
    pairs = sorted(
        (
            (int(count), i, j)
            for i, row in enumerate(cm)
            for j, count in enumerate(row)
            if i != j and count
        ),
        reverse=True,
    )[:CONFUSED_PAIRS]
    if not pairs:
        return f'<p class="note">{len(classes)} classes, no confusions.</p>'
    rows = "".join(
        f"<tr><th>{_e(classes[i])}</th><th>{_e(classes[j])}</th><td>{count}</td>"
        f"<td>{_pct(count / (sum(cm[i]) or 1))}</td></tr>"
        for count, i, j in pairs
    )
    return (
        f'<p class="note">{len(classes)} classes: too many for a matrix; the '
        f"{len(pairs)} most frequent confusions instead.</p>"
        '<table class="num"><thead><tr><th>true</th><th>predicted</th><th>images</th>'
        f"<th>of the true class</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _bar_cell(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "<td>–</td>"
    return f'<td class="bar" style="--v:{max(0.0, min(1.0, float(value))):.3f}">{value:.3f}</td>'


def _per_class_html(metrics: Mapping[str, Any]) -> str:
    per_class = metrics.get("per_class") or {}
    rows = []
    for name in metrics.get("classes") or []:
        row = per_class.get(name) or {}
        rows.append(
            f"<tr><th>{_e(name)}</th>{_bar_cell(row.get('precision'))}"
            f"{_bar_cell(row.get('recall'))}{_bar_cell(row.get('f1'))}"
            f"<td>{_e(row.get('support', '–'))}</td></tr>"
        )
    return (
        '<table class="num"><thead><tr><th>class</th><th>precision</th><th>recall</th>'
        f"<th>F1</th><th>support</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _grid(
    items: Sequence[_Item],
    classes: Sequence[str],
    kind: str,
    explanations: Mapping[Path, tuple[str, str, str]] | None = None,
) -> str:
    tiles = []
    for item in items[:GRID_LIMIT]:
        thumb = _thumbnail(item.path, THUMB_SIDE)
        if thumb is None:
            continue
        true, predicted = classes[item.true], classes[item.predicted]
        verdict = (
            f'<span class="lbl">true</span> {_e(true)}<br><span class="lbl">predicted</span> '
            f'<b class="bad">{_e(predicted)}</b>'
            if kind == "wrong"
            else f'<span class="lbl">class</span> <b class="good">{_e(true)}</b>'
        )
        cams = (explanations or {}).get(item.path)
        maps = (
            f'<div class="cams" title="Grad-CAM on {_e(cams[2])}: where the evidence for each '
            f'class is"><figure><img src="{cams[0]}" alt="where it saw {_e(predicted)}">'
            f"<figcaption>looked for {_e(predicted)}</figcaption></figure>"
            f'<figure><img src="{cams[1]}" alt="where it saw {_e(true)}">'
            f"<figcaption>looked for {_e(true)}</figcaption></figure></div>"
            if cams
            else ""
        )
        tiles.append(
            f'<figure class="tile {kind}" data-probability="{item.probability:.6f}" '
            f'title="{_e(item.path)}"><img src="{_jpeg_uri(thumb)}" alt="{_e(item.path.name)}" '
            f'width="{thumb.width}" height="{thumb.height}">{maps}<figcaption>{verdict}'
            f'<span class="p">{100 * item.probability:.1f}%</span>'
            f'<span class="file">{_e(item.path.name)}</span></figcaption></figure>'
        )
    return f'<div class="grid">{"".join(tiles)}</div>'


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section class="card" id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _recorded_metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if m.get("n"):
            rows.append(
                f"<tr><th>{split}</th><td>{_pct(m.get('accuracy'))}</td>"
                f"<td>{_num(m.get('loss'))}</td><td>{_num(m.get('macro_f1'))}</td>"
                f"<td>{m['n']}</td></tr>"
            )
    if not rows:
        return ""
    return (
        '<table class="num"><thead><tr><th>split</th><th>accuracy</th><th>loss</th>'
        f"<th>macro F1</th><th>images</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


@dataclass(frozen=True)
class _Run:
    """The parts of config.json the report reads, with a default for each missing one."""

    folder: Path
    hs: Mapping[str, Any]

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.hs.get("classes", [])]

    def section(self, key: str) -> Mapping[str, Any]:
        value = self.hs.get(key)
        return value if isinstance(value, Mapping) else {}

    @property
    def best_epoch(self) -> int:
        return int(self.section("training").get("best_epoch") or 0)


def _render(
    folder: Path,
    hs: Mapping[str, Any],
    history: Sequence[dict[str, float]],
    evaluation: _Evaluation | None,
    data_note: str,
) -> str:
    run = _Run(folder, hs)
    results_title, results_body = _results_html(run, evaluation, data_note)
    skipped_title, skipped_body = _skipped_html(run, evaluation)
    sections = [
        _section("The run at a glance", _glance_html(run), "glance"),
        _section("Preprocessing", _preprocessing_html(run, evaluation, data_note), "preprocessing"),
        _section("Training: how the head was chosen", _curves_html(run, history), "curves"),
        _section(results_title, results_body, "results"),
        _grids_html(run, evaluation, data_note),
        _section(skipped_title, skipped_body, "skipped"),
    ]
    nav = "".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("glance", "At a glance"),
            ("preprocessing", "Preprocessing"),
            ("curves", "Curves"),
            ("results", "Results"),
            ("mistakes", "Mistakes"),
            ("skipped", "Skipped"),
        )
    )
    return _PAGE.format(
        title=_e(f"headstart report: {folder.resolve().name}"),
        css=_CSS,
        script=_SCRIPT,
        run=_e(folder.resolve()),
        written=_e(time.strftime("%Y-%m-%d %H:%M")),
        version=_e(__version__),
        nav=nav,
        sections="\n".join(sections),
    )


def _balanced_stat(metrics: Mapping[str, Any]) -> str:
    """Balanced accuracy and macro-F1: every class counted alike, which accuracy hides."""
    if metrics.get("balanced_accuracy") is None:
        return ""
    return _stat(
        "balanced accuracy",
        _pct(metrics["balanced_accuracy"]),
        f"macro-F1 {_num(metrics.get('macro_f1'))}",
    )


def _glance_html(run: _Run) -> str:
    backbone, training, data = run.section("backbone"), run.section("training"), run.section("data")
    recorded = run.section("metrics")
    counts = data.get("counts") or {}
    test, val = recorded.get("test") or {}, recorded.get("val") or {}
    n_images = sum(sum(int(v) for v in c.values()) for c in counts.values())
    stats = [
        _stat("test accuracy", _pct(test.get("accuracy")), f"{test['n']} images")
        if test.get("n")
        else "",
        _stat("validation accuracy", _pct(val.get("accuracy")), f"{val['n']} images")
        if val.get("n")
        else "",
        _balanced_stat(test if test.get("n") else val),
        _stat("classes", str(len(run.classes))),
        _stat(
            "images", str(n_images), " / ".join(f"{s} {sum(c.values())}" for s, c in counts.items())
        ),
        _stat(
            "kept epoch",
            f"{run.best_epoch} of {training.get('epochs_run', '?')}" if run.best_epoch else "–",
            f"by {training['monitor']}" if training.get("monitor") else "",
        ),
        _stat("training time", _duration(training.get("seconds"))),
    ]
    strategy, why = _strategy(run.hs)
    model = backbone.get("model") or backbone.get("architecture") or "?"
    head = run.section("head")
    split_spec = data.get("split_spec")
    facts = [
        (
            "backbone",
            f"<code>{_e(model)}</code> ({_e(backbone.get('family', '?'))}, "
            f"architecture <code>{_e(backbone.get('architecture', '?'))}</code>)",
        ),
        ("weights", _e(backbone.get("weights", "?"))),
        ("weights id", f"<code>{_e(backbone['weights_id'])}</code>")
        if backbone.get("weights_id")
        else ("", ""),
        ("strategy", f"<b>{_e(strategy)}</b>" + (f"<br>{_e(why)}" if why else "")),
        ("head", _e(", ".join(f"{k} {v}" for k, v in head.items() if not isinstance(v, dict)))),
        (
            "training",
            _e(
                ", ".join(
                    f"{k.replace('_', ' ')} {training[k]}"
                    for k in ("epochs", "lr", "weight_decay", "batch_size", "patience", "seed")
                    if k in training
                )
            ),
        ),
        (
            "data",
            f"<code>{_e(data.get('root', '?'))}</code> ({_e(data.get('layout', '?'))})"
            + (f"<br>split by headstart: {_e(split_spec)}" if split_spec else ""),
        ),
        ("versions", _e(", ".join(f"{k} {v}" for k, v in run.section("versions").items()))),
    ]
    return (
        f'<div class="stats">{"".join(stats)}</div><div class="cols">'
        f"<div>{_definition_list(facts)}</div>"
        f"<div><h3>Images per split and class</h3>{_counts_table(run.classes, counts)}</div></div>"
    )


def _preprocessing_html(run: _Run, evaluation: _Evaluation | None, data_note: str) -> str:
    from headstart.preprocess import Preprocess

    try:
        preprocess = Preprocess.from_dict(run.hs.get("preprocess") or {})
    except HeadstartError as exc:
        return f'<p class="warn">The run\'s preprocessing cannot be read: {_e(exc)}</p>'
    preview = None
    if evaluation is not None and evaluation.items:
        preview = _preprocess_preview(evaluation.items[0].path, preprocess)
    if preview is None:
        picture = f'<p class="note">{_note(data_note or "No image to show it on.")}</p>'
    else:
        w, h = preview.original_size
        shape = "×".join(str(s) for s in preview.shape)
        picture = (
            '<div class="before-after">'
            f'<figure><img src="{preview.original}" alt="original image">'
            f"<figcaption><b>original</b> {w}×{h} px<br>{_e(preview.name)}</figcaption>"
            '</figure><div class="arrow">→</div>'
            f'<figure><img src="{preview.received}" alt="what the backbone receives">'
            f"<figcaption><b>what the backbone receives</b> {shape} tensor, values "
            f"{preview.low:.2f} to {preview.high:.2f}<br>shown with std, mean, scale and "
            "channel order undone</figcaption></figure></div>"
        )
    warn = (
        f'<p class="warn">Overridden by the user: {_e(", ".join(preprocess.overrides))}. '
        "The weights were trained with other values.</p>"
        if preprocess.overrides
        else ""
    )
    return (
        '<p class="note">Read from the weights, saved with the model and used unchanged by '
        f"evaluate and predict.</p>{warn}"
        f'<div class="cols"><pre>{_e(preprocess.describe())}</pre><div>{picture}</div></div>'
    )


def _selection_html(selection: Mapping[str, Any]) -> str:
    """How the head's setting was chosen, on which images, and which images the final fit used."""
    fit = selection.get("fit_images") or {}
    fit_text = " + ".join(f"{n} {_e(split)}" for split, n in fit.items())
    held = (
        f"held-out accuracy {_pct(selection.get('val_accuracy'))}, log-loss "
        f"{_num(selection.get('val_loss'))}"
        if selection.get("val_loss") is not None
        else "no held-out figures"
    )
    refit = "val" in fit
    lines = [
        f"<p>Chosen on {_e(selection.get('protocol_text', selection.get('protocol', '?')))}: "
        f"{held}. These are figures of the selection step, from models that did not see the "
        "held-out images"
        + (
            "; the final model was then refitted on them too, so it has no validation figures "
            "of its own."
            if refit
            else "."
        )
        + f" Final fit on {fit_text} images.</p>"
    ]
    path = selection.get("path") or []
    if path:
        chosen = selection.get("C")
        kept = ' class="kept"'
        rows = "".join(
            f"<tr{kept if row.get('C') == chosen else ''}><td>{row['C']:g}</td>"
            f"<td>{_num(row.get('log_loss'))}</td><td>{_pct(row.get('accuracy'))}</td></tr>"
            for row in path
        )
        lines.append(
            '<table id="selection"><tr><th>C (inverse L2 strength)</th>'
            "<th>held-out log-loss</th><th>held-out accuracy</th></tr>"
            f'{rows}</table><p class="note">The linear head is a logistic regression solved '
            "to convergence for each C, strong to weak regularisation; the C with the lowest "
            "held-out log-loss is kept"
            + (
                f", and refitted at C={final:.3g}, the same penalty per image on the larger fit."
                if (final := selection.get("final_C")) is not None and final != chosen
                else "."
            )
            + "</p>"
        )
    elif selection.get("epochs"):
        lines.append(f"<p>Epochs chosen: {int(selection['epochs'])}.</p>")
    return "".join(lines)


def _curves_html(run: _Run, history: Sequence[dict[str, float]]) -> str:
    curves = _curves_uri(history, run.best_epoch, run.folder / "curves.png")
    selection = run.section("training").get("selection")
    chosen = _selection_html(selection) if isinstance(selection, Mapping) else ""
    if curves is None:
        if chosen:
            return chosen
        return '<p class="note">No training history recorded (history.csv).</p>'
    kept = next((r for r in history if int(r["epoch"]) == run.best_epoch), None)
    monitor = run.section("training").get("monitor", "val_loss")
    kept_text = (
        f"The model kept is the one of epoch {run.best_epoch} (dashed line), chosen by "
        f"{_e(monitor)}: validation accuracy {_pct(kept.get('val_accuracy'))}, loss "
        f"{_num(kept.get('val_loss'))}."
        if kept
        else ""
    )
    return (
        f'<img class="plot" src="{curves}" alt="accuracy and loss per epoch">'
        f'<p class="note">{kept_text}</p>{chosen}'
    )


def _results_html(run: _Run, evaluation: _Evaluation | None, data_note: str) -> tuple[str, str]:
    """Title and body of "how it did": evaluated now on DATA, else as recorded in training."""
    recorded = run.section("metrics")
    if evaluation is not None:
        split, metrics = evaluation.split, evaluation.metrics
        source = (
            f"Evaluated now on the <b>{_e(split)}</b> images of <code>{_e(evaluation.data)}</code>."
        )
    else:
        split = "test" if (recorded.get("test") or {}).get("n") else "val"
        metrics = recorded.get(split) or {}
        source = f"Recorded at training time on the <b>{split}</b> split."
    title = f"How it did ({split})"
    if not metrics.get("n"):
        return title, f'<p class="note">No evaluated images. {_note(data_note)}</p>'
    recorded_table = _recorded_metrics_table(recorded)
    if recorded_table and evaluation is not None:
        recorded_table = f"<h3>Recorded at training time</h3>{recorded_table}"
    body = (
        f"<p>{source} Accuracy <b>{_pct(metrics.get('accuracy'))}</b>, loss "
        f"{_num(metrics.get('loss'))}, macro F1 {_num(metrics.get('macro_f1'))}, "
        f"{metrics['n']} images.</p>"
        f"{'' if evaluation is not None else recorded_table}"
        '<div class="cols">'
        f"<div><h3>Confusion matrix</h3>{_confusion_html(metrics)}"
        '<p class="note">Rows are the true classes, columns the predictions; shading is the '
        "share of the row.</p></div>"
        f"<div><h3>Per class</h3>{_per_class_html(metrics)}</div></div>"
        f"{_reliability_html(metrics)}"
        f"{recorded_table if evaluation is not None else ''}"
    )
    return title, body


def _grids_html(run: _Run, evaluation: _Evaluation | None, data_note: str) -> str:
    """The wrong answers, most confident first, and the right answers it was least sure of.

    The most confident mistakes are the ones to look at first: a mislabelled image, a class that
    is really two, a shortcut the model learned. The least confident right answers show where
    the classes meet.
    """
    if evaluation is None:
        return _section("Mistakes", f'<p class="note">{_note(data_note)}</p>', "mistakes")
    classes = run.classes
    items = evaluation.items
    wrong = sorted((i for i in items if i.predicted != i.true), key=lambda i: -i.probability)
    right = sorted((i for i in items if i.predicted == i.true), key=lambda i: i.probability)
    where = f"{evaluation.split} images"

    def shown(n: int) -> str:
        return f"all {n}" if n <= GRID_LIMIT else f"the first {GRID_LIMIT} of {n}"

    wrong_body = (
        f'<p class="note">{len(wrong)} of {len(items)} {where} are wrong; showing '
        f"{shown(len(wrong))}, most confident mistake first. The percentage is the probability "
        f"given to the predicted class."
        + (
            f" Under the first {len(evaluation.explanations)}, class-activation maps (Grad-CAM): "
            "where the model saw its wrong answer, and where it saw the true class."
            if evaluation.explanations
            else ""
        )
        + f"</p>{_grid(wrong, classes, 'wrong', evaluation.explanations)}"
        if wrong
        else f'<p class="note">No mistakes on the {len(items)} {where}.</p>'
    )
    right_body = (
        f'<p class="note">{len(right)} {where} are right; showing {shown(len(right))}, least '
        f"confident first.</p>{_grid(right, classes, 'right')}"
        if right
        else f'<p class="note">None of the {where} is right.</p>'
    )
    return _section(f"Mistakes ({len(wrong)})", wrong_body, "mistakes") + _section(
        "Right, but least confident", right_body, "doubtful"
    )


def _skipped_html(run: _Run, evaluation: _Evaluation | None) -> tuple[str, str]:
    skipped: dict[str, str] = {}
    recorded = run.section("data").get("skipped") or []
    for row in [*recorded, *(evaluation.skipped if evaluation else [])]:
        skipped.setdefault(str(row.get("path")), str(row.get("reason")))
    title = f"Skipped files ({len(skipped)})"
    if not skipped:
        return title, '<p class="note">None: every file was read.</p>'
    rows = "".join(
        f"<tr><td><code>{_e(path)}</code></td><td>{_e(reason)}</td></tr>"
        for path, reason in list(skipped.items())[:SKIPPED_LIMIT]
    )
    more = (
        f'<p class="note">… and {len(skipped) - SKIPPED_LIMIT} more (see skipped.csv).</p>'
        if len(skipped) > SKIPPED_LIMIT
        else ""
    )
    return title, (
        f'<p class="note">{len(skipped)} file(s) could not be used; they were left out, which '
        "never stops a run.</p>"
        '<table class="skipped"><thead><tr><th>file</th><th>reason</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>{more}"
    )


# Nothing may be loaded from outside the file: the policy blocks it even if a future edit tries.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

# Records load errors and whether every image decoded on the <body>, so a headless browser's
# --dump-dom can check the page without a driver; it changes nothing a person sees.
_SCRIPT = """(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message || (e.target && (e.target.src || e.target.tagName)) || "error"));
  }, true);
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked " + e.blockedURI);
  });
  window.addEventListener("load", function () {
    var images = document.images, ok = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) ok++;
    }
    var d = document.body.dataset;
    d.imagesTotal = images.length;
    d.imagesOk = ok;
    d.errors = errors.length;
    d.errorList = errors.join(" | ");
    d.pageHeight = document.documentElement.scrollHeight;
  });
})();"""

_CSS = """
:root { --fg:#1f2328; --muted:#59636e; --bg:#f3f5f8; --card:#fff; --line:#dde2e8;
  --accent:#0969da; --good:#1a7f37; --bad:#cf222e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
header { background:#161b22; color:#f0f3f6; padding:22px 0 0; }
header .wrap, main { max-width:1180px; margin:0 auto; padding:0 28px; }
header h1 { margin:0; font-size:24px; font-weight:600; }
header p { margin:4px 0 14px; color:#9da7b3; font-size:13px; }
header code { color:#c9d1d9; }
nav { display:flex; gap:4px; flex-wrap:wrap; }
nav a { color:#c9d1d9; text-decoration:none; padding:8px 12px; font-size:14px;
  border-bottom:2px solid transparent; }
nav a:hover { border-bottom-color:#58a6ff; color:#fff; }
main { padding-top:8px; padding-bottom:40px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:20px 24px; margin:18px 0; box-shadow:0 1px 2px rgba(0,0,0,.04); }
h2 { font-size:19px; margin:0 0 14px; }
h3 { font-size:15px; margin:0 0 8px; color:var(--muted); font-weight:600; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
pre { background:var(--bg); border:1px solid var(--line); border-radius:8px; padding:12px 14px;
  margin:0; overflow:auto; line-height:1.55; white-space:pre-wrap; }
.note { color:var(--muted); font-size:14px; }
.warn { background:#fff8c5; border:1px solid #d4a72c; border-radius:6px; padding:8px 12px; }
.stats { display:grid; grid-template-columns:repeat(auto-fit,minmax(160px,1fr)); gap:12px;
  margin-bottom:20px; }
.stat { background:var(--bg); border-radius:8px; padding:12px 14px; }
.stat span { display:block; color:var(--muted); font-size:12px; text-transform:uppercase;
  letter-spacing:.04em; }
.stat b { display:block; font-size:26px; font-weight:600; line-height:1.25; }
.stat small { color:var(--muted); font-size:12px; }
.cols { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:24px;
  align-items:start; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:6px 16px; margin:0; }
dl.facts dt { color:var(--muted); }
dl.facts dd { margin:0; overflow-wrap:anywhere; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
table.num th, table.num td, table.skipped th, table.skipped td { padding:5px 12px;
  border-bottom:1px solid var(--line); }
table.num { margin-bottom:14px; }
table.num td { text-align:right; }
table.num th { text-align:left; font-weight:600; }
table.num thead th { color:var(--muted); font-size:13px; }
table.num tfoot th, table.num tfoot td { border-bottom:none; font-weight:600; }
td.bar { background:linear-gradient(to right, rgba(9,105,218,.16) calc(var(--v)*100%),
  transparent 0); }
table.cm { margin:4px 0 6px; }
table.cm td { min-width:52px; height:40px; text-align:center; border:1px solid #fff;
  font-weight:600; }
table.cm tbody th { text-align:right; padding-right:10px; font-weight:600; white-space:nowrap; }
table.cm thead th { font-weight:600; padding:4px; vertical-align:bottom; }
table.cm th.v span { writing-mode:vertical-rl; transform:rotate(180deg); white-space:nowrap; }
table.cm th.corner { color:var(--muted); font-weight:400; font-size:12px; text-align:right; }
table.skipped { width:100%; font-size:14px; }
table.skipped th { text-align:left; color:var(--muted); }
img.plot { max-width:100%; height:auto; display:block; }
.before-after { display:flex; align-items:center; gap:14px; flex-wrap:wrap; }
.before-after figure { margin:0; }
.before-after img { display:block; width:224px; height:224px; object-fit:contain;
  background:var(--bg); border:1px solid var(--line); border-radius:6px; }
.before-after figcaption { font-size:12px; color:var(--muted); width:224px; margin-top:6px; }
.arrow { font-size:28px; color:var(--muted); }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:12px; }
.tile { margin:0; border:1px solid var(--line); border-radius:8px; overflow:hidden;
  background:var(--card); }
.tile img { display:block; width:100%; height:140px; object-fit:contain; background:#eef1f4; }
.tile.wrong { border-top:3px solid var(--bad); }
.tile .cams { display:flex; gap:2px; }
.tile .cams figure { margin:0; flex:1; }
.tile .cams img { height:72px; }
.tile .cams figcaption { padding:2px 4px; font-size:11px; color:var(--muted); }
.tile.right { border-top:3px solid #d4a72c; }
.tile figcaption { padding:6px 8px 8px; font-size:13px; line-height:1.4; }
.tile .lbl { color:var(--muted); font-size:11px; text-transform:uppercase; }
.tile .p { float:right; font-weight:600; }
.tile .file { display:block; color:var(--muted); font-size:11px; overflow:hidden;
  text-overflow:ellipsis; white-space:nowrap; }
.bad { color:var(--bad); } .good { color:var(--good); }
footer { color:var(--muted); font-size:13px; text-align:center; padding:10px 0 30px; }
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="headstart {version}">
<title>{title}</title>
<style>{css}</style>
<script>{script}</script>
</head>
<body>
<header><div class="wrap"><h1>{title}</h1>
<p>Run folder <code>{run}</code> · written {written} by headstart {version}</p>
<nav>{nav}</nav></div></header>
<main>
{sections}
</main>
<footer>Rebuild this page with <code>headstart report RUN [DATA]</code>.</footer>
</body>
</html>
""".replace("{csp}", _CSP)
