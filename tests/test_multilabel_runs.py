"""Several labels an image, end to end: fit, save and load, predict, evaluate, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import InvalidParameterError
from tests.conftest import COLOURS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = "test_resnet"
PATTERNS = ["red", "green;blue", "", "red;green", "blue", "red;blue", "green", "red;green;blue"]


def write_patch_csv(root: Path, n: int = 48, seed: int = 0) -> Path:
    """Grey images with a patch of each colour they are labelled with; ``labels.csv`` lists
    them, a cell per image (empty: no patch, no label)."""
    rng = np.random.default_rng(seed)
    rows = ["path,label"]
    for i in range(n):
        labels = PATTERNS[i % len(PATTERNS)]
        pixels = np.full((40, 40, 3), 128.0) + rng.normal(0, 10, (40, 40, 3))
        for k, name in enumerate(("red", "green", "blue")):
            if name in labels.split(";"):
                pixels[:, k * 13 : k * 13 + 13] = COLOURS[name]
        path = root / "images" / f"img_{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        rows.append(f"images/{path.name},{labels}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


def _clf(tmp_path: Path, **kwargs) -> ImageClassifier:
    params = dict(weights="none", num_workers=0, quiet=True, cache_dir=tmp_path / "c")
    params.update(kwargs)
    return ImageClassifier(MODEL, **params)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path, Path]:
    """A multi-label classifier fitted on the patch CSV, its saved run, and the CSV."""
    root = tmp_path_factory.mktemp("multilabel")
    data = write_patch_csv(root)
    clf = _clf(root, strategy="features").fit(data)
    return clf, clf.save(root / "run"), data


def test_fit_on_a_multi_label_csv_learns_a_threshold_a_label(fitted) -> None:
    clf, _, _ = fitted
    assert clf.classes_ == ["blue", "green", "red"]
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert clf.head_.weight.shape[0] == 3
    assert clf.typicality_ is None
    assert clf.metrics_["test"]["multi_label"] is True
    assert clf.metrics_["test"]["mAP"] > 0.9


def test_predict_returns_label_sets_and_predict_proba_a_probability_a_label(fitted) -> None:
    clf, _, data = fitted
    paths = [data.parent / "images" / f"img_{i:03d}.png" for i in (0, 1, 2)]
    proba = clf.predict_proba(paths)
    assert proba.shape == (3, 3)
    assert not np.allclose(proba.sum(1), 1.0)  # a sigmoid a label, not a softmax
    assert clf.predict(paths) == [["red"], ["blue", "green"], []]


def test_saved_multi_label_run_loads_with_its_thresholds_and_predicts_the_same(fitted) -> None:
    clf, run, data = fitted
    config = json.loads((run / "config.json").read_text())["headstart"]
    assert config["multi_label"] == {"output": "sigmoid", "thresholds": clf.thresholds_}
    loaded = ImageClassifier.load(run, quiet=True, num_workers=0)
    assert loaded.thresholds_ == clf.thresholds_
    paths = sorted((data.parent / "images").iterdir())[:6]
    np.testing.assert_allclose(loaded.predict_proba(paths), clf.predict_proba(paths), atol=1e-6)


def test_single_label_run_config_has_no_multi_label_section(tmp_path: Path) -> None:
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "d", {"train": 6, "val": 3})
    run = _clf(tmp_path, strategy="features", unknown_score="none").fit(data).save(tmp_path / "r")
    assert "multi_label" not in json.loads((run / "config.json").read_text())["headstart"]
    assert ImageClassifier.load(run).thresholds_ is None


def test_evaluate_gives_map_and_per_label_figures(fitted) -> None:
    clf, _, data = fitted
    metrics = clf.evaluate(data)
    assert metrics["split"] == "test"
    from sklearn.metrics import accuracy_score, average_precision_score, f1_score, hamming_loss

    from headstart.data.multilabel import label_matrix

    test = clf.evaluation_dataset(data).splits["test"]
    assert metrics["paths"] == [str(s.path) for s in test]
    truth = label_matrix(test, len(clf.classes_))
    proba = clf.predict_proba([s.path for s in test])
    said = np.zeros_like(truth)
    for row, labels in zip(said, metrics["predicted"], strict=True):
        row[labels] = 1
    assert np.array_equal(said, proba >= np.asarray(clf.thresholds_))
    assert metrics["mAP"] == pytest.approx(average_precision_score(truth, proba, average="macro"))
    assert metrics["f1_micro"] == pytest.approx(f1_score(truth, said, average="micro"))
    assert metrics["f1_macro"] == pytest.approx(f1_score(truth, said, average="macro"))
    assert metrics["subset_accuracy"] == pytest.approx(accuracy_score(truth, said))
    assert metrics["hamming_loss"] == pytest.approx(hamming_loss(truth, said))
    assert set(metrics["per_label"]["red"]) == {
        "precision",
        "recall",
        "f1",
        "ap",
        "threshold",
        "support",
    }
    assert len(metrics["predicted"]) == metrics["n"]


def test_cli_predict_json_has_labels_and_every_probability(fitted, capsys) -> None:
    _, run, data = fitted
    image = data.parent / "images" / "img_003.png"  # red;green
    assert main(["predict", str(run), str(image), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    row = out[0] if isinstance(out, list) else out
    assert row["labels"] == ["green", "red"]
    assert set(row["probabilities"]) == {"blue", "green", "red"}


def test_cli_predict_text_lists_the_labels(fitted, capsys) -> None:
    _, run, data = fitted
    image = data.parent / "images" / "img_002.png"  # no label
    assert main(["predict", str(run), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}\t(none)")


def test_cli_evaluate_json_reports_map(fitted, capsys) -> None:
    _, run, data = fitted
    assert main(["evaluate", str(run), str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mAP"] > 0.9 and "per_label" in metrics


def test_cli_evaluate_text_shows_the_per_label_table(fitted, capsys) -> None:
    _, run, data = fitted
    assert main(["evaluate", str(run), str(data)]) == 0
    out = capsys.readouterr().out
    assert "mAP " in out and "label " in out and "threshold" in out


def test_scratch_strategy_trains_multi_label_data_and_chooses_thresholds_on_val(
    tmp_path: Path,
) -> None:
    data = write_patch_csv(tmp_path, n=32)
    clf = _clf(tmp_path, strategy="scratch", epochs=2, batch_size=16).fit(data)

    assert clf.settings_.strategy == "scratch"
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert clf.selection_ is not None and clf.selection_["kind"] == "multi-label"
    assert clf.metrics_["test"]["multi_label"] is True
    run = clf.save(tmp_path / "run")
    paths = sorted((data.parent / "images").iterdir())[:4]
    assert ImageClassifier.load(run, num_workers=0).predict(paths) == clf.predict(paths)


def test_mlp_head_on_multi_label_data_raises_invalid_parameter(tmp_path: Path) -> None:
    data = write_patch_csv(tmp_path, n=16)
    with pytest.raises(InvalidParameterError, match="head 'mlp' does not train on multi-label"):
        _clf(tmp_path, strategy="features", head="mlp").fit(data)


def test_auto_trains_multi_label_data_with_the_features_strategy(tmp_path: Path) -> None:
    data = write_patch_csv(tmp_path, n=24)
    clf = _clf(tmp_path).fit(data)
    assert clf.settings_.strategy == "features"
    assert clf.thresholds_ is not None


def test_fit_on_lists_of_label_lists_trains_a_multi_label_classifier(tmp_path: Path) -> None:
    data = write_patch_csv(tmp_path, n=24)
    paths = sorted((data.parent / "images").iterdir())
    labels = [PATTERNS[i % len(PATTERNS)].split(";") if i % 8 != 2 else [] for i in range(24)]
    clf = _clf(tmp_path, strategy="features", test_fraction=0.0).fit(paths, labels)
    assert clf.classes_ == ["blue", "green", "red"]
    assert all(isinstance(labels, list) for labels in clf.predict(paths[:2]))


def test_report_of_a_multi_label_run_shows_per_label_figures_and_largest_errors(
    fitted, tmp_path: Path
) -> None:
    from headstart.reporting import write_report

    clf, run, data = fitted
    page = write_report(run, data=data, clf=clf).read_text()
    assert 'id="per-label"' in page
    assert "Precision-recall curves" in page
    assert "Largest errors (" in page
    assert "test mAP" in page


def test_export_of_a_multi_label_run_outputs_sigmoids_and_records_thresholds(
    fitted, tmp_path: Path
) -> None:
    pytest.importorskip("onnxruntime")
    from headstart.export import export_run

    clf, run, _ = fitted
    result = export_run(run, out=tmp_path / "model.onnx")
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["multi_label"]["thresholds"] == clf.thresholds_
    assert sidecar["output"]["description"].startswith("sigmoid")
    assert sidecar["parity"]["max_abs_diff"] <= sidecar["parity"]["tolerance"]


def test_info_of_a_multi_label_run_counts_images_and_shows_map(fitted, capsys) -> None:
    _, run, _ = fitted
    assert main(["info", str(run)]) == 0
    out = capsys.readouterr().out
    assert "data train: " in out and "test mAP:" in out
    assert "one logistic regression a label (3)" in out


def test_train_cli_with_multi_label_flag_trains_a_multi_label_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = ["path,label"] + [
        f"images/img_{i:03d}.png,{'red' if i % 2 else 'blue'}" for i in range(16)
    ]
    data = write_patch_csv(tmp_path, n=16)
    data.write_text("\n".join(rows) + "\n")  # one label a row: multi-label only when told
    code = main(
        ["train", str(data), "--model", MODEL, "--weights", "none", "--multi-label"]
        + ["--out", str(tmp_path / "run"), "--quiet", "--workers", "0"]
    )
    assert code == 0
    assert "test mAP" in capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())["headstart"]
    assert config["data"]["multi_label"] is True and len(config["multi_label"]["thresholds"]) == 2


def test_features_strategy_with_augmented_views_trains_on_multi_label_data(tmp_path: Path) -> None:
    data = write_patch_csv(tmp_path, n=24)
    clf = _clf(tmp_path, strategy="features", aug_views=1, augment="light").fit(data)
    assert clf.selection_ is not None
    assert clf.selection_["fit_images"]["train"] > 0
    assert clf.details_["aug_views"] == 1
    assert clf.thresholds_ is not None


def test_calibrate_none_on_multi_label_data_records_it_and_predicts_the_same_labels(
    fitted, tmp_path: Path
) -> None:
    clf, _, data = fitted
    raw = _clf(tmp_path, strategy="features", calibrate="none").fit(data)
    assert raw.calibration_ is not None and raw.calibration_["method"] == "none"
    paths = sorted((data.parent / "images").iterdir())
    assert raw.predict(paths) == clf.predict(paths)


def test_augment_strategy_trains_multi_label_data_with_binary_cross_entropy(
    tmp_path: Path,
) -> None:
    data = write_patch_csv(tmp_path, n=32)
    clf = _clf(tmp_path, strategy="augment", epochs=2, batch_size=8).fit(data)
    assert clf.settings_.strategy == "augment"
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert clf.selection_ is not None and clf.selection_["kind"] == "multi-label"
    assert [row["epoch"] for row in clf.history_] == [1, 2, 3]  # the features head, then 2
    assert all(math.isfinite(row["loss"]) for row in clf.history_)  # BCE trained, no NaN
    run = clf.save(tmp_path / "run")
    loaded = ImageClassifier.load(run, quiet=True, num_workers=0)
    paths = sorted((data.parent / "images").iterdir())[:4]
    assert loaded.predict(paths) == clf.predict(paths)
    assert clf.evaluate(data)["mAP"] is not None


def test_finetune_strategy_trains_multi_label_data_and_chooses_thresholds_on_val(
    tmp_path: Path,
) -> None:
    data = write_patch_csv(tmp_path, n=32)
    # refit=False: the chosen run's own model, whose thresholds are chosen on val.
    clf = _clf(tmp_path, strategy="finetune", epochs=2, batch_size=8, refit=False).fit(data)
    assert clf.settings_.strategy == "finetune"
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert clf.selection_ is not None and clf.selection_["labels"][0]["protocol"] == "validation"
    assert clf.metrics_["test"]["multi_label"] is True
    run = clf.save(tmp_path / "run")
    paths = sorted((data.parent / "images").iterdir())[:4]
    assert ImageClassifier.load(run, num_workers=0).predict(paths) == clf.predict(paths)


def test_a_killed_multi_label_finetune_resumes_to_the_same_model(tmp_path: Path) -> None:
    from headstart.checkpoint import load_checkpoint
    from tests._backbones import write_bn_backbone
    from tests._kills import (
        assert_same_run,
        kill_after_first_checkpoint,
        leftovers,
        train_command,
    )

    data = write_patch_csv(tmp_path, n=24)
    args = [
        *("--model", write_bn_backbone(tmp_path / "backbone"), "--strategy", "finetune"),
        *("--unfreeze", "1", "--epochs", "3", "--patience", "100", "--batch-size", "4"),
        *("--workers", "0", "-q"),
    ]
    expected = tmp_path / "uninterrupted"
    cache = ["--cache-dir", str(tmp_path / "cache-uninterrupted")]
    assert main(["train", str(data), "--out", str(expected), *args, *cache]) == 0

    run, cache_dir = tmp_path / "killed", tmp_path / "cache"
    command = train_command(data, run, [*args, "--cache-dir", str(cache_dir)])
    kill_after_first_checkpoint(command, run)
    killed_at = load_checkpoint(run / "checkpoint")
    assert killed_at is not None and not killed_at.finished and killed_at.epoch == 2
    assert main(["train", "--resume", str(run), "-q"]) == 0

    # Byte for byte, as single-label runs (the children run with this process's thread count,
    # tests/_kills.py: with two threads against one, the weights differed by about 1e-6).
    assert_same_run(expected, run)
    assert leftovers(run, cache_dir) == []
    configs = [json.loads((r / "config.json").read_text())["headstart"] for r in (expected, run)]
    assert configs[0]["multi_label"] == configs[1]["multi_label"]
