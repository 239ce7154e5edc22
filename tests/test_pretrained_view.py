"""The weights' own view of the data: their pretraining classifier on the user's images."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from headstart import ImageClassifier
from headstart.backbones import create_backbone, load_pretrained_classifier
from headstart.backbones._classifier import PretrainedClassifier
from headstart.cli.main import main
from headstart.data import load_dataset
from headstart.doctor._pretrained_view import (
    DOCTOR_SAMPLE,
    MIN_CLASSES,
    TRAIN_SAMPLE,
    pretrained_view,
    sample_images,
)
from headstart.errors import PreprocessOverrideWarning, PretrainedViewWarning
from headstart.features.extract import extract_cached
from headstart.synthetic import make_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=(8, 2, 2), size=128)


def _samples(data: Path) -> list[tuple[Path, str]]:
    dataset = load_dataset(data)
    return [(s.path, dataset.classes[s.label]) for ss in dataset.splits.values() for s in ss]


def _extract(backbone, paths):
    return extract_cached(backbone, paths, use_cache=False, cache_dir=None, desc="", quiet=True)


def _view(data: Path, n: int, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessOverrideWarning)
        backbone = create_backbone("headstart-tiny", preprocess_overrides=overrides or None)
    return pretrained_view(backbone, sample_images(_samples(data), n), _extract)


def test_shipped_backbone_comes_with_its_source_classifier() -> None:
    classifier = load_pretrained_classifier(create_backbone("headstart-tiny"))
    assert classifier is not None
    assert len(classifier.classes) == 30 and "striped_square" in classifier.classes


def test_random_weights_have_no_pretraining_classifier() -> None:
    assert load_pretrained_classifier(create_backbone("headstart-tiny", weights="none")) is None


@pytest.mark.parametrize("n", [TRAIN_SAMPLE, DOCTOR_SAMPLE])
def test_right_preprocessing_on_demo_data_does_not_collapse(demo, n) -> None:
    view = _view(demo, n)
    assert view is not None and not view.collapsed, view.summary()
    assert len(view.top_classes) >= 3


@pytest.mark.parametrize("n", [TRAIN_SAMPLE, DOCTOR_SAMPLE])
def test_forced_keras_caffe_preprocessing_collapses(demo, n) -> None:
    view = _view(demo, n, keras="caffe")
    assert view is not None and view.collapsed
    assert "near-certain" in view.reason


def test_doctor_json_has_an_error_finding_coded_pretrained_view(demo, tmp_path, capsys) -> None:
    args = ["doctor", str(demo), "--model", "headstart-tiny", "--keras", "caffe", "--json"]
    assert main([*args, "--cache-dir", str(tmp_path), "-q"]) == 1
    report = json.loads(capsys.readouterr().out)
    (finding,) = [f for f in report["findings"] if f["code"] == "pretrained-view"]
    assert finding["severity"] == "error"
    assert "suspect your preprocessing override" in finding["message"]
    assert finding["details"]["without_overrides"]["collapsed"] is False
    assert report["stats"]["pretrained_view"]["collapsed"] is True


def test_train_warns_before_training_on_collapsed_view(demo, tmp_path) -> None:
    clf = ImageClassifier(
        "headstart-tiny",
        strategy="features",
        preprocess={"keras": "caffe"},
        cache_dir=tmp_path,
        quiet=True,
        num_workers=0,
    )
    with pytest.warns(PretrainedViewWarning, match="nematode"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PreprocessOverrideWarning)
            clf.fit(demo)


def test_classifier_tensors_in_a_weights_file_are_used_with_imagenet_names(tmp_path) -> None:
    model = timm.create_model("test_resnet", num_classes=1000)
    path = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    classifier = load_pretrained_classifier(create_backbone("test_resnet", weights=str(path)))
    assert classifier is not None
    assert classifier.classes[1].startswith("goldfish")


def test_classifier_of_few_classes_gives_no_view(demo) -> None:
    # Twice uniform is 1.0 for two classes: every binary classifier would "recognise nothing".
    backbone = create_backbone("headstart-tiny")
    binary = PretrainedClassifier(
        torch.nn.Linear(backbone.num_features, 2), ("cat", "dog"), "a user's binary top"
    )
    samples = sample_images(_samples(demo), TRAIN_SAMPLE)
    assert pretrained_view(backbone, samples, _extract, classifier=binary) is None
    assert MIN_CLASSES > 2
