"""`headstart preprocess` saves the exact backbone input; `headstart backbones` lists names."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headstart.backbones import DEFAULT_MODEL, EMBEDDED_MODEL
from headstart.cli.main import main

TIMM_TEST = "test_vit.r160_in1k"


@pytest.fixture
def image(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def _timm_reference(model: str, path) -> np.ndarray:
    from timm.data import create_transform, resolve_data_config
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model).to_dict()
    transform = create_transform(**resolve_data_config({}, pretrained_cfg=cfg))
    return transform(Image.open(path).convert("RGB")).numpy()


def test_saved_array_equals_timms_reference_transform(image, tmp_path, capsys):
    out = tmp_path / "x.npy"
    assert main(["preprocess", "--model", TIMM_TEST, str(image), "--save", str(out)]) == 0
    saved = np.load(out)
    assert saved.dtype == np.float32 and saved.shape == (3, 160, 160)
    np.testing.assert_allclose(saved, _timm_reference(TIMM_TEST, image), atol=1e-5, rtol=0)
    printed = capsys.readouterr().out
    assert f"timm pretrained_cfg {TIMM_TEST}" in printed
    assert "tensor:        3x160x160 float32" in printed and f"saved:         {out}" in printed


def test_saved_array_equals_torchvision_weights_transform(image, tmp_path):
    from torchvision.models import ResNet18_Weights

    out = tmp_path / "tv"
    assert main(["preprocess", "--model", "tv:resnet18", str(image), "--save", str(out)]) == 0
    expected = ResNet18_Weights.IMAGENET1K_V1.transforms()(Image.open(image).convert("RGB"))
    np.testing.assert_allclose(np.load(tmp_path / "tv.npy"), expected.numpy(), atol=1e-5)


def test_override_flags_warn_in_one_line_and_show_in_the_description(image, capsys):
    args = [
        "preprocess",
        "--model",
        TIMM_TEST,
        str(image),
        "--input-size",
        "64",
        "--keras",
        "caffe",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and "keras='caffe'" in captured.err
    assert "channel order: BGR" in captured.out and "input size:    64x64" in captured.out


def test_unknown_model_exits_2_with_one_line(image, capsys):
    assert main(["preprocess", "--model", "convnxt_tiny", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown backbone 'convnxt_tiny'") and err.count("\n") == 1


def test_unreadable_image_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    assert main(["preprocess", "--model", TIMM_TEST, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_preprocess_never_builds_or_downloads_the_model(image, monkeypatch):
    import timm

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(timm, "create_model", refuse)
    assert main(["preprocess", "--model", DEFAULT_MODEL, str(image)]) == 0


def test_backbones_prints_an_aligned_table_and_naming_help(capsys):
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("NAME") and lines[1].startswith(EMBEDDED_MODEL)
    column = lines[0].index("DESCRIPTION")
    assert lines[2].startswith(DEFAULT_MODEL) and lines[2][column - 2 : column] == "  "
    text = "\n".join(lines)
    for hint in ("hf-hub:ORG/REPO", "local-dir:PATH", "tv:NAME[.WEIGHTS]"):
        assert hint in text


def test_backbones_with_a_pattern_lists_matching_pretrained_names(capsys):
    assert main(["backbones", "convnext_tiny.in12k*"]) == 0
    assert "convnext_tiny.in12k_ft_in1k" in capsys.readouterr().out
    assert main(["backbones", "no_such_backbone_xyz"]) == 1
