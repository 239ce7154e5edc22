"""ImageClassifier end to end on tiny images and a random-init timm test backbone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import headstart.features.extract as extract_module
from headstart import ImageClassifier
from headstart.errors import NotFittedError, RunFolderError
from tests.conftest import write_colour_dataset

MODEL = "test_resnet"


def _clf(tmp_path: Path, **kwargs) -> ImageClassifier:
    params = dict(
        weights="none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
    )
    params.update(kwargs)
    return ImageClassifier(MODEL, **params)


def test_predict_before_fit_raises_not_fitted_error(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        _clf(tmp_path).predict([tmp_path / "x.png"])


def test_fit_learns_colours_and_reports_val_and_test_metrics(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path, refit=False).fit(colour_data)
    assert clf.classes_ == ["blue", "green", "red"]
    assert clf.metrics_["test"]["accuracy"] >= 0.9
    assert clf.metrics_["val"]["n"] == 12
    assert clf.selection_["fit_images"] == {"train": 24}


def test_refit_trains_on_train_and_val_and_reports_selection_figures_as_such(
    colour_data, tmp_path
) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    assert "val" not in clf.metrics_  # the val images trained the final model
    assert clf.metrics_["test"]["accuracy"] >= 0.9
    selection = clf.selection_
    assert selection["fit_images"] == {"train": 24, "val": 12}
    assert selection["protocol"] == "cv" and selection["val_accuracy"] is not None
    config = clf.config()["headstart"]["training"]
    assert config["selection"]["C"] == selection["C"] and config["refit"] is True


def test_save_load_round_trip_gives_identical_predictions(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    run = clf.save(tmp_path / "run")
    images = sorted((colour_data / "test").rglob("*.*"))
    loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True)
    np.testing.assert_array_equal(clf.predict_proba(images), loaded.predict_proba(images))
    assert loaded.classes_ == clf.classes_
    assert loaded.preprocess_ == clf.preprocess_
    for name in ("config.json", "model.safetensors", "history.csv", "skipped.csv"):
        assert (run / name).is_file()


def test_same_seed_and_data_give_the_same_model(colour_data, tmp_path) -> None:
    a = _clf(tmp_path, head="mlp", cache=False).fit(colour_data)
    b = _clf(tmp_path, head="mlp", cache=False).fit(colour_data)
    for (ka, va), (kb, vb) in zip(
        a.head_.state_dict().items(), b.head_.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)


def test_second_fit_hits_cache_and_runs_no_forward_pass(colour_data, tmp_path, monkeypatch):
    _clf(tmp_path).fit(colour_data)
    calls: list[int] = []
    original = extract_module._Forward.__call__

    def counting(forward, todo, **kwargs):
        calls.append(len(todo))
        return original(forward, todo, **kwargs)

    monkeypatch.setattr(extract_module._Forward, "__call__", counting)
    clf = _clf(tmp_path).fit(colour_data)
    assert calls == []
    assert clf.extraction_ == {"computed": 0, "cached": 48}


def test_adding_images_computes_only_the_new_ones(tmp_path: Path) -> None:
    data = write_colour_dataset(tmp_path / "d", {"train": 4, "val": 2})
    _clf(tmp_path).fit(data)
    write_colour_dataset(tmp_path / "extra", {"train": 2}, seed=9)
    for src in (tmp_path / "extra" / "train").rglob("*.*"):
        shutil.copy(src, data / "train" / src.parent.name / f"new_{src.name}")
    clf = _clf(tmp_path).fit(data)
    assert clf.extraction_ == {"computed": 6, "cached": 18}


def test_predict_and_evaluate_agree(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    metrics = clf.evaluate(colour_data)
    assert metrics["split"] == "test"
    predicted = clf.predict(metrics["paths"])
    assert predicted == [clf.classes_[i] for i in metrics["predicted"]]


def test_evaluating_the_training_folder_in_the_same_process_reads_it_once(
    colour_data, tmp_path, monkeypatch
) -> None:
    import headstart.estimator as estimator_module

    clf = _clf(tmp_path).fit(colour_data)
    held = clf.evaluation_dataset(colour_data)  # the dataset fit read, kept
    # A loaded run holds none: it reads the folder again, split as recorded, to the same splits.
    loaded = ImageClassifier.load(_saved(clf, tmp_path), quiet=True)
    assert loaded.evaluation_dataset(colour_data).splits == held.splits

    def no_second_read(*args, **kwargs):
        raise AssertionError("the training folder was read again")

    monkeypatch.setattr(estimator_module, "load_dataset", no_second_read)
    assert clf.evaluate(colour_data)["split"] == "test"
    with pytest.raises(AssertionError, match="read again"):
        clf.evaluate(tmp_path / "elsewhere")  # other data is read, as before


def _saved(clf: ImageClassifier, tmp_path: Path) -> Path:
    clf.save(tmp_path / "run")
    return tmp_path / "run"


def test_timm_loads_the_run_folder_as_the_same_classifier(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    run = clf.save(tmp_path / "run")
    model = timm.create_model(f"local-dir:{run}", pretrained=True).eval()
    data_cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**data_cfg)
    images = sorted((colour_data / "test").rglob("*.*"))[:6]
    from PIL import Image

    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        timm_proba = torch.softmax(model(batch), 1).numpy()
    np.testing.assert_allclose(timm_proba, clf.predict_proba(images), atol=1e-5)
    assert model.pretrained_cfg["label_names"] == clf.classes_


def test_loading_a_folder_without_config_raises_run_folder_error(tmp_path) -> None:
    with pytest.raises(RunFolderError, match="not a finished headstart run"):
        ImageClassifier.load(tmp_path)


def test_config_records_classes_preprocessing_counts_and_versions(colour_data, tmp_path):
    run = _clf(tmp_path).fit(colour_data).save(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    hs = config["headstart"]
    assert hs["classes"] == ["blue", "green", "red"]
    assert hs["data"]["counts"]["train"] == {"blue": 8, "green": 8, "red": 8}
    assert hs["preprocess"] and hs["backbone"]["weights"] == "none"
    assert {"torch", "timm", "headstart"} <= set(hs["versions"])
    assert hs["metrics"]["test"]["n"] == 12


def test_saving_the_same_model_twice_writes_byte_identical_weights(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    first = (clf.save(tmp_path / "a") / "model.safetensors").read_bytes()
    for name in ("b", "c", "d"):
        assert (clf.save(tmp_path / name) / "model.safetensors").read_bytes() == first


def test_a_class_without_validation_images_gets_one_warning_naming_it(tmp_path) -> None:
    import shutil

    from headstart.errors import DataWarning
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "d", {"train": 4, "val": 2})
    shutil.rmtree(data / "val" / "blue")
    with pytest.warns(DataWarning, match="class 'blue' has no val images"):
        _clf(tmp_path, check_data=False).fit(data)


def test_C_with_the_mlp_head_is_refused_under_auto_too(colour_data, tmp_path) -> None:
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="--C applies to the linear head only"):
        _clf(tmp_path, strategy="auto", head="mlp", C=0.1).fit(colour_data)
