"""report.html: what it shows, that it needs nothing but itself, and that a browser renders it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import DataError, RunFolderError
from headstart.preprocess import Preprocess
from headstart.reporting import write_report
from headstart.reporting._gather import EXPLAIN_LIMIT
from headstart.reporting._html import GRID_LIMIT
from headstart.reporting._images import tensor_to_image as _tensor_to_image
from tests._chromium import without_chromium
from tests.conftest import write_colour_dataset

REPO = Path(__file__).resolve().parents[1]
# red and crimson are the same colour: the model cannot tell them apart, so there ARE mistakes.
CLASSES = {"red": (200, 40, 40), "crimson": (200, 40, 40), "blue": (40, 60, 200)}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ImageClassifier]:
    root = tmp_path_factory.mktemp("report")
    data = write_colour_dataset(root / "data", {"train": 10, "val": 4, "test": 6}, classes=CLASSES)
    (data / "train" / "red" / "empty.jpg").write_bytes(b"")
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        head="mlp",
        epochs=5,
        lr=0.01,
        num_workers=0,
        quiet=True,
        cache_dir=root / "cache",
    ).fit(data)
    return clf.save(root / "run"), data, clf


@pytest.fixture(scope="module")
def report(trained: tuple[Path, Path, ImageClassifier]) -> str:
    run, _, clf = trained
    path = write_report(run, clf=clf)
    assert path == run / "report.html"
    return path.read_text(encoding="utf-8")


def _tile_probabilities(page: str, kind: str) -> list[float]:
    return [
        float(p) for p in re.findall(rf'class="tile {kind}" data-probability="([0-9.]+)"', page)
    ]


def test_report_shows_run_data_preprocessing_curves_metrics_and_skipped_files(
    trained, report
) -> None:
    run, _, clf = trained
    for anchor in ("glance", "preprocessing", "curves", "results", "mistakes", "skipped"):
        assert f'id="{anchor}"' in report
    assert "test_resnet" in report and "features" in report
    for line in clf.preprocess_.describe().splitlines():  # the saved preprocessing, verbatim
        assert line.split(":")[0] in report
    assert "what the backbone receives" in report and "3×160×160 tensor" in report
    assert 'alt="accuracy and loss per epoch"' in report
    assert 'class="cm"' in report and "precision" in report
    assert "empty.jpg" in report and "empty file (0 bytes)" in report
    assert not list(run.glob(".report.html.*"))  # written atomically: no temp file left


def test_mistakes_grid_shows_each_wrong_test_image_most_confident_first(trained, report) -> None:
    _, data, clf = trained
    metrics = clf.evaluate(data)
    cm = np.array(metrics["confusion_matrix"])
    wrong, right = int(cm.sum() - np.trace(cm)), int(np.trace(cm))
    assert wrong > 0 and right > 0  # the task is imperfect on purpose

    shown_wrong = _tile_probabilities(report, "wrong")
    assert len(shown_wrong) == min(wrong, GRID_LIMIT)
    assert shown_wrong == sorted(shown_wrong, reverse=True)
    assert f"{wrong} of {metrics['n']} test images are wrong" in report

    shown_right = _tile_probabilities(report, "right")
    assert len(shown_right) == min(right, GRID_LIMIT)
    assert shown_right == sorted(shown_right)


def test_report_loads_nothing_from_outside_the_file(report) -> None:
    sources = re.findall(r'\ssrc="([^"]*)"', report)
    assert sources and all(s.startswith("data:image/") for s in sources)
    assert all(h.startswith("#") for h in re.findall(r'\shref="([^"]*)"', report))
    assert "<link" not in report and "url(" not in report and "@import" not in report
    assert "default-src 'none'; img-src data:" in report  # the browser enforces it, too


def test_report_without_the_data_renders_from_the_run_folder_and_asks_for_data(
    trained, tmp_path
) -> None:
    run, _, _ = trained
    copy = Path(shutil.copytree(run, tmp_path / "moved-run"))
    config = json.loads((copy / "config.json").read_text())
    config["headstart"]["data"]["root"] = str(tmp_path / "gone")
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "model.safetensors").unlink()  # proves the model is not even loaded

    page = write_report(copy).read_text(encoding="utf-8")

    assert f"The training data is no longer at {tmp_path / 'gone'}" in page
    assert "headstart report RUN DATA" in page
    assert "Recorded at training time on the <b>test</b> split" in page
    assert 'class="cm"' in page and 'alt="accuracy and loss per epoch"' in page
    assert 'class="tile' not in page


def test_data_given_explicitly_that_cannot_be_read_raises_data_error(trained, tmp_path) -> None:
    run, _, clf = trained
    with pytest.raises(DataError, match="does not exist"):
        write_report(run, data=tmp_path / "nowhere", clf=clf)


def test_a_folder_that_is_not_a_run_raises_run_folder_error(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a headstart run folder"):
        write_report(tmp_path)


@pytest.mark.parametrize(
    "preprocess",
    [
        Preprocess(input_size=(32, 32), resize=32),  # timm/torch: 0..1, ImageNet mean/std
        Preprocess(  # Keras "caffe": BGR, 0..255, mean subtracted, no std
            input_size=(32, 32),
            resize=32,
            scale=1.0,
            mean=(103.939, 116.779, 123.68),
            std=(1.0, 1.0, 1.0),
            channel_order="BGR",
        ),
    ],
    ids=["torch", "caffe"],
)
def test_tensor_shown_as_image_undoes_the_preprocessing_exactly(preprocess) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    shown = _tensor_to_image(preprocess(img), preprocess)
    diff = np.abs(np.asarray(shown, np.int16) - np.asarray(img, np.int16))
    assert diff.max() <= 1


def test_report_command_prints_the_report_path(trained, capsys) -> None:
    run, data, _ = trained
    capsys.readouterr()
    assert main(["report", str(run), str(data), "--workers", "0", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")


def test_report_of_a_missing_run_exits_2_with_one_line(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "no-run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# ------------------------------------------------------------------------------ a real browser
def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium; installed on the spot (best effort) if missing, else the test skips
    (or fails, under CI=true)."""
    found = _find_chromium()
    if found is None:
        script = REPO / "scripts" / "ensure_chromium.sh"
        if script.is_file():
            subprocess.run(["sh", str(script)], check=False, timeout=900)
        found = _find_chromium()
    if found is None:
        without_chromium(
            "no chromium, and scripts/ensure_chromium.sh could not install it "
            "(needs root, apt-get and the Debian mirror)"
        )
    return found


def test_most_confident_mistakes_show_where_the_model_saw_each_class(trained, report) -> None:
    wrong = _tile_probabilities(report, "wrong")
    maps = report.count('class="cams"')
    assert maps == min(len(wrong), EXPLAIN_LIMIT) > 0
    assert report.count("looked for ") == 2 * maps  # the wrong answer and the true class
    assert "Grad-CAM on layer4" in report


def _browse(chromium: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_renders_in_chromium_without_errors_and_every_image_decodes(
    trained, report, chromium, tmp_path
) -> None:
    run, _, _ = trained
    url = (run / "report.html").resolve().as_uri()
    loaded = _browse(
        chromium,
        tmp_path / "profile",
        url,
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--window-size=1280,2000",
        "--dump-dom",
    )
    body = re.search(r"<body([^>]*)>", loaded.stdout)
    assert body, f"chromium printed no page (rc {loaded.returncode}): {loaded.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    console = [line for line in loaded.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert attrs.get("errors") == "0", attrs.get("error-list")
    # preview x2, curves, tiles, two class-activation maps per explained mistake
    assert int(attrs["images-total"]) >= 3 + _tile_count(report) + 2 * report.count('"cams"')
    assert attrs["images-ok"] == attrs["images-total"]

    shot = tmp_path / "report.png"
    height = min(int(attrs.get("page-height", 2000)), 12000)
    _browse(
        chromium,
        tmp_path / "profile",
        url,
        "--hide-scrollbars",
        f"--window-size=1280,{height}",
        f"--screenshot={shot}",
    )
    with Image.open(shot) as picture:
        assert picture.size == (1280, height)
    keep = REPO / "tmp" / "report-screenshot.png"  # /tmp/ is git-ignored
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)
    print(f"report screenshot: {keep}")


def _tile_count(page: str) -> int:
    return page.count('class="tile ')


def test_many_classes_list_the_most_confused_pairs_instead_of_a_matrix(tmp_path) -> None:
    from headstart.evaluation import classification_metrics

    classes = [f"c{i:02d}" for i in range(50)]
    y = np.repeat(np.arange(50), 4)
    proba = np.eye(50)[y]
    proba[0] = np.eye(50)[7]  # c00 taken for c07 once
    config = {
        "headstart": {
            "classes": classes,
            "metrics": {"test": classification_metrics(y, proba, classes)},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))

    page = write_report(tmp_path).read_text(encoding="utf-8")

    assert "too many for a matrix" in page and 'class="cm"' not in page
    assert "<th>c00</th><th>c07</th><td>1</td>" in page


@pytest.mark.filterwarnings("ignore:--epochs 2 was not used:headstart.errors.HeadstartWarning")
def test_data_headstart_split_itself_is_split_again_so_test_means_the_same_images(
    tmp_path,
) -> None:
    data = write_colour_dataset(tmp_path / "flat", {"": 10}, classes=CLASSES)
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        epochs=2,
        test_fraction=0.2,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    ).fit(data)
    run = clf.save(tmp_path / "run")

    page = write_report(run, clf=clf).read_text(encoding="utf-8")

    test = clf.metrics_["test"]
    assert f"Evaluated now on the <b>test</b> images of <code>{data}</code>" in page
    assert f"Accuracy <b>{100 * test['accuracy']:.1f}%</b>" in page
    assert f"{test['n']} images.</p>" in page


def test_report_of_a_linear_head_shows_how_its_regularisation_was_chosen(tmp_path) -> None:
    data = write_colour_dataset(tmp_path / "data", {"train": 6, "val": 3, "test": 3})
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    ).fit(data)
    run = clf.save(tmp_path / "run")
    page = write_report(run, clf=clf).read_text(encoding="utf-8")
    assert 'id="selection"' in page and "cross-validation over train + val" in page
    assert "refitted on them too" in page and "18 train + 9 val" in page
    assert f"<td>{clf.selection_['C']:g}</td>" in page


def test_report_shows_the_runs_own_curves_png_without_drawing_it_again(tmp_path):
    from headstart.reporting._images import curves_uri as _curves_uri

    history = [
        {"epoch": e, "loss": 1.0 / e, "accuracy": 0.5, "val_loss": 1.0, "val_accuracy": 0.5}
        for e in (1, 2)
    ]
    saved = tmp_path / "curves.png"
    saved.write_bytes(b"\x89PNG\r\n\x1a\n saved by the run")
    import base64

    uri = _curves_uri(history, 1, saved)
    assert uri is not None and base64.b64decode(uri.split(",", 1)[1]) == saved.read_bytes()
    drawn = _curves_uri(history, 1, tmp_path / "missing.png")
    assert drawn is not None and drawn != uri


def test_report_shows_a_reliability_diagram_before_and_after_calibration(trained, report) -> None:
    _, _, clf = trained
    assert 'aria-label="reliability diagram"' in report
    assert "before calibration" in report and "after calibration" in report
    assert f"{clf.temperature_:.3g}" in report


def test_the_training_run_reports_its_own_predictions_without_predicting_again(
    trained, monkeypatch
) -> None:
    from headstart.reporting._gather import evaluate as _evaluate

    run, data, clf = trained
    loaded = ImageClassifier.load(run, quiet=True)  # holds nothing: predicts the test images
    fresh = _evaluate(loaded, data)

    def no_prediction(*args, **kwargs):
        raise AssertionError("predicted again")

    monkeypatch.setattr(type(clf), "_tta_proba", no_prediction)
    held = _evaluate(clf, data)
    assert [(i.path, i.true, i.predicted) for i in held.items] == [
        (i.path, i.true, i.predicted) for i in fresh.items
    ]
    assert [i.probability for i in held.items] == pytest.approx(
        [i.probability for i in fresh.items], abs=1e-6
    )
    assert held.metrics["accuracy"] == fresh.metrics["accuracy"]
    with pytest.raises(AssertionError, match="predicted again"):
        _evaluate(loaded, data)


def _run_with_classes(folder: Path, n: int) -> Path:
    """A run folder holding only a config with test metrics for ``n`` long-named classes."""
    from headstart.evaluation import classification_metrics

    classes = [f"class-number-{i:02d}" for i in range(n)]
    y = np.repeat(np.arange(n), 5)
    proba = np.eye(n)[(y + (np.arange(len(y)) % 5 == 0)) % n]  # a fifth taken for the next class
    config = {
        "headstart": {
            "classes": classes,
            "metrics": {"test": classification_metrics(y, proba, classes)},
        }
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_wide_confusion_matrix_scrolls_inside_its_own_box(tmp_path) -> None:
    page = write_report(_run_with_classes(tmp_path / "run", 12)).read_text(encoding="utf-8")
    assert '<div class="scroll"><table class="cm">' in page
    assert 'id="confusion"' in page and 'id="per-class"' in page
    assert re.search(r"\.scroll \{[^}]*overflow-x:auto", page)


# Measures the two boxes once the page has laid out; the page's policy allows inline scripts.
_MEASURE = """<script>window.addEventListener("load", function () {
  function box(selector) {
    var r = document.querySelector(selector).getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom].map(Math.round).join(",");
  }
  var d = document.body.dataset;
  d.confusion = box("#confusion");
  d.perClass = box("#per-class");
  d.scroller = box("#confusion .scroll");
  d.card = box("#results");
});</script></body>"""


@pytest.mark.parametrize("width", [1280, 900, 1800])
def test_confusion_matrix_of_12_classes_never_runs_into_the_per_class_table(
    chromium, tmp_path, width
) -> None:
    report = write_report(_run_with_classes(tmp_path / "run", 12))
    measured = tmp_path / "measured.html"
    measured.write_text(report.read_text(encoding="utf-8").replace("</body>", _MEASURE))
    loaded = _browse(
        chromium,
        tmp_path / "profile",
        measured.resolve().as_uri(),
        "--virtual-time-budget=10000",
        f"--window-size={width},2000",
        "--dump-dom",
    )
    body = re.search(r"<body([^>]*)>", loaded.stdout)
    assert body, f"chromium printed no page (rc {loaded.returncode}): {loaded.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    matrix, table, scroller, card = (
        [int(v) for v in attrs[key].split(",")]
        for key in ("confusion", "per-class", "scroller", "card")
    )
    for shown in (matrix, scroller):  # the box, and the matrix as far as it is drawn
        left, top, right, bottom = shown
        apart = table[0] >= right or table[2] <= left or table[1] >= bottom or table[3] <= top
        assert apart, (shown, table)
    assert scroller[2] <= matrix[2] <= card[2] and table[2] <= card[2]


# ----------------------------------------------------------------------------- unknowns
RUNS_V1 = Path(__file__).parent / "data" / "runs_v1"


@pytest.fixture(scope="module")
def noisy(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The trained run's report on its data with three noise images among the test ones."""
    run, data, clf = trained
    root = tmp_path_factory.mktemp("noisy")
    copy = Path(shutil.copytree(data, root / "data"))
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(copy / "test" / "blue" / f"noise_{i}.png")
    page = write_report(shutil.copytree(run, root / "run"), data=copy, clf=clf)
    return copy, page.read_text(encoding="utf-8")


def _tile_typicalities(page: str) -> list[float]:
    return [float(t) for t in re.findall(r'class="tile unknown" data-typicality="([0-9.]+)"', page)]


def test_report_shows_the_test_images_flagged_unknown_most_unusual_first(trained, noisy) -> None:
    _, _, clf = trained
    data, page = noisy
    paths = sorted((data / "test").rglob("*.*"))
    predicted = {p.path: p for p in clf.predict_files(paths)}
    flagged = sorted(p.typicality for p in predicted.values() if p.unknown)
    assert len(flagged) >= 3  # the noise, at least

    shown = _tile_typicalities(page)

    assert 'id="unknowns"' in page and "Images of none of the classes" in page
    assert f"<b>{len(flagged)} of {len(paths)}</b> test images" in page
    assert shown == pytest.approx(flagged[:GRID_LIMIT], abs=1e-6)  # lowest typicality first
    for i in range(3):  # each with its predicted class
        tile = re.search(rf'data-typicality="[^"]*" title="[^"]*noise_{i}.png".*?</figure>', page)
        assert tile and f"<b>{predicted[data / 'test' / 'blue' / f'noise_{i}.png'].label}</b>" in (
            tile.group(0)
        )


def test_report_shows_a_histogram_of_typicality_with_the_threshold(trained, noisy) -> None:
    import base64
    import io

    _, page = noisy
    found = re.search(r'<img class="plot" src="data:image/png;base64,([^"]+)" alt="histogram', page)
    assert found
    with Image.open(io.BytesIO(base64.b64decode(found.group(1)))) as picture:
        assert picture.size[0] > 300
    assert "below the threshold <b>0.05</b>" in page
    assert '<a href="#unknowns">' in page


def test_report_without_the_data_shows_the_share_flagged_unknown_at_training_time(
    trained, tmp_path
) -> None:
    run, _, clf = trained
    copy = Path(shutil.copytree(run, tmp_path / "moved-run"))
    config = json.loads((copy / "config.json").read_text())
    config["headstart"]["data"]["root"] = str(tmp_path / "gone")
    (copy / "config.json").write_text(json.dumps(config))

    page = write_report(copy).read_text(encoding="utf-8")

    share = clf.metrics_["test"]["unknown_share"]
    assert f"Recorded at training time: <b>{100 * share:.1f}%</b> of the" in page
    assert 'id="unknowns"' in page and "histogram" not in page


def test_report_of_a_run_without_typicality_has_no_unknowns_section(
    noisy, colour_data, tmp_path
) -> None:
    run = Path(shutil.copytree(RUNS_V1 / "linear", tmp_path / "linear"))  # saved before it

    page = write_report(run, data=colour_data).read_text(encoding="utf-8")

    assert 'id="mistakes"' in page and 'class="tile' in page  # the rest as before
    assert 'id="unknowns"' not in page and "#unknowns" not in page
    assert 'id="unknowns"' in noisy[1]  # as a run with typicality has


@pytest.mark.parametrize(("ci", "outcome"), [("true", "fail"), ("", "skip"), ("0", "skip")])
def test_a_missing_browser_fails_the_browser_tests_under_ci_and_skips_them_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="no chromium"):
        without_chromium("no chromium here")
