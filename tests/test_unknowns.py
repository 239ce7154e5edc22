"""Images of none of the classes: every trained run carries a typicality score, from fit to the
run folder to predict (issue 24's wiring; the scores themselves: tests/test_typicality.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import InvalidParameterError, NotFittedError
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MODEL = "test_resnet"
RUNS_V1 = Path(__file__).parent / "data" / "runs_v1"


def _clf(tmp_path: Path, **kwargs) -> ImageClassifier:
    params = dict(
        weights="none", strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    )
    params.update(kwargs)
    return ImageClassifier(MODEL, **params)


def _noise_images(folder: Path, n: int = 6, seed: int = 0) -> list[Path]:
    """Uniform noise over the whole range: no class of the colour data, nor near one."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        path = folder / f"noise_{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path, Path]:
    """A fitted classifier on the colour data, its saved run, and the data."""
    root = tmp_path_factory.mktemp("unknowns")
    data = write_colour_dataset(root / "data", {"train": 10, "val": 5, "test": 5})
    clf = _clf(root).fit(data)
    run = clf.save(root / "run")
    return clf, run, data


def test_fit_scales_typicality_on_train_and_val_images_never_test(fitted) -> None:
    clf, _, data = fitted
    typicality = clf.typicality_
    assert typicality is not None and typicality.score == "mahalanobis"
    assert typicality.threshold == pytest.approx(0.05)
    # The scale holds one out-of-fold score per train and val image: 3 classes x (10 + 5).
    assert len(typicality.knowns) == 45
    assert clf.unknowns_["heldout_images"] == 45
    # Test images are only scored, after the fact: the share flagged is recorded per split.
    test_images = sorted((data / "test").rglob("*.png"))
    flagged = clf.predict_typicality(test_images) < typicality.threshold
    assert clf.metrics_["test"]["unknown_share"] == pytest.approx(flagged.mean())


def test_noise_images_are_flagged_unknown_and_known_test_images_mostly_not(
    fitted, tmp_path
) -> None:
    clf, _, data = fitted
    noise = _noise_images(tmp_path / "noise")
    known = sorted((data / "test").rglob("*.*"))

    flagged_noise = [p.unknown for p in clf.predict_files(noise)]
    flagged_known = [p.unknown for p in clf.predict_files(known)]

    assert all(flagged_noise)
    assert np.mean(flagged_known) <= 0.2
    # The class and its probability stay as they are: rejecting is the caller's choice.
    assert all(p.label in clf.classes_ for p in clf.predict_files(noise))


def test_save_load_predict_and_the_api_give_the_same_typicality(fitted, tmp_path) -> None:
    clf, run, data = fitted
    files = sorted((data / "test").rglob("*.*"))[:6] + _noise_images(tmp_path / "n", 3)
    loaded = ImageClassifier.load(run, cache_dir=tmp_path / "c2")

    before = [p.typicality for p in clf.predict_files(files)]
    after = [p.typicality for p in loaded.predict_files(files)]

    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(loaded.predict_typicality(files), before, atol=1e-5)
    assert loaded.typicality_ is not None
    assert loaded.typicality_.threshold == clf.typicality_.threshold
    assert loaded.unknowns_ == json.loads(json.dumps(loaded.unknowns_))  # JSON, as saved


def test_the_typicality_tensors_live_beside_the_model_so_plain_timm_loading_is_unchanged(
    fitted,
) -> None:
    _, run, _ = fitted
    from safetensors.torch import load_file

    assert not any(k.startswith("typicality.") for k in load_file(str(run / "model.safetensors")))
    assert (run / "typicality.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["headstart"]["unknowns"]["file"] == (
        "typicality.safetensors"
    )


def test_predict_json_has_typicality_and_reject_labels_unknown_images(
    fitted, tmp_path, capsys
) -> None:
    _, run, data = fitted
    noise = _noise_images(tmp_path / "noise", 2)
    known = sorted((data / "test" / "red").iterdir())[:1]
    args = ["predict", str(run), *map(str, known + noise), "--json", "--cache-dir", str(tmp_path)]

    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--reject"]) == 0
    rejected = json.loads(capsys.readouterr().out)

    assert [p["unknown"] for p in plain] == [False, True, True]
    again = ImageClassifier.load(run, cache=False, quiet=True).predict_typicality(known + noise)
    assert [p["typicality"] for p in plain] == pytest.approx(again.tolist(), abs=1e-6)
    assert [p["label"] for p in rejected] == ["red", "unknown", "unknown"]
    assert [p["label"] for p in plain][1:] != ["unknown", "unknown"]


def test_predict_text_marks_unknown_images_and_a_threshold_overrides_the_runs(
    fitted, tmp_path, capsys
) -> None:
    _, run, data = fitted
    noise = _noise_images(tmp_path / "noise", 1)
    known = sorted((data / "test" / "red").iterdir())[:1]
    args = ["predict", str(run), *map(str, known + noise), "--cache-dir", str(tmp_path)]

    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "typicality" in lines[0] and not lines[0].endswith("UNKNOWN")
    assert lines[1].endswith("UNKNOWN")

    # Threshold 1: every image is less typical than all but none of the held-out known ones.
    assert main([*args, "--unknown-threshold", "1", "--reject"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.split("\t")[1] == "unknown" for line in lines)


def test_train_records_its_unknown_threshold_and_score(colour_data, tmp_path) -> None:
    out = tmp_path / "run"
    args = [
        "train", str(colour_data), "--out", str(out), "--model", MODEL, "--weights", "none",
        "--strategy", "features", "--quiet", "--cache-dir", str(tmp_path / "c"),
        "--unknown-threshold", "0.2", "--unknown-score", "knn",
    ]  # fmt: skip
    assert main(args) == 0

    unknowns = json.loads((out / "config.json").read_text())["headstart"]["unknowns"]
    assert unknowns["threshold"] == 0.2 and unknowns["score"] == "knn"
    assert ImageClassifier.load(out).typicality_.threshold == 0.2


def test_unknown_score_none_trains_without_typicality(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path, unknown_score="none").fit(colour_data)

    assert clf.typicality_ is None
    assert "turned off" in clf.unknowns_["reason"]
    prediction = clf.predict_files(sorted((colour_data / "test").rglob("*.*"))[:1])[0]
    assert "typicality" not in prediction.to_dict() and prediction.unknown is None
    with pytest.raises(NotFittedError, match="no typicality score"):
        clf.predict_typicality(sorted((colour_data / "test").rglob("*.*"))[:1])


@pytest.mark.parametrize(
    "params",
    [{"unknown_threshold": 1.5}, {"unknown_threshold": -0.1}, {"unknown_score": "softmax"}],
)
def test_a_bad_unknown_option_is_refused_before_training(tmp_path, params, colour_data) -> None:
    with pytest.raises(InvalidParameterError, match="unknown threshold|typicality score"):
        _clf(tmp_path, **params).fit(colour_data)
    assert not (tmp_path / "c").exists()  # refused before any extraction


def test_a_bad_threshold_at_predict_time_is_one_line_and_exit_2(fitted, tmp_path, capsys) -> None:
    _, run, data = fitted
    image = next((data / "test" / "red").iterdir())

    code = main(["predict", str(run), str(image), "--unknown-threshold", "2"])

    assert code == 2
    assert capsys.readouterr().err.strip().startswith("error: The unknown threshold")


def test_runs_saved_before_typicality_predict_as_before_and_refuse_reject(tmp_path, capsys) -> None:
    run = tmp_path / "linear"
    shutil.copytree(RUNS_V1 / "linear", run)
    image = next(p for p in (RUNS_V1 / "images").rglob("*") if p.is_file())
    clf = ImageClassifier.load(run, cache_dir=tmp_path / "c")

    prediction = clf.predict_files([image])[0]

    assert clf.typicality_ is None and prediction.typicality is None
    assert set(prediction.to_dict()) == {"path", "label", "probability", "top_k"}
    assert main(["predict", str(run), str(image), "--reject"]) == 2
    assert "has none" in capsys.readouterr().err


def test_auroc_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    from headstart.evaluation.openset import auroc

    rng = np.random.default_rng(0)
    known = rng.integers(0, 10, 50).astype(float)
    unknown = rng.integers(0, 7, 30).astype(float)
    truth = np.r_[np.ones(50), np.zeros(30)]

    assert auroc(known, unknown) == pytest.approx(roc_auc_score(truth, np.r_[known, unknown]))


def test_false_accept_at_95_uses_the_cut_that_accepts_95_percent_of_known_images() -> None:
    from headstart.evaluation.openset import unknown_metrics

    known = np.linspace(0.0, 1.0, 100)  # the cut that keeps 95 of them: 0.0505...
    unknown = np.array([0.01, 0.04, 0.06, 0.5])

    found = unknown_metrics(known, unknown, threshold=0.05)

    assert found["false_accept_at_95"] == pytest.approx(0.5)
    assert found["false_accept"] == pytest.approx(0.5)
    assert found["known_accepted"] == pytest.approx(0.95)


def test_evaluate_reports_the_share_flagged_and_with_unknown_images_their_auroc(
    fitted, tmp_path, capsys
) -> None:
    _, run, data = fitted
    noise = tmp_path / "noise"
    _noise_images(noise, 4)
    args = ["evaluate", str(run), str(data), "--cache-dir", str(tmp_path)]

    assert main([*args, "--json", "--unknown", str(noise)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert main([*args, "--unknown", str(noise)]) == 0
    text = capsys.readouterr().out

    assert 0.0 <= metrics["unknown_share"] <= 0.2 and metrics["unknown_threshold"] == 0.05
    found = metrics["unknowns"]
    assert found["n_unknown"] == 4 and found["n_known"] == metrics["n"]
    assert found["auroc"] == 1.0 and found["false_accept"] == 0.0
    assert "flagged unknown" in text and "AUROC 1.000" in text


def test_evaluate_with_unknown_images_on_a_run_without_typicality_is_one_line(
    tmp_path, capsys
) -> None:
    images = RUNS_V1 / "images"
    code = main(["evaluate", str(RUNS_V1 / "linear"), str(images), "--unknown", str(images)])

    assert code == 2
    assert "needs a run with a typicality score" in capsys.readouterr().err


@pytest.mark.parametrize("strategy", ["augment", "finetune"])
def test_end_to_end_strategies_fit_typicality_on_the_final_models_features(
    colour_data, tmp_path, strategy
) -> None:
    clf = _clf(tmp_path, strategy=strategy, epochs=1, batch_size=8).fit(colour_data)

    assert clf.typicality_ is not None
    assert len(clf.typicality_.knowns) == 36  # 3 classes x (8 train + 4 val)
    typical = clf.predict_typicality(sorted((colour_data / "test").rglob("*.*")))
    assert typical.shape == (12,) and np.all((typical >= 0) & (typical <= 1))
