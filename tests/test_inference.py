"""Predicting images held in memory (headstart.inference), as a server does."""

from __future__ import annotations

from pathlib import Path

import pytest

from headstart import ImageClassifier
from headstart.errors import ImageDecodeError, NotFittedError
from headstart.inference import ImagePredictor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def classifier(colour_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ImageClassifier:
    cache = tmp_path_factory.mktemp("cache")
    return ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=cache,
    ).fit(colour_data)


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.path == b.path and a.label == b.label
        assert [name for name, _ in a.top_k] == [name for name, _ in b.top_k]
        assert [p for _, p in a.top_k] == pytest.approx([p for _, p in b.top_k], abs=1e-6)


def test_images_given_as_bytes_get_the_answers_of_predict_files(classifier, colour_data):
    paths = sorted(p for p in (colour_data / "test").rglob("*") if p.is_file())[:6]
    predictor = ImagePredictor(classifier)
    prepared = [predictor.prepare(p.read_bytes(), p.name) for p in paths]
    served = predictor.predict(prepared, [str(p) for p in paths], top_k=3)
    _assert_same(served, classifier.predict_files(paths, top_k=3))


def test_predict_features_answers_as_predict_files_does(classifier, colour_data) -> None:
    from headstart.features import extract_features

    paths = sorted(p for p in (colour_data / "val").rglob("*") if p.is_file())[:4]
    features = extract_features(classifier.backbone_, paths, num_workers=0, quiet=True).features
    answers = classifier.predict_features(features, paths, top_k=2)
    _assert_same(answers, classifier.predict_files(paths, top_k=2))


def test_an_unreadable_upload_raises_under_its_name(classifier) -> None:
    with pytest.raises(ImageDecodeError, match="^upload.bin: not an image"):
        ImagePredictor(classifier).prepare(b"hello", "upload.bin")


def test_an_unfitted_classifier_cannot_predict() -> None:
    with pytest.raises(NotFittedError):
        ImagePredictor(ImageClassifier("test_resnet"))
