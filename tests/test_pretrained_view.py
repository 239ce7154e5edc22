"""The weights' own view of the data: their pretraining classifier on the user's images."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image, ImageDraw, ImageFilter
from safetensors.torch import save_file

from headstart import ImageClassifier
from headstart.backbones import create_backbone, load_pretrained_classifier
from headstart.backbones._classifier import PretrainedClassifier
from headstart.cli.main import main
from headstart.data import load_dataset
from headstart.doctor import diagnose
from headstart.doctor._pretrained_view import (
    DOCTOR_SAMPLE,
    MIN_CLASSES,
    OWN,
    TRAIN_SAMPLE,
    judge_pretrained_view,
    pretrained_view,
    sample_images,
    wrong_preprocessings,
)
from headstart.errors import PreprocessOverrideWarning, PretrainedViewWarning
from headstart.features.extract import extract_cached
from headstart.synthetic import make_demo_dataset


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=(8, 2, 2), size=128)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Flat synthetic "photos": one soft coloured disc on white, 3 classes by colour.

    Far from headstart-tiny's textured pretraining shapes: with its own preprocessing its
    classifier calls about 70% of them ``solid_circle``, with doubt (entropy about 0.25 of the
    maximum), the issue-24 false alarm.
    """
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    colours = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220)}
    for name, colour in colours.items():
        (root / name).mkdir()
        for i in range(24):
            img = Image.new("RGB", (128, 128), (245, 245, 245))
            r = int(rng.integers(20, 45))
            x, y = (int(v) for v in rng.integers(r, 128 - r, 2))
            fill = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in colour)
            ImageDraw.Draw(img).ellipse([x - r, y - r, x + r, y + r], fill=fill)
            img.filter(ImageFilter.GaussianBlur(4)).save(root / name / f"{i:03d}.png")
    return root


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


def _finding(data: Path, tmp_path: Path, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessOverrideWarning)
        report = diagnose(
            data,
            model="headstart-tiny",
            preprocess_overrides=overrides or None,
            cache_dir=tmp_path,
            quiet=True,
            num_workers=0,
        )
    (finding,) = [f for f in report.findings if f.code == "pretrained-view"]
    return finding


def test_far_from_pretraining_data_with_own_preprocessing_is_a_warning_not_an_error(
    blobs, tmp_path
) -> None:
    finding = _finding(blobs, tmp_path)
    assert finding.details["collapsed"] is True  # the blobs do look alike to the weights
    assert finding.severity == "warning", finding.message
    assert "far from what it was trained on" in finding.message
    assert not any(alt["better"] for alt in finding.details["alternatives"].values())
    assert "pixels x255 (0..255 instead of 0..1)" in finding.details["alternatives"]


@pytest.fixture(scope="module")
def digit_scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grey handwritten digits on black (scikit-learn's scans at 64 px), 4 classes of 16: far
    from headstart-tiny's coloured shapes, and seen by none of its views."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digit-scans")
    digits = load_digits()
    for digit in range(4):
        folder = root / f"d{digit}"
        folder.mkdir()
        for i, image in enumerate(digits.images[digits.target == digit][:16]):
            scan = Image.fromarray((image / 16 * 255).astype(np.uint8)).resize((64, 64))
            scan.convert("RGB").save(folder / f"{i:02d}.png")
    return root


def test_a_mistake_that_sees_far_data_a_little_less_alike_is_no_error(
    digit_scans, tmp_path
) -> None:
    # ImageNet's mean/std gives the scans several times the information of the right view, but
    # both see one class in most of them: that is data far from the pretraining, and a new user
    # on the shipped backbone must not be told to suspect its config.
    finding = _finding(digit_scans, tmp_path)
    assert finding.details["collapsed"] is True
    alternatives = finding.details["alternatives"]
    imagenet = alternatives["ImageNet mean/std on 0..1 RGB"]
    assert imagenet["information"] >= 3 * finding.details["information"] and imagenet["collapsed"]
    assert finding.severity == "warning", finding.message
    assert not any(alt["better"] for alt in alternatives.values())


def test_wrong_override_on_far_from_pretraining_data_is_still_an_error(blobs, tmp_path) -> None:
    finding = _finding(blobs, tmp_path, keras="caffe")
    assert finding.severity == "error", finding.message
    assert "suspect your preprocessing override" in finding.message
    assert finding.details["without_overrides"]["saturated"] is False


def test_view_that_a_common_mistake_sees_better_is_an_error(demo) -> None:
    # Weights whose own config lost a /255 (nothing overridden): every image gets one answer;
    # one of the mistakes tried, pixels x255, is the right scale and sees the images.
    right = create_backbone("headstart-tiny")
    broken = dataclasses.replace(right.preprocess, scale=right.preprocess.scale / 255)
    backbone = dataclasses.replace(right, preprocess=broken)
    samples = sample_images(_samples(demo), DOCTOR_SAMPLE)
    judged = judge_pretrained_view(backbone, samples, _extract, model="headstart-tiny")
    assert judged is not None
    view, finding = judged
    assert view.collapsed and not view.saturated, view.summary()
    assert finding.severity == "error", finding.message
    assert "suspect the weights' config" in finding.message
    assert "it sees them better" in finding.message
    assert finding.details["alternatives"]["pixels x255 (0..255 instead of 0..1)"]["better"]


def test_healthy_view_runs_no_alternatives(demo) -> None:
    seen: list[str] = []

    def extract(backbone, paths):
        seen.append(backbone.preprocess.fingerprint())
        return _extract(backbone, paths)

    backbone = create_backbone("headstart-tiny")
    samples = sample_images(_samples(demo), TRAIN_SAMPLE)
    judged = judge_pretrained_view(backbone, samples, extract, model="headstart-tiny")
    assert judged is not None and judged[1].severity == "info"
    assert len(seen) == 1


def test_wrong_preprocessings_change_one_thing_each_and_include_the_weights_own() -> None:
    own = create_backbone("headstart-tiny").preprocess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessOverrideWarning)
        used = create_backbone("headstart-tiny", preprocess_overrides={"keras": "caffe"})
    wrong = wrong_preprocessings(used.preprocess, own)
    assert wrong[OWN].mean == own.mean and wrong[OWN].scale == own.scale
    assert wrong["pixels /255 (0..1 instead of 0..255)"].scale == 1 / 255
    assert wrong["RGB instead of BGR"].mean == used.preprocess.mean
    assert "ImageNet mean/std on 0..1 RGB" in wrong
    imagenet = dataclasses.replace(own, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert "ImageNet mean/std on 0..1 RGB" not in wrong_preprocessings(imagenet)


def test_train_warns_that_far_from_pretraining_data_is_not_a_preprocessing_mistake(
    blobs, tmp_path
) -> None:
    clf = ImageClassifier(
        "headstart-tiny", strategy="features", cache_dir=tmp_path, quiet=True, num_workers=0
    )
    with pytest.warns(PretrainedViewWarning, match="far from what it was trained on") as caught:
        clf.fit(blobs)
    assert not any("nematode" in str(w.message) for w in caught)
