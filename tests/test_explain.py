"""Class-activation maps (Grad-CAM) for CNN and ViT backbones, and `headstart explain`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.reporting.explain import explain_image


def _fit(tmp_path: Path, data: Path, model: str, **kwargs) -> ImageClassifier:
    params = dict(
        weights="default" if model == "headstart-tiny" else "none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    )
    params.update(kwargs)
    return ImageClassifier(model, **params).fit(data)


@pytest.mark.parametrize(
    ("model", "layer"),
    [
        ("headstart-tiny", "layer4"),
        ("test_vit", "blocks.5 (input)"),  # the last of its six blocks
        ("tv:mobilenet_v3_small", "features"),
    ],
)
def test_maps_for_cnn_and_vit_backbones_cover_the_image_in_0_to_1(
    colour_data, tmp_path, model, layer
) -> None:
    clf = _fit(tmp_path, colour_data, model)
    image = sorted((colour_data / "test" / "red").iterdir())[0]
    explanations = explain_image(clf, image, classes=["red", "blue"])
    assert [e.class_name for e in explanations] == ["red", "blue"]
    for e in explanations:
        assert e.layer == layer
        assert e.cam.shape == (e.image.height, e.image.width) == clf.preprocess_.input_size
        assert 0.0 <= e.cam.min() and e.cam.max() <= 1.0
    probabilities = clf.predict_proba([image])[0]
    assert explanations[0].probability == pytest.approx(probabilities[clf.classes_.index("red")])


def _shape_data(root: Path, n: int = 16) -> Path:
    """Squares or discs at random places on a plain background: the shapes the backbone knows."""
    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("val", 4)):
        for shape in ("square", "disc"):
            folder = root / split / shape
            folder.mkdir(parents=True)
            for i in range(count):
                _shape_image(folder / f"{i}.png", shape, rng.integers(0, 72, size=2))
    return root


def _shape_image(path: Path, shape: str, corner) -> Path:
    from PIL import ImageDraw

    img = Image.new("RGB", (128, 128), (90, 110, 140))
    draw = ImageDraw.Draw(img)
    x, y = int(corner[1]), int(corner[0])
    box = (x, y, x + 56, y + 56)
    if shape == "square":
        draw.rectangle(box, fill=(240, 200, 40))
    else:
        draw.ellipse(box, fill=(240, 200, 40))
    img.save(path)
    return path


@pytest.mark.filterwarnings("ignore::headstart.errors.PretrainedViewWarning")
def test_map_of_the_class_shown_is_strongest_where_the_object_is(tmp_path) -> None:
    # (The source classifier calls most of these flat pictures one thing and train warns so.)
    data = _shape_data(tmp_path / "shapes")
    clf = _fit(tmp_path, data, "headstart-tiny")
    for corner, quadrant in (((8, 8), 0), ((8, 64), 1), ((64, 64), 3)):
        image = _shape_image(tmp_path / "probe.png", "square", corner)
        (explanation,) = explain_image(clf, image, classes=["square"])
        cam = explanation.cam
        half_h, half_w = cam.shape[0] // 2, cam.shape[1] // 2
        means = [
            cam[:half_h, :half_w].mean(),
            cam[:half_h, half_w:].mean(),
            cam[half_h:, :half_w].mean(),
            cam[half_h:, half_w:].mean(),
        ]
        assert int(np.argmax(means)) == quadrant, (corner, means)


def test_explain_cli_writes_the_image_and_its_overlay_side_by_side(
    colour_data, tmp_path, capsys
) -> None:
    run = _fit(tmp_path, colour_data, "headstart-tiny").save(tmp_path / "run")
    image = sorted((colour_data / "test" / "blue").iterdir())[0]
    out = tmp_path / "cam.png"
    assert main(["explain", str(run), str(image), "--class", "green", "--out", str(out)]) == 0
    assert "map of green" in capsys.readouterr().out
    with Image.open(out) as png:
        assert png.size == (2 * 112 + 4, 112)


def test_explain_of_an_unknown_class_exits_2_with_one_line(colour_data, tmp_path, capsys) -> None:
    run = _fit(tmp_path, colour_data, "headstart-tiny").save(tmp_path / "run")
    image = sorted((colour_data / "test" / "blue").iterdir())[0]
    args = ["explain", str(run), str(image), "--class", "purple", "--out", str(tmp_path / "x.png")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Unknown class 'purple'" in err[0]


def test_the_overlay_colour_map_is_matplotlibs_turbo_without_importing_matplotlib() -> None:
    from matplotlib import colormaps

    from headstart.reporting.explain import turbo

    values = np.random.default_rng(0).random((40, 30))
    np.testing.assert_allclose(turbo(values), colormaps["turbo"](values)[..., :3], atol=0.03)
    assert turbo(np.array([-1.0, 2.0])).tolist() == turbo(np.array([0.0, 1.0])).tolist()
