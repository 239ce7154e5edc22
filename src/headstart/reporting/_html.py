"""Small HTML pieces of the report: escaped text, numbers, stat boxes and the tables.

Each function returns a fragment of markup from plain values; none reads a file or a model, so
they can be checked on made-up numbers.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headstart._text import format_duration
from headstart.reporting._images import THUMB_SIDE, jpeg_uri, thumbnail

if TYPE_CHECKING:
    from headstart.reporting._gather import Item

__all__ = [
    "CM_MAX_CLASSES",
    "GRID_LIMIT",
    "confusion_html",
    "counts_table",
    "definition_list",
    "duration",
    "esc",
    "grid",
    "note",
    "num",
    "pct",
    "per_class_html",
    "recorded_metrics_table",
    "reliability_html",
    "section",
    "stat",
]

GRID_LIMIT = 32  # images per grid: enough to see a pattern, few enough to keep the file small
CM_MAX_CLASSES = 40  # beyond this a confusion matrix is unreadable: list the worst pairs
CONFUSED_PAIRS = 30


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """Escaped text, with `commands` in backticks shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def pct(value: object) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "–"
    return f"{100 * value:.1f}%"


def num(value: object, digits: int = 3) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "–"
    return f"{value:.{digits}f}"


def duration(seconds: object) -> str:
    """A recorded duration as every headstart message writes one; "–" where none was recorded."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return "–"
    return format_duration(seconds)


def stat(label: str, value: str, detail: str = "") -> str:
    small = f"<small>{esc(detail)}</small>" if detail else ""
    return f'<div class="stat"><span>{esc(label)}</span><b>{esc(value)}</b>{small}</div>'


def definition_list(rows: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows if v)
    return f'<dl class="facts">{items}</dl>'


def section(title: str, body: str, anchor: str) -> str:
    return f'<section class="card" id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def counts_table(classes: Sequence[str], counts: Mapping[str, Mapping[str, int]]) -> str:
    splits = [s for s in ("train", "val", "test") if s in counts] + [
        s for s in counts if s not in ("train", "val", "test")
    ]
    if not splits:
        return '<p class="note">No image counts recorded.</p>'
    head = "".join(f"<th>{esc(s)}</th>" for s in splits) + "<th>total</th>"
    body = []
    for name in classes:
        values = [int(counts[s].get(name, 0)) for s in splits]
        cells = "".join(f"<td>{v}</td>" for v in values)
        body.append(f"<tr><th>{esc(name)}</th>{cells}<td>{sum(values)}</td></tr>")
    totals = [sum(int(v) for v in counts[s].values()) for s in splits]
    foot = "".join(f"<td>{v}</td>" for v in totals) + f"<td>{sum(totals)}</td>"
    return (
        f'<table class="num"><thead><tr><th>class</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody><tfoot><tr><th>all</th>{foot}</tr></tfoot></table>"
    )


def confusion_html(metrics: Mapping[str, Any]) -> str:
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
    head = "".join(f"<th{head_class}><span>{esc(c)}</span></th>" for c in classes)
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
                f'title="{esc(title)}">{count if count else ""}</td>'
            )
        body.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
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
        f"<tr><th>{esc(classes[i])}</th><th>{esc(classes[j])}</th><td>{count}</td>"
        f"<td>{pct(count / (sum(cm[i]) or 1))}</td></tr>"
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


def per_class_html(metrics: Mapping[str, Any]) -> str:
    per_class = metrics.get("per_class") or {}
    rows = []
    for name in metrics.get("classes") or []:
        row = per_class.get(name) or {}
        rows.append(
            f"<tr><th>{esc(name)}</th>{_bar_cell(row.get('precision'))}"
            f"{_bar_cell(row.get('recall'))}{_bar_cell(row.get('f1'))}"
            f"<td>{esc(row.get('support', '–'))}</td></tr>"
        )
    return (
        '<table class="num"><thead><tr><th>class</th><th>precision</th><th>recall</th>'
        f"<th>F1</th><th>support</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def recorded_metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if m.get("n"):
            rows.append(
                f"<tr><th>{split}</th><td>{pct(m.get('accuracy'))}</td>"
                f"<td>{num(m.get('loss'))}</td><td>{num(m.get('macro_f1'))}</td>"
                f"<td>{m['n']}</td></tr>"
            )
    if not rows:
        return ""
    return (
        '<table class="num"><thead><tr><th>split</th><th>accuracy</th><th>loss</th>'
        f"<th>macro F1</th><th>images</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def grid(
    items: Sequence[Item],
    classes: Sequence[str],
    kind: str,
    explanations: Mapping[Path, tuple[str, str, str]] | None = None,
) -> str:
    """Thumbnails of ``items`` (the first :data:`GRID_LIMIT`) with what the model said of each.

    ``kind``: ``"wrong"`` (true and predicted class, the probability), ``"right"`` (the class,
    the probability) or ``"unknown"`` (the predicted class and its probability, the true class,
    and the typicality in the corner, where the others show the probability).
    """
    tiles = []
    for item in items[:GRID_LIMIT]:
        thumb = thumbnail(item.path, THUMB_SIDE)
        if thumb is None:
            continue
        true, predicted = classes[item.true], classes[item.predicted]
        if kind == "wrong":
            verdict = (
                f'<span class="lbl">true</span> {esc(true)}<br><span class="lbl">predicted</span> '
                f'<b class="bad">{esc(predicted)}</b>'
            )
        elif kind == "unknown":
            verdict = (
                f'<span class="lbl">predicted</span> <b>{esc(predicted)}</b> '
                f"{100 * item.probability:.1f}%<br>"
                f'<span class="lbl">true</span> {esc(true)}'
            )
        else:
            verdict = f'<span class="lbl">class</span> <b class="good">{esc(true)}</b>'
        corner = (
            f'<span class="p" title="typicality">{num(item.typicality)}</span>'
            if kind == "unknown"
            else f'<span class="p">{100 * item.probability:.1f}%</span>'
        )
        data = (
            f'data-typicality="{item.typicality:.6f}"'
            if kind == "unknown" and item.typicality is not None
            else f'data-probability="{item.probability:.6f}"'
        )
        cams = (explanations or {}).get(item.path)
        maps = (
            f'<div class="cams" title="Grad-CAM on {esc(cams[2])}: where the evidence for each '
            f'class is"><figure><img src="{cams[0]}" alt="where it saw {esc(predicted)}">'
            f"<figcaption>looked for {esc(predicted)}</figcaption></figure>"
            f'<figure><img src="{cams[1]}" alt="where it saw {esc(true)}">'
            f"<figcaption>looked for {esc(true)}</figcaption></figure></div>"
            if cams
            else ""
        )
        tiles.append(
            f'<figure class="tile {kind}" {data} '
            f'title="{esc(item.path)}"><img src="{jpeg_uri(thumb)}" alt="{esc(item.path.name)}" '
            f'width="{thumb.width}" height="{thumb.height}">{maps}<figcaption>{verdict}'
            f"{corner}"
            f'<span class="file">{esc(item.path.name)}</span></figcaption></figure>'
        )
    return f'<div class="grid">{"".join(tiles)}</div>'


def reliability_html(metrics: Mapping[str, Any]) -> str:
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
        f"calibration error {num(rel['ece_before'])}; blue: with the temperature "
        f"{rel['temperature']:.3g} fitted on held-out logits at training time, "
        f"{num(rel['ece_after'])}.{test}</p>"
    )
