"""The report's sections, each a card of HTML built from the run's record and the evaluation.

A section says what a person can check with their own eyes (the images, the matrix, the chosen
settings) before the numbers, and says why a part is missing (no data, no history) rather than
leaving a gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from headstart.errors import HeadstartError
from headstart.reporting._gather import Evaluation, RunRecord
from headstart.reporting._html import (
    GRID_LIMIT,
    confusion_html,
    counts_table,
    definition_list,
    duration,
    esc,
    grid,
    note,
    num,
    pct,
    per_class_html,
    recorded_metrics_table,
    reliability_html,
    section,
    stat,
)
from headstart.reporting._images import (
    curves_uri,
    data_uri,
    preprocess_preview,
    typicality_uri,
)
from headstart.reporting._label_sets import label_grids_html, label_results_html
from headstart.reporting.summary import (
    describe_strategy,
    format_number,
    format_settings,
    has_typicality,
    solved_by_lbfgs,
)

__all__ = [
    "comparison_html",
    "curves_html",
    "glance_html",
    "grids_html",
    "preprocessing_html",
    "results_html",
    "skipped_html",
    "unknowns_html",
]

SKIPPED_LIMIT = 200


def _reasons_html(hs: Mapping[str, Any]) -> str:
    """Why this strategy: auto's reasons as a list (the scores of its options nested under the
    line that introduces them), else the one sentence the run recorded."""
    raw = hs.get("strategy")
    reason: object = raw.get("reason") if isinstance(raw, Mapping) else None
    reason = reason or hs.get("strategy_reason")
    advice = hs.get("advice")
    reasons = advice.get("reasons") if isinstance(advice, Mapping) else None
    if not isinstance(reasons, list) or not reasons:
        if isinstance(reason, (list, tuple)):
            reason = " ".join(str(r) for r in reason)
        return esc(reason) if reason else ""
    items: list[tuple[str, list[str]]] = []
    for line in (str(r) for r in reasons):
        if line.startswith("  ") and items:
            items[-1][1].append(line.strip())
        else:
            items.append((line.strip(), []))
    body = "".join(
        f"<li>{esc(text)}"
        + (f"<ul>{''.join(f'<li>{esc(s)}</li>' for s in nested)}</ul>" if nested else "")
        + "</li>"
        for text, nested in items
    )
    lead = str(reason).split(":", 1)[0] if reason else "chosen by --strategy auto"
    return f'{esc(lead)}:<ul class="reasons">{body}</ul>'


def balanced_stat(metrics: Mapping[str, Any]) -> str:
    """Balanced accuracy and macro-F1: every class counted alike, which accuracy hides."""
    if metrics.get("balanced_accuracy") is None:
        return ""
    return stat(
        "balanced accuracy",
        pct(metrics["balanced_accuracy"]),
        f"macro-F1 {num(metrics.get('macro_f1'))}",
    )


def glance_html(run: RunRecord) -> str:
    backbone, training, data = run.section("backbone"), run.section("training"), run.section("data")
    recorded = run.section("metrics")
    counts = data.get("counts") or {}
    test, val = recorded.get("test") or {}, recorded.get("val") or {}
    # Multi-label data records its images apart: its counts are positives per label.
    images = data.get("images") or {s: sum(int(v) for v in c.values()) for s, c in counts.items()}
    n_images = sum(images.values())
    stats = [
        stat("test mAP", num(test.get("mAP")), f"{test['n']} images")
        if test.get("n") and test.get("multi_label")
        else stat("test accuracy", pct(test.get("accuracy")), f"{test['n']} images")
        if test.get("n")
        else "",
        stat("validation accuracy", pct(val.get("accuracy")), f"{val['n']} images")
        if val.get("n")
        else "",
        balanced_stat(test if test.get("n") else val),
        stat("classes", str(len(run.classes))),
        stat("images", str(n_images), " / ".join(f"{s} {n}" for s, n in images.items())),
        ""
        if solved_by_lbfgs(run.hs)  # no epochs: one L-BFGS solve per setting of C
        else stat(
            "kept epoch",
            f"{run.best_epoch} of {training.get('epochs_run', '?')}" if run.best_epoch else "–",
            f"by {training['monitor']}" if training.get("monitor") else "",
        ),
        stat("training time", duration(training.get("seconds"))),
    ]
    why = _reasons_html(run.hs)
    model = backbone.get("model") or backbone.get("architecture") or "?"
    head = run.section("head")
    split_spec = data.get("split_spec")
    facts = [
        (
            "backbone",
            f"<code>{esc(model)}</code> ({esc(backbone.get('family', '?'))}, "
            f"architecture <code>{esc(backbone.get('architecture', '?'))}</code>)",
        ),
        ("weights", esc(backbone.get("weights", "?"))),
        ("weights id", f"<code>{esc(backbone['weights_id'])}</code>")
        if backbone.get("weights_id")
        else ("", ""),
        ("strategy", f"<b>{esc(describe_strategy(run.hs))}</b>" + (f"<br>{why}" if why else "")),
        (
            "head",
            esc(
                ", ".join(
                    f"{k} {format_number(v)}" for k, v in head.items() if not isinstance(v, dict)
                )
            ),
        ),
        ("training", esc(format_settings(run.hs))),
        (
            "data",
            f"<code>{esc(data.get('root', '?'))}</code> ({esc(data.get('layout', '?'))})"
            + (f"<br>split by headstart: {esc(split_spec)}" if split_spec else ""),
        ),
        ("versions", esc(", ".join(f"{k} {v}" for k, v in run.section("versions").items()))),
    ]
    return (
        f'<div class="stats">{"".join(stats)}</div><div class="cols">'
        f"<div>{definition_list(facts)}</div>"
        f"<div><h3>Images per split and class</h3>{counts_table(run.classes, counts)}</div></div>"
    )


def preprocessing_html(run: RunRecord, evaluation: Evaluation | None, data_note: str) -> str:
    from headstart.preprocess import Preprocess

    try:
        preprocess = Preprocess.from_dict(run.hs.get("preprocess") or {})
    except HeadstartError as exc:
        return f'<p class="warn">The run\'s preprocessing cannot be read: {esc(exc)}</p>'
    preview = None
    if evaluation is not None and evaluation.items:
        preview = preprocess_preview(evaluation.items[0].path, preprocess)
    if preview is None:
        picture = f'<p class="note">{note(data_note or "No image to show it on.")}</p>'
    else:
        w, h = preview.original_size
        shape = "×".join(str(s) for s in preview.shape)
        picture = (
            '<div class="before-after">'
            f'<figure><img src="{preview.original}" alt="original image">'
            f"<figcaption><b>original</b> {w}×{h} px<br>{esc(preview.name)}</figcaption>"
            '</figure><div class="arrow">→</div>'
            f'<figure><img src="{preview.received}" alt="what the backbone receives">'
            f"<figcaption><b>what the backbone receives</b> {shape} tensor, values "
            f"{preview.low:.2f} to {preview.high:.2f}<br>shown with std, mean, scale and "
            "channel order undone</figcaption></figure></div>"
        )
    warn = (
        f'<p class="warn">Overridden by the user: {esc(", ".join(preprocess.overrides))}. '
        "The weights were trained with other values.</p>"
        if preprocess.overrides
        else ""
    )
    return (
        '<p class="note">Read from the weights, saved with the model and used unchanged by '
        f"evaluate and predict.</p>{warn}"
        f'<div class="cols"><pre>{esc(preprocess.describe())}</pre><div>{picture}</div></div>'
    )


def _selection_html(selection: Mapping[str, Any]) -> str:
    """How the head's setting was chosen, on which images, and which images the final fit used."""
    fit = selection.get("fit_images") or {}
    fit_text = " + ".join(f"{n} {esc(split)}" for split, n in fit.items())
    held = (
        f"held-out accuracy {pct(selection.get('val_accuracy'))}, log-loss "
        f"{num(selection.get('val_loss'))}"
        if selection.get("val_loss") is not None
        else "no held-out figures"
    )
    refit = "val" in fit
    lines = [
        f"<p>Chosen on {esc(selection.get('protocol_text', selection.get('protocol', '?')))}: "
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
            f"<td>{num(row.get('log_loss'))}</td><td>{pct(row.get('accuracy'))}</td></tr>"
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
        again = (
            "; the run was then repeated from the same start on train + val for as many"
            if selection.get("end_to_end") and refit
            else ""
        )
        lines.append(f"<p>Epochs chosen: {int(selection['epochs'])}{again}.</p>")
    return "".join(lines)


def curves_html(run: RunRecord, history: Sequence[dict[str, float]]) -> str:
    curves = curves_uri(history, run.best_epoch, run.folder / "curves.png")
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
        f"{esc(monitor)}: validation accuracy {pct(kept.get('val_accuracy'))}, loss "
        f"{num(kept.get('val_loss'))}."
        if kept
        else ""
    )
    return (
        f'<img class="plot" src="{curves}" alt="accuracy and loss per epoch">'
        f'<p class="note">{kept_text}</p>{chosen}'
    )


def results_html(run: RunRecord, evaluation: Evaluation | None, data_note: str) -> tuple[str, str]:
    """Title and body of "how it did": evaluated now on DATA, else as recorded in training."""
    recorded = run.section("metrics")
    if evaluation is not None:
        split, metrics = evaluation.split, evaluation.metrics
        source = (
            f"Evaluated now on the <b>{esc(split)}</b> images of "
            f"<code>{esc(evaluation.data)}</code>."
        )
    else:
        split = "test" if (recorded.get("test") or {}).get("n") else "val"
        metrics = recorded.get(split) or {}
        source = f"Recorded at training time on the <b>{split}</b> split."
    title = f"How it did ({split})"
    if not metrics.get("n"):
        return title, f'<p class="note">No evaluated images. {note(data_note)}</p>'
    if metrics.get("multi_label"):
        return title, label_results_html(metrics, source, evaluation)
    recorded_table = recorded_metrics_table(recorded)
    if recorded_table and evaluation is not None:
        recorded_table = f"<h3>Recorded at training time</h3>{recorded_table}"
    body = (
        f"<p>{source} Accuracy <b>{pct(metrics.get('accuracy'))}</b>, loss "
        f"{num(metrics.get('loss'))}, macro F1 {num(metrics.get('macro_f1'))}, "
        f"{metrics['n']} images.</p>"
        f"{'' if evaluation is not None else recorded_table}"
        # Side by side while both fit, stacked when not; a wide matrix scrolls in its own box.
        '<div class="flow"><div class="box" id="confusion">'
        f'<h3>Confusion matrix</h3><div class="scroll">{confusion_html(metrics)}</div>'
        '<p class="note">Rows are the true classes, columns the predictions; shading is the '
        "share of the row.</p></div>"
        f'<div class="box" id="per-class"><h3>Per class</h3>{per_class_html(metrics)}</div></div>'
        f"{reliability_html(metrics)}"
        f"{recorded_table if evaluation is not None else ''}"
    )
    return title, body


def grids_html(run: RunRecord, evaluation: Evaluation | None, data_note: str) -> str:
    """The wrong answers, most confident first, and the right answers it was least sure of.

    The most confident mistakes are the ones to look at first: a mislabelled image, a class that
    is really two, a shortcut the model learned. The least confident right answers show where
    the classes meet.
    """
    if run.hs.get("multi_label"):
        return label_grids_html(evaluation, data_note)
    if evaluation is None:
        return section("Mistakes", f'<p class="note">{note(data_note)}</p>', "mistakes")
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
        + f"</p>{grid(wrong, classes, 'wrong', evaluation.explanations)}"
        if wrong
        else f'<p class="note">No mistakes on the {len(items)} {where}.</p>'
    )
    right_body = (
        f'<p class="note">{len(right)} {where} are right; showing {shown(len(right))}, least '
        f"confident first.</p>{grid(right, classes, 'right')}"
        if right
        else f'<p class="note">None of the {where} is right.</p>'
    )
    return section(f"Mistakes ({len(wrong)})", wrong_body, "mistakes") + section(
        "Right, but least confident", right_body, "doubtful"
    )


def skipped_html(run: RunRecord, evaluation: Evaluation | None) -> tuple[str, str]:
    skipped: dict[str, str] = {}
    recorded = run.section("data").get("skipped") or []
    for row in [*recorded, *(evaluation.skipped if evaluation else [])]:
        skipped.setdefault(str(row.get("path")), str(row.get("reason")))
    title = f"Skipped files ({len(skipped)})"
    if not skipped:
        return title, '<p class="note">None: every file was read.</p>'
    rows = "".join(
        f"<tr><td><code>{esc(path)}</code></td><td>{esc(reason)}</td></tr>"
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


def unknowns_html(run: RunRecord, evaluation: Evaluation | None, data_note: str) -> str:
    """ "Images of none of the classes": how many test images the run's typicality flags, how
    typicality spreads over them, and the flagged ones, most unusual first; "" for a run without
    a typicality score, whose page stays as it was.

    Known images spread evenly over [0, 1] by construction, so the histogram says at a glance
    whether the evaluated images look like the ones the scale was set on; the flagged images are
    where to look for another domain, a broken file or a class nobody labelled.
    """
    if not has_typicality(run.hs):
        return ""
    unknowns = run.section("unknowns")
    recorded = float(unknowns.get("threshold", 0.05))
    intro = (
        "<p>Typicality: the share of held-out images of the classes (train and validation, "
        f"never test; {esc(unknowns.get('heldout_images', '?'))} images) that are less typical "
        f"than an image, by the <code>{esc(unknowns.get('score', '?'))}</code> score. Images "
        "like the training ones spread evenly over [0, 1]; below the threshold "
        f"<b>{recorded:g}</b> an image is flagged <code>unknown</code>, which about "
        f"{pct(recorded)} of images like the training ones are too.</p>"
    )
    title = "Images of none of the classes"
    threshold = evaluation.unknown_threshold if evaluation is not None else None
    if evaluation is None or threshold is None:
        test = run.section("metrics").get("test") or {}
        share = test.get("unknown_share")
        known = (
            f"<p>Recorded at training time: <b>{pct(share)}</b> of the {test.get('n', '?')} test "
            "images flagged unknown.</p>"
            if isinstance(share, (int, float))
            else ""
        )
        return section(title, f'{intro}{known}<p class="note">{note(data_note)}</p>', "unknowns")
    scored = [(i.typicality, i) for i in evaluation.items if i.typicality is not None]
    items = [i for _, i in scored]
    flagged = [i for t, i in sorted(scored, key=lambda pair: pair[0]) if t < threshold]
    where = f"{evaluation.split} images"
    shown = f"all {len(flagged)}" if len(flagged) <= GRID_LIMIT else f"the first {GRID_LIMIT}"
    histogram = (
        f'<img class="plot" src="{typicality_uri([t for t, _ in scored], threshold)}" '
        f'alt="histogram of the typicality of the {esc(where)}">'
        if items
        else ""
    )
    grid_body = (
        f'<p class="note">Showing {shown} of them, most unusual (lowest typicality) first, with '
        "the class the model predicts for each and its probability; the number in the corner "
        f"is the typicality.</p>{grid(flagged, run.classes, 'unknown')}"
        if flagged
        else f'<p class="note">None of the {esc(where)} is flagged.</p>'
    )
    body = (
        f"{intro}<p><b>{len(flagged)} of {len(items)}</b> {esc(where)} "
        f"({pct(len(flagged) / len(items) if items else None)}) are flagged unknown at the "
        f"threshold {threshold:g}.</p>{histogram}{grid_body}"
    )
    return section(f"{title} ({len(flagged)} flagged)", body, "unknowns")


def comparison_html(run: RunRecord) -> str | None:
    """The backbones ``train --model A,B,C`` compared before training (``compare.json``): the
    table, the accuracy-against-speed picture, and which one was trained on; None without one
    (or with one that cannot be read: a report never fails on it)."""
    import json

    try:
        record = json.loads((run.folder / "compare.json").read_text())
        scores = [*record["scores"], *([record["pair"]] if record.get("pair") else [])]
        recommended = str(record["recommended"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    rows = []
    skipped = []
    for s in scores:
        if not isinstance(s, Mapping):
            continue
        if str(s.get("note", "")).startswith("skipped"):
            skipped.append(f"{s.get('model')} ({s.get('note')})")
            continue
        size = s.get("input_size")
        cells = [
            f"<code>{esc(s.get('model'))}</code>",
            pct(s.get("accuracy")),
            num(s.get("log_loss"), 4),
            num(s.get("images_per_second"), 1),
            esc(s.get("features", "–")),
            f"{s['parameters'] / 1e6:.1f}M" if isinstance(s.get("parameters"), int) else "–",
            f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else "–",
        ]
        if s.get("model") == recommended:
            cells[0] = f"<b>{cells[0]}</b> (trained on)"
        rows.append(f"<tr><th>{cells[0]}</th>{''.join(f'<td>{c}</td>' for c in cells[1:])}</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "backbone",
            "held-out accuracy",
            "log-loss",
            "images/s",
            "features",
            "params",
            "input",
        )
    )
    picture = run.folder / "compare.png"
    img = (
        f'<img class="plot" src="{data_uri(picture.read_bytes(), "image/png")}" '
        'alt="held-out accuracy against extraction images per second">'
        if picture.is_file()
        else ""
    )
    text = (
        f"Trained on <code>{esc(recommended)}</code>: {esc(record.get('reason', ''))}. Held-out "
        f"figures of the linear head by {esc(record.get('protocol', '?'))}; images per second of "
        "extraction on the machine that trained."
    )
    if skipped:
        text += " Not measured: " + esc("; ".join(skipped)) + "."
    return (
        f'<p class="note">{text}</p><table class="num"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{img}"
    )
