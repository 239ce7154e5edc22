"""The shipped backbone: loads offline, applies its own stored preprocessing, transfers."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from headstart import EMBEDDED_MODEL, ImageClassifier, create_backbone
from headstart.backbones._local import EMBEDDED_DIR
from headstart.synthetic import make_demo_dataset


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub, no sockets: anything that tries the network fails loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError("the embedded backbone tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_embedded_backbone_loads_offline_with_its_stored_preprocessing(offline) -> None:
    stored = json.loads((EMBEDDED_DIR / EMBEDDED_MODEL / "config.json").read_text())
    cfg = stored["pretrained_cfg"]
    backbone = create_backbone(EMBEDDED_MODEL)
    pre = backbone.preprocess
    assert pre.mean == pytest.approx(tuple(cfg["mean"]))
    assert pre.std == pytest.approx(tuple(cfg["std"]))
    assert pre.input_size == tuple(cfg["input_size"][1:])
    assert pre.overrides == ()
    with torch.no_grad():
        out = backbone.module(torch.zeros(2, 3, *pre.input_size))
    assert out.shape == (2, backbone.num_features)


def test_a_classifier_on_the_embedded_backbone_saves_and_applies_the_same_preprocessing(
    offline, tmp_path
) -> None:
    data = make_demo_dataset(tmp_path / "demo", n_per_class=(10, 4, 4), size=64)
    clf = ImageClassifier(
        EMBEDDED_MODEL, strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).fit(data)
    assert clf.metrics_["test"]["accuracy"] > 1.5 / len(clf.classes_)  # well above chance
    run = clf.save(tmp_path / "run")
    loaded = ImageClassifier.load(run, num_workers=0, quiet=True, cache=False)
    assert loaded.preprocess_ == create_backbone(EMBEDDED_MODEL).preprocess
    images = sorted((data / "test").rglob("*.jpg"))[:8]
    assert loaded.predict(images) == clf.predict(images)


@pytest.fixture(scope="module")
def unseen_shapes(tmp_path_factory: pytest.TempPathFactory):
    """The demo's eight classes (never pretraining classes), 12 train and 10 test images each."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=(12, 2, 10), size=128)


def _test_accuracy(data, tmp_path, **options) -> float:
    """Test accuracy of the default linear head on the embedded backbone's features."""
    clf = ImageClassifier(
        EMBEDDED_MODEL,
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
        **options,
    ).fit(data)
    return float(clf.metrics_["test"]["accuracy"])


@pytest.fixture(scope="module")
def pretrained_accuracy(unseen_shapes, tmp_path_factory: pytest.TempPathFactory) -> float:
    return _test_accuracy(unseen_shapes, tmp_path_factory.mktemp("pretrained"))


def test_pretrained_embedded_features_beat_a_random_init_copy_by_a_wide_margin(
    unseen_shapes, pretrained_accuracy, tmp_path
) -> None:
    """The check that transfer works at all: 0.74 pretrained, 0.15 random init, chance 0.125.

    Unlike colour data, these classes (shape x texture on clutter) are not separable by a random
    network's features, so a regression that loses the pretrained weights (a wrong file, a
    state-dict key mismatch loaded non-strictly, weights re-initialised) fails here. Proven by
    mutation: with ``model.safetensors`` replaced by a seeded random init of the same
    architecture, this test failed (pretrained 0.15).
    """
    pretrained = pretrained_accuracy
    random_init = _test_accuracy(unseen_shapes, tmp_path, weights="none")

    assert pretrained >= 0.68
    assert random_init <= 0.3
    assert pretrained - random_init >= 0.4


def test_the_embedded_backbone_loses_accuracy_under_imagenet_mean_and_std(
    unseen_shapes, pretrained_accuracy, tmp_path
) -> None:
    """Its stored mean/std are deliberately not ImageNet's: 0.74 with them, 0.625 with ImageNet's.

    Guards "preprocessing is resolved from the weights" by its effect on accuracy rather than on
    tensors: a resolver that fell back to ImageNet's defaults would pass a test that only checks
    the pipeline runs. Proven by mutation: with ``resolve_preprocess`` taking ImageNet's mean/std
    instead of ``pretrained_cfg``'s, this test and the random-init one failed (0.625 < 0.68).
    """
    own = pretrained_accuracy
    imagenet = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    with pytest.warns(UserWarning, match="preprocessing override"):
        other = _test_accuracy(unseen_shapes, tmp_path, preprocess=imagenet)

    assert own >= 0.68
    assert own - other >= 0.075
