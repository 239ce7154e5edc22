"""The procedural generator, the demo dataset on disk, and the embedded backbone folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from headstart import synthetic
from headstart.errors import DataError
from headstart.synthetic import (
    DEMO_CLASSES,
    SHAPES,
    SOURCE_CLASSES,
    TEXTURES,
    class_name,
    make_demo_dataset,
    make_image,
    make_source_batch,
)

EMBEDDED = Path(synthetic.__file__).parent / "backbones" / "embedded" / "headstart-tiny"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
TINY = (3, 1, 2)  # images per class in train, val, test: enough to check layout and counts


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_gives_identical_images() -> None:
    a = make_source_batch(3, [0, 1, 2], [0, 5, 29], size=64)
    b = make_source_batch(3, [0, 1, 2], [0, 5, 29], size=64)
    assert a.dtype == np.uint8 and a.shape == (3, 64, 64, 3)
    assert np.array_equal(a, b)


def test_image_does_not_depend_on_batch_order() -> None:
    together = make_source_batch(3, [0, 1], [4, 7], size=64)
    alone = make_source_batch(3, [1], [7], size=64)
    assert np.array_equal(together[1], alone[0])


def test_different_seeds_give_different_images() -> None:
    a = make_source_batch(1, [0], [0], size=64)
    b = make_source_batch(2, [0], [0], size=64)
    assert not np.array_equal(a, b)


def test_every_shape_and_texture_draws() -> None:
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        for texture in TEXTURES:
            image = make_image(rng, shape, texture, size=32)
            assert image.shape == (32, 32, 3)


def test_unknown_shape_raises_with_the_allowed_names() -> None:
    with pytest.raises(ValueError, match="Unknown shape 'blob'.*hexagon"):
        make_image(np.random.default_rng(0), "blob", "solid")


def test_demo_classes_never_appear_in_the_source_task() -> None:
    assert len(SOURCE_CLASSES) >= 20
    assert not set(DEMO_CLASSES) & set(SOURCE_CLASSES)
    # ...but their shapes and textures do: the demo is transfer, not a new visual world.
    assert {s for s, _ in DEMO_CLASSES} <= {s for s, _ in SOURCE_CLASSES}
    assert {t for _, t in DEMO_CLASSES} <= {t for _, t in SOURCE_CLASSES}


def test_demo_dataset_has_folder_layout_counts_and_readable_jpegs(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", n_per_class=TINY, size=64)
    names = sorted(class_name(s, t) for s, t in DEMO_CLASSES)
    assert "striped_hexagon" in names
    for split, n in zip(("train", "val", "test"), TINY, strict=True):
        assert sorted(p.name for p in (root / split).iterdir()) == names
        for name in names:
            files = sorted((root / split / name).glob("*.jpg"))
            assert len(files) == n
            with Image.open(files[0]) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)


def test_demo_dataset_is_identical_for_the_same_seed(tmp_path: Path) -> None:
    a = _tree(make_demo_dataset(tmp_path / "a", n_per_class=TINY, size=64))
    b = _tree(make_demo_dataset(tmp_path / "b", n_per_class=TINY, size=64))
    c = _tree(make_demo_dataset(tmp_path / "c", seed=1, n_per_class=TINY, size=64))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_complete_demo_dataset_is_not_rewritten(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", n_per_class=TINY, size=64)
    probe = next(root.rglob("*.jpg"))
    mtime = probe.stat().st_mtime_ns
    make_demo_dataset(root, n_per_class=TINY, size=64)
    assert probe.stat().st_mtime_ns == mtime


def test_incomplete_or_different_demo_dataset_is_rewritten(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", n_per_class=TINY, size=64)
    next(root.rglob("*.jpg")).unlink()
    make_demo_dataset(root, n_per_class=TINY, size=64)
    assert len(list(root.rglob("*.jpg"))) == sum(TINY) * len(DEMO_CLASSES)
    make_demo_dataset(root, n_per_class=(1, 1, 1), size=64)
    assert len(list(root.rglob("*.jpg"))) == 3 * len(DEMO_CLASSES)


def test_demo_dataset_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not written by make_demo_dataset"):
        make_demo_dataset(tmp_path, n_per_class=TINY, size=64)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_embedded_backbone_folder_is_small_and_declares_its_own_preprocessing() -> None:
    weights = EMBEDDED / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 10 * 1024 * 1024
    config = json.loads((EMBEDDED / "config.json").read_text(encoding="utf-8"))
    assert config["architecture"] and config["num_classes"] == 0
    cfg = config["pretrained_cfg"]
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
    assert max(abs(a - b) for a, b in zip(cfg["mean"], IMAGENET_MEAN, strict=True)) > 0.05
    assert config["headstart_pretraining"]["classes"] == [
        class_name(s, t) for s, t in SOURCE_CLASSES
    ]


def test_embedded_backbone_builds_offline_through_timm_local_dir() -> None:
    config = json.loads((EMBEDDED / "config.json").read_text(encoding="utf-8"))
    model = timm.create_model(f"local-dir:{EMBEDDED}", pretrained=True, num_classes=0).eval()
    assert list(model.pretrained_cfg["mean"]) == config["pretrained_cfg"]["mean"]
    _, height, width = config["pretrained_cfg"]["input_size"]
    with torch.no_grad():
        features = model(torch.zeros(2, 3, height, width))
    assert features.shape == (2, config["num_features"])
    # pretrained=True really loaded the file: random init would give other weights
    first = next(iter(model.state_dict()))
    assert torch.equal(model.state_dict()[first], load_file(EMBEDDED / "model.safetensors")[first])
