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
