"""``report.html``: one self-contained page that shows a person what a run did and how well.

People look at pictures before they read numbers: the curves, the confusion matrix and, above
all, the images the model got wrong. The report puts all of that on one page that opens from
disk, offline, years later: every image and plot is embedded as a ``data:`` URI, the CSS and the
few lines of script are inline, and a Content-Security-Policy forbids the page from loading
anything else, so a report cannot silently depend on the network.

The page's template, style and script are package files (``assets/report.html``, ``report.css``,
``report.js``), edited as what they are; this module fills the template with the sections of
:mod:`headstart.reporting._sections`, gathered by :mod:`headstart.reporting._gather`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from headstart import __version__
from headstart.errors import DataError
from headstart.reporting._gather import Evaluation, RunRecord, evaluate, read_history, resolve_data
from headstart.reporting._html import esc, section
from headstart.reporting._sections import (
    comparison_html,
    curves_html,
    glance_html,
    grids_html,
    preprocessing_html,
    results_html,
    skipped_html,
    unknowns_html,
)
from headstart.runs import atomic_write, read_config

if TYPE_CHECKING:
    from headstart.data import CsvColumns
    from headstart.estimator import ImageClassifier

__all__ = ["REPORT_NAME", "write_report"]

REPORT_NAME = "report.html"


def _asset(name: str) -> str:
    return resources.files("headstart.reporting").joinpath("assets", name).read_text("utf-8")


def write_report(
    run: str | Path,
    *,
    data: str | Path | None = None,
    clf: ImageClassifier | None = None,
    quiet: bool = True,
    columns: CsvColumns | None = None,
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
        columns: The columns of a CSV ``data`` (``load_dataset``'s keywords); the recorded
            training CSV is read with the columns recorded in the run.

    Returns:
        The path of the report.

    Raises:
        RunFolderError: ``run`` is not a headstart run folder.
        DataError: ``data`` was given but cannot be read as labelled images for this model. (The
            recorded training data is only used if it reads: a moved or changed folder must not
            stop a report, so the report says why it has no image grids instead.)
    """
    folder = Path(run)
    hs = read_config(folder)["headstart"]
    data_path, data_note = resolve_data(hs, data)
    evaluation: Evaluation | None = None
    if data_path is not None:
        if clf is None:
            from headstart.estimator import ImageClassifier

            clf = ImageClassifier.load(folder, quiet=quiet)
        try:
            evaluation = evaluate(clf, data_path, columns)
        except DataError as exc:
            if data is not None:
                raise
            data_note = (
                f"The training data recorded in the run ({data_path}) could not be read again: "
                f"{exc}"
            )
    page = _render(folder, hs, read_history(folder), evaluation, data_note)
    out = folder / REPORT_NAME
    # A file name that is not UTF-8 on disk reaches the page as lone surrogates (its bytes,
    # escaped); shown as U+FFFD, the page stays valid UTF-8 instead of the run failing to write.
    atomic_write(out, page.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode())
    return out


def _render(
    folder: Path,
    hs: Mapping[str, Any],
    history: Sequence[dict[str, float]],
    evaluation: Evaluation | None,
    data_note: str,
) -> str:
    run = RunRecord(folder, hs)
    results_title, results_body = results_html(run, evaluation, data_note)
    skipped_title, skipped_body = skipped_html(run, evaluation)
    compared = comparison_html(run)  # None for a run trained on one named backbone
    unknowns = unknowns_html(run, evaluation, data_note)  # "" for a run without typicality
    sections = [
        section("The run at a glance", glance_html(run), "glance"),
        *([section("Which backbone", compared, "compare")] if compared else []),
        section("Preprocessing", preprocessing_html(run, evaluation, data_note), "preprocessing"),
        section("Training: how the head was chosen", curves_html(run, history), "curves"),
        section(results_title, results_body, "results"),
        grids_html(run, evaluation, data_note),
        *([unknowns] if unknowns else []),
        section(skipped_title, skipped_body, "skipped"),
    ]
    links = [
        ("glance", "At a glance"),
        *([("compare", "Backbones")] if compared else []),
        ("preprocessing", "Preprocessing"),
        ("curves", "Curves"),
        ("results", "Results"),
        ("mistakes", "Mistakes"),
        *([("unknowns", "Unknowns")] if unknowns else []),
        ("skipped", "Skipped"),
    ]
    nav = "".join(f'<a href="#{anchor}">{label}</a>' for anchor, label in links)
    return Template(_asset("report.html")).substitute(
        title=esc(f"headstart report: {folder.resolve().name}"),
        css=_asset("report.css"),
        script=_asset("report.js"),
        run=esc(folder.resolve()),
        written=esc(time.strftime("%Y-%m-%d %H:%M")),
        version=esc(__version__),
        nav=nav,
        sections="\n".join(sections),
    )
