"""Test-time augmentation: views, averaging, caching, and the --tta flag."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import HeadstartError
from headstart.preprocess import Preprocess
from headstart.tta import TtaView, tta_views


@pytest.fixture(scope="module")
def fitted(colour_data, tmp_path_factory) -> ImageClassifier:
    cache = tmp_path_factory.mktemp("tta-cache")
    return ImageClassifier(
        "headstart-tiny", strategy="features", num_workers=0, quiet=True, cache_dir=cache
    ).fit(colour_data)


def _preprocess() -> Preprocess:
    return Preprocess(
        input_size=(4, 4),
        resize=6,
        interpolation="nearest",
        scale=1.0,
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )


def test_flip_view_is_the_mirror_of_the_plain_tensor() -> None:
    pre = _preprocess()
    img = Image.fromarray(np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3))
    flipped = TtaView("flip").transform(pre)(img, "")
    assert np.array_equal(flipped.numpy(), pre(img).numpy()[:, :, ::-1])


def test_corner_crops_take_the_corners_of_the_resized_image() -> None:
    pre = _preprocess()
    pixels = np.arange(6 * 6 * 3, dtype=np.uint8).reshape(6, 6, 3)
    img = Image.fromarray(pixels)
    top_left = TtaView("corner", "top-left").transform(pre)(img, "")
    bottom_right = TtaView("corner", "bottom-right").transform(pre)(img, "")
    assert np.array_equal(top_left.numpy(), pixels[:4, :4].transpose(2, 0, 1).astype(np.float32))
    assert np.array_equal(
        bottom_right.numpy(), pixels[2:, 2:].transpose(2, 0, 1).astype(np.float32)
    )


def test_modes_have_one_two_and_five_views_and_unknown_modes_are_refused() -> None:
    pre = _preprocess()
    assert [len(tta_views(m, pre)) for m in ("none", "flip", "crops")] == [1, 2, 5]
    with pytest.raises(HeadstartError, match="Unknown --tta 'rotate'"):
        tta_views("rotate", pre)
    squash = Preprocess(input_size=(4, 4), resize=(4, 4), crop_mode="squash")
    with pytest.raises(HeadstartError, match="center-crop"):
        tta_views("crops", squash)


def test_flip_probabilities_are_the_mean_of_image_and_mirror(fitted, colour_data, tmp_path) -> None:
    image = sorted((colour_data / "test" / "green").iterdir())[0]
    mirror = tmp_path / "mirror.png"
    with Image.open(image) as img:
        img.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirror)
    both = fitted.predict_proba([image, mirror])
    flip = fitted.predict_proba([image], tta="flip")[0]
    np.testing.assert_allclose(flip, both.mean(0), atol=1e-5)
    assert flip.sum() == pytest.approx(1.0, abs=1e-5)


def test_evaluate_with_tta_records_the_mode_and_gives_the_same_numbers_twice(
    fitted, colour_data
) -> None:
    first = fitted.evaluate(colour_data, tta="crops")
    again = fitted.evaluate(colour_data, tta="crops")
    assert first["tta"] == "crops" and first["accuracy"] == again["accuracy"]
    assert first["n"] == fitted.evaluate(colour_data)["n"]


def test_predict_cli_takes_tta(fitted, colour_data, tmp_path, capsys) -> None:
    run = fitted.save(tmp_path / "run")
    image = sorted((colour_data / "test" / "red").iterdir())[0]
    assert main(["predict", str(run), str(image), "--tta", "flip", "--json", "-q"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    expected = fitted.predict_proba([image], tta="flip")[0].max()
    assert row["probability"] == pytest.approx(float(expected), abs=1e-6)
