"""ImageClassifier as a scikit-learn estimator, its fitted state, and one list of parameters.

``__init__`` stores its arguments, ``get_params``/``set_params``/``clone`` work as scikit-learn's
do, ``fit`` and ``load`` give the same learned attributes, and the training options of
``headstart train``, the estimator's parameters and ``TrainSettings`` cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from headstart import ImageClassifier
from headstart.errors import HeadstartWarning
from headstart.strategies import STRATEGY_DEFAULTS, TrainSettings

MODEL = "test_resnet"


def _clf(tmp_path: Path, **kwargs: Any) -> ImageClassifier:
    params: dict[str, Any] = dict(
        weights="none", strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    )
    params.update(kwargs)
    return ImageClassifier(MODEL, **params)


def _learned(clf: ImageClassifier) -> set[str]:
    return {name for name in vars(clf) if name.endswith("_") and not name.startswith("_")}


def test_clone_gives_an_unfitted_classifier_with_the_same_parameters(tmp_path) -> None:
    clf = _clf(tmp_path, epochs=7, augment={"preset": "light", "rotation": 5}, layer="layer2")

    copy = clone(clf)

    assert copy is not clf and copy.get_params() == clf.get_params()
    assert copy.get_params()["epochs"] == 7 and copy.augment == {"preset": "light", "rotation": 5}


def test_set_params_changes_what_get_params_reads_back(tmp_path) -> None:
    clf = _clf(tmp_path)

    assert clf.set_params(lr=0.05, head="mlp") is clf

    assert clf.get_params()["lr"] == 0.05 and clf.head == "mlp"
    with pytest.raises(ValueError, match="nope"):
        clf.set_params(nope=1)


def test_repr_shows_only_the_parameters_that_differ_from_their_defaults() -> None:
    text = repr(ImageClassifier(MODEL, epochs=3, strategy="features"))

    assert text.startswith("ImageClassifier(") and "epochs=3" in text
    assert "strategy='features'" in text and "'test_resnet'" in text
    assert "lr=" not in text and "calibrate=" not in text


def test_init_only_stores_its_arguments_even_bad_ones() -> None:
    clf = ImageClassifier(MODEL, strategy="nope", epochs=-1)

    assert clf.get_params()["strategy"] == "nope" and clf.epochs == -1
    assert not _learned(clf)


def test_fit_and_load_give_the_same_learned_attributes(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path, refit=False).fit(colour_data)
    loaded = ImageClassifier.load(clf.save(tmp_path / "run"))

    assert _learned(loaded) == _learned(clf)
    assert loaded.details_ == clf.details_ and loaded.selection_ == clf.selection_
    assert loaded.calibration_ == clf.calibration_ and loaded.not_used_ == clf.not_used_
    assert loaded.epoch_seconds_ == clf.epoch_seconds_


def test_a_loaded_run_saved_again_writes_the_same_config(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path, refit=False).fit(colour_data)
    loaded = ImageClassifier.load(clf.save(tmp_path / "a"))

    first = json.loads((tmp_path / "a" / "config.json").read_text())
    again = json.loads((loaded.save(tmp_path / "b") / "config.json").read_text())

    assert again == first


def test_predict_takes_one_path_as_a_list_of_one(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path).fit(colour_data)
    image = sorted((colour_data / "test" / "red").iterdir())[0]

    assert clf.predict(str(image)) == clf.predict([image])
    assert len(clf.predict(image)) == 1
    np.testing.assert_array_equal(clf.predict_proba(str(image)), clf.predict_proba([image]))
    assert [p.path for p in clf.predict_files(str(image))] == [image]


def test_each_fit_resolves_its_settings_once(colour_data, tmp_path, monkeypatch) -> None:
    import headstart.estimator as estimator

    calls: list[str] = []
    real = estimator.resolve_train_settings

    def counting(params: Any, **kwargs: Any) -> Any:
        calls.append(str(params["strategy"]))
        return real(params, **kwargs)

    monkeypatch.setattr(estimator, "resolve_train_settings", counting)
    _clf(tmp_path).fit(colour_data)
    _clf(tmp_path, strategy="auto", head="linear").fit(colour_data)

    assert calls == ["features", "auto"]


def test_auto_says_once_which_options_its_linear_head_did_not_use(colour_data, tmp_path) -> None:
    clf = _clf(tmp_path, strategy="auto", head="linear", epochs=5, lr=0.01)

    with pytest.warns(HeadstartWarning) as caught:
        clf.fit(colour_data)

    lines = [str(w.message) for w in caught if "not used" in str(w.message)]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("--epochs 5, --lr 0.01 were not used: auto chose features")
    assert "--strategy augment or finetune" in lines[0]
    assert clf.settings_.epochs == STRATEGY_DEFAULTS["features"]["epochs"]
    recorded = clf.config()["headstart"]["training"]["not_used"]
    assert recorded["options"] == {"epochs": 5, "lr": 0.01} and recorded["reason"] == lines[0]


# ----------------------------------------------------------------- one parameter list
# Parameters of ImageClassifier that `headstart train` has no option for, and why.
LIBRARY_ONLY = {
    "hidden": "the MLP's width: a library knob",
    "dropout": "the MLP's dropout: a library knob",
    "extract_batch_size": "extraction batch: a library knob",
    "check_data": "the CLI always checks the data",
}
# `headstart train` options that are not a parameter of the same name.
CLI_TO_PARAM = {
    "workers": "num_workers",
    "no_cache": "cache",
    "resume": "resume",
    "out": "checkpoint_dir",  # the checkpoint goes to OUT/checkpoint
    **{name: "preprocess" for name in ("input_size", "crop_pct", "interpolation", "mean", "std")},
    **{name: "preprocess" for name in ("keras", "resize", "decode")},
    **{
        name: "augment"
        for name in (
            "brightness",
            "fill",
            "height_shift",
            "hflip",
            "magnitude",
            "rotation",
            "shear",
            "vflip",
            "width_shift",
            "zoom",
        )
    },
}
# `headstart train` options about the data (read by fit) or the run folder, not the classifier.
CLI_ONLY = {
    "data",
    "help",
    "overwrite",
    "path_column",
    "label_column",
    "split_column",
    "multi_label",
}


def _train_options() -> set[str]:
    from headstart.cli.train import register

    subparsers = argparse.ArgumentParser().add_subparsers()
    register(subparsers)
    return {action.dest for action in subparsers.choices["train"]._actions} - CLI_ONLY


def test_train_options_estimator_parameters_and_train_settings_agree() -> None:
    params = set(inspect.signature(ImageClassifier).parameters)
    settings = {field.name for field in dataclasses.fields(TrainSettings)}

    assert settings <= params, (
        f"TrainSettings fields missing from ImageClassifier: {settings - params}"
    )
    from_cli = {CLI_TO_PARAM.get(name, name) for name in _train_options()}
    wanted = params - set(LIBRARY_ONLY)
    assert from_cli == wanted, (
        f"not a parameter: {from_cli - params}; no option: {wanted - from_cli}"
    )


def test_train_passes_every_option_it_has_to_the_classifier(monkeypatch, tmp_path) -> None:
    from headstart.cli import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path)])
    passed: dict[str, Any] = {}

    class Recorder:
        def __init__(self, model: str, **kwargs: Any) -> None:
            passed.update(model=model, **kwargs)

    monkeypatch.setattr("headstart.estimator.ImageClassifier", Recorder)
    train._classifier(args, tmp_path / "checkpoint", False)

    params = set(inspect.signature(ImageClassifier).parameters) - set(LIBRARY_ONLY)
    assert set(passed) == params


def test_every_field_of_the_fitted_record_is_a_typed_learned_attribute() -> None:
    from headstart.fitted import FittedModel, LearnedAttributes

    fields = {f"{field.name}_" for field in dataclasses.fields(FittedModel)}

    assert set(LearnedAttributes.__annotations__) == fields


def test_auto_warns_about_an_option_only_another_strategy_uses_instead_of_refusing_it(
    colour_data, tmp_path
) -> None:
    clf = _clf(tmp_path, strategy="auto", head="linear", unfreeze=2, layer_decay=0.5)

    with pytest.warns(HeadstartWarning) as caught:
        clf.fit(colour_data)

    lines = [str(w.message) for w in caught if "not used" in str(w.message)]
    assert lines == [
        "--unfreeze 2, --layer-decay 0.5 were not used: auto chose features, --unfreeze is for "
        "finetune only; --layer-decay is for finetune only; pass --strategy to choose one."
    ]
    assert clf.settings_.strategy == "features" and clf.settings_.unfreeze == 0
    assert clf.config()["headstart"]["training"]["not_used"]["options"] == {
        "unfreeze": 2,
        "layer_decay": 0.5,
    }
