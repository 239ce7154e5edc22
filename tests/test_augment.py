"""Augmentation: presets, explicit controls, JSON and fingerprints, and seeded determinism."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.augment import (
    AUGMENT_PRESETS,
    AugmentConfig,
    AugmentedView,
    Augmenter,
    resolve_augment,
    sample_seed,
)
from headstart.errors import HeadstartError
from headstart.preprocess import resolve_preprocess


def _image(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_every_preset_resolves_and_only_none_is_the_identity() -> None:
    for name in AUGMENT_PRESETS:
        config = resolve_augment(name)
        assert config.preset == name
        assert config.is_identity == (name == "none")


def test_explicit_values_override_the_preset_and_are_recorded() -> None:
    config = resolve_augment("default", rotation=30, vflip=True, zoom=None)
    assert config.rotation == 30 and config.vflip and config.zoom == 0.15
    assert config.preset == "default+custom"
    assert resolve_augment(None, rotation=15, hflip=True).preset == "custom"


def test_config_round_trips_through_json_with_the_same_fingerprint() -> None:
    config = resolve_augment("strong", shear=5)
    again = AugmentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.fingerprint() == config.fingerprint()


def test_fingerprint_changes_with_values_but_not_with_the_preset_label() -> None:
    base = resolve_augment("light")
    assert resolve_augment("light", rotation=11).fingerprint() != base.fingerprint()
    relabelled = AugmentConfig(**{**base.to_dict(), "preset": "other"})
    assert relabelled.fingerprint() == base.fingerprint()


def test_out_of_range_value_raises_with_the_allowed_range() -> None:
    with pytest.raises(HeadstartError, match=r"zoom=1\.5 is out of range; use 0 to 0\.9"):
        resolve_augment("none", zoom=1.5)
    with pytest.raises(HeadstartError, match="Unknown augmentation preset 'heavy'"):
        resolve_augment("heavy")


@pytest.mark.parametrize("preset", ["strong", "randaugment", "trivialaugment"])
def test_same_seed_gives_the_same_pixels_and_another_seed_others(preset: str) -> None:
    augmenter = Augmenter(resolve_augment(preset))
    image = _image()
    first = np.asarray(augmenter.apply(image, sample_seed("train", 0, 1, 7)))
    again = np.asarray(augmenter.apply(image, sample_seed("train", 0, 1, 7)))
    others = [np.asarray(augmenter.apply(image, sample_seed("train", 0, 1, i))) for i in range(4)]
    assert np.array_equal(first, again)
    assert first.shape == np.asarray(image).shape
    assert any(not np.array_equal(first, other) for other in others)


def test_augmenting_leaves_the_callers_random_streams_untouched() -> None:
    augmenter = Augmenter(resolve_augment("randaugment"))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    augmenter.apply(_image(), 123)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_none_preset_changes_no_pixel() -> None:
    image = _image()
    out = Augmenter(resolve_augment("none")).apply(image, 5)
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_augmented_view_is_keyed_by_seed_view_and_image_digest() -> None:
    preprocess = resolve_preprocess({"input_size": (3, 32, 32), "crop_pct": 1.0})
    config = resolve_augment("strong")
    view = AugmentedView(config, seed=0, index=1).transform(preprocess)
    image = _image()
    assert torch.equal(view(image, "abc"), view(image, "abc"))
    assert not torch.equal(view(image, "abc"), view(image, "abd"))
    other = AugmentedView(config, seed=0, index=2)
    assert other.name != AugmentedView(config, seed=0, index=1).name
    assert config.fingerprint() in other.name
