"""Preprocessing resolved from the weights equals timm's and torchvision's own transforms."""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from headstart.data import load_image
from headstart.errors import DataError, PreprocessOverrideWarning, RunFolderError
from headstart.preprocess import Preprocess, preprocess_from_torchvision, resolve_preprocess
from tests._images import write_large_photo_jpeg, write_sample_photo_jpeg

# One per kind of preprocessing timm records: center/squash/border crops, bicubic/bilinear,
# ImageNet/0.5/CLIP means, crop_pct below, at and above 1, large and non-square sizes.
TIMM_WEIGHTS = [
    "resnet50.a1_in1k",  # center, crop_pct 0.95, bicubic
    "convnext_tiny.in12k_ft_in1k",  # the default model
    "vit_base_patch16_224.augreg2_in21k_ft_in1k",  # mean/std 0.5
    "efficientnet_b3.ra2_in1k",  # 288, crop_pct 0.875
    "inception_v3.tv_in1k",  # 299
    "deit_small_patch16_224.fb_in1k",
    "dm_nfnet_f0.dm_in1k",  # squash, 192
    "deepseek_vit_412m.deepseek_v4_flash_vision_exp",  # border, 392
    "vit_base_patch16_clip_224.openai",  # CLIP mean/std
    "resnet18.tv_in1k",  # bilinear
    "volo_d4_448.sail_in1k",  # crop_pct 1.15: the resize is smaller than the crop
    "vit_small_patch14_dinov2.lvd142m",  # 518, crop_pct 1.0
    "test_vit.r160_in1k",
]
LARGE_NON_SQUARE = "vit_5b_patch16_sapiens2.fb"  # 1024x768 squash, bilinear
SYNTHETIC_CFGS = {
    "center-non-square": {"input_size": (3, 160, 224), "crop_pct": 0.9, "crop_mode": "center"},
    "border-non-square": {"input_size": (3, 128, 96), "crop_pct": 0.95, "crop_mode": "border"},
    "squash-bilinear": {
        "input_size": (3, 96, 128),
        "crop_mode": "squash",
        "interpolation": "bilinear",
    },
    "defaults": {"architecture": "none_registered"},
}
TV_WEIGHTS = [
    ("resnet18", "IMAGENET1K_V1"),  # 256 -> 224 bilinear
    ("resnet50", "IMAGENET1K_V2"),  # 232 -> 224
    ("alexnet", "IMAGENET1K_V1"),
    ("squeezenet1_0", "IMAGENET1K_V1"),
    ("vgg16", "IMAGENET1K_V1"),
    ("vgg16", "IMAGENET1K_FEATURES"),  # std 1/255: 0..255 inputs
    ("densenet161", "IMAGENET1K_V1"),
    ("inception_v3", "IMAGENET1K_V1"),  # 342 -> 299
    ("efficientnet_b0", "IMAGENET1K_V1"),  # bicubic
    ("efficientnet_b3", "IMAGENET1K_V1"),  # 320 -> 300 bicubic
    ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1"),  # 384 -> 384 bicubic
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


@pytest.fixture(scope="module")
def images() -> dict[str, Image.Image]:
    """RGB images of every kind load_image produces: converted, tiny, non-square."""
    return {
        "rgb": Image.fromarray(_noise(61, 47)),
        "small": Image.fromarray(_noise(20, 13, seed=1)),  # smaller than any crop
        "tall": Image.fromarray(_noise(13, 40, seed=2)),
        "gray": Image.fromarray(_noise(30, 30, 1, seed=3)[..., 0], "L").convert("RGB"),
        "rgba": Image.fromarray(_noise(33, 25, 4, seed=4), "RGBA").convert("RGB"),
        "cmyk": Image.fromarray(_noise(25, 33, 4, seed=5), "CMYK").convert("RGB"),
    }


def _timm_cfg(name: str) -> dict:
    from timm.models import get_pretrained_cfg

    return get_pretrained_cfg(name).to_dict()


def _timm_reference(cfg: dict, args: dict | None = None):
    from timm.data import create_transform, resolve_data_config

    return create_transform(**resolve_data_config(args or {}, pretrained_cfg=cfg))


def _assert_same(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == torch.float32
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TIMM_WEIGHTS)
def test_timm_weights_preprocess_equals_timm_transform(name, images):
    cfg = _timm_cfg(name)
    ours = resolve_preprocess(cfg, source=f"timm pretrained_cfg {name}")
    ref = _timm_reference(cfg)
    for img in images.values():
        _assert_same(ours(img), ref(img))
    assert ours.overrides == ()


def test_large_non_square_timm_config_equals_timm_transform(images):
    cfg = _timm_cfg(LARGE_NON_SQUARE)
    ours = resolve_preprocess(cfg)
    assert ours.input_size == (1024, 768)
    for key in ("small", "tall"):
        _assert_same(ours(images[key]), _timm_reference(cfg)(images[key]))


@pytest.mark.parametrize("kind", SYNTHETIC_CFGS)
def test_every_crop_mode_branch_equals_timm_transform(kind, images):
    cfg = SYNTHETIC_CFGS[kind]
    ours, ref = resolve_preprocess(cfg), _timm_reference(cfg)
    for img in images.values():
        _assert_same(ours(img), ref(img))


@pytest.mark.parametrize(("arch", "member"), TV_WEIGHTS)
def test_torchvision_weights_preprocess_equals_their_transforms(arch, member, images):
    from torchvision import models

    weights = models.get_model_weights(arch)[member]
    ours = preprocess_from_torchvision(weights)
    assert ours.source == f"torchvision {type(weights).__name__}.{member}"
    ref = weights.transforms()
    for img in images.values():
        _assert_same(ours(img), ref(img))


def test_defaults_are_timms_defaults():
    from timm.data import resolve_data_config

    ref = resolve_data_config({}, pretrained_cfg={"architecture": "x"})
    ours = resolve_preprocess(None)
    assert ours.input_size == tuple(ref["input_size"][1:])
    assert (ours.crop_pct, ours.crop_mode) == (ref["crop_pct"], ref["crop_mode"])
    assert ours.interpolation == ref["interpolation"]
    assert ours.mean == tuple(ref["mean"]) and ours.std == tuple(ref["std"])


def test_non_rgb_input_is_converted_like_the_decoder_does(images):
    pre = resolve_preprocess(_timm_cfg("test_vit.r160_in1k"))
    gray = images["gray"].convert("L")
    _assert_same(pre(gray), pre(gray.convert("RGB")))


def test_dict_round_trip_gives_an_equal_preprocess(images):
    pre = resolve_preprocess(_timm_cfg("dm_nfnet_f0.dm_in1k"), source="timm dm_nfnet")
    data = json.loads(json.dumps(pre.to_dict()))
    back = Preprocess.from_dict(data)
    assert back == pre
    assert back.fingerprint() == pre.fingerprint()
    assert torch.equal(back(images["rgb"]), pre(images["rgb"]))


def test_dict_round_trip_keeps_overrides_and_keras_values():
    with pytest.warns(PreprocessOverrideWarning):
        pre = resolve_preprocess(None, overrides={"keras": "caffe", "input_size": (96, 128)})
    back = Preprocess.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back == pre
    assert set(back.overrides) == {"input_size", "scale", "mean", "std", "channel_order"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"colour": "red"}, "unknown keys"),
        ({"mean": [0.5, 0.5]}, "mean must be 3"),
        ({"crop_mode": "zoom"}, "crop_mode must be one of"),
        ({"input_size": [0, 224]}, "input_size"),
        ({"scale": -1}, "scale"),
        ({"resize": 256, "crop_mode": "squash"}, "needs resize as"),
    ],
)
def test_from_dict_refuses_unknown_keys_and_bad_values(change, match):
    data = resolve_preprocess(None).to_dict()
    data.update(change)
    with pytest.raises(RunFolderError, match=match):
        Preprocess.from_dict(data)


def test_from_dict_refuses_missing_keys():
    data = resolve_preprocess(None).to_dict()
    del data["std"]
    with pytest.raises(RunFolderError, match="missing keys"):
        Preprocess.from_dict(data)


def test_override_that_changes_the_weights_value_warns_and_is_recorded():
    cfg = _timm_cfg("resnet50.a1_in1k")
    with pytest.warns(PreprocessOverrideWarning, match=r"mean \(0\.5, 0\.5, 0\.5\) instead of"):
        pre = resolve_preprocess(cfg, overrides={"mean": (0.5, 0.5, 0.5)})
    assert pre.overrides == ("mean",)
    assert pre.mean == (0.5, 0.5, 0.5)
    assert "overrides:     mean" in pre.describe()


def test_override_equal_to_the_weights_value_is_silent_and_not_recorded():
    cfg = _timm_cfg("resnet50.a1_in1k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pre = resolve_preprocess(cfg, overrides={"mean": cfg["mean"], "crop_pct": None})
    assert pre.overrides == ()


def test_each_override_warning_is_one_line():
    with pytest.warns(PreprocessOverrideWarning) as record:
        resolve_preprocess(None, overrides={"keras": "caffe", "interpolation": "bilinear"})
    assert len(record) == 2  # the keras mode is one choice: one line for its four values
    assert all("\n" not in str(w.message) for w in record)


def test_input_size_override_resizes_like_timm(images):
    cfg = _timm_cfg("resnet50.a1_in1k")
    with pytest.warns(PreprocessOverrideWarning):
        pre = resolve_preprocess(cfg, overrides={"input_size": 96, "crop_pct": 0.8})
    ref = _timm_reference(cfg, {"input_size": (3, 96, 96), "crop_pct": 0.8})
    _assert_same(pre(images["rgb"]), ref(images["rgb"]))
    assert set(pre.overrides) == {"input_size", "crop_pct"}


def test_torchvision_input_size_override_keeps_its_exact_resize_ratio():
    from torchvision.models import ResNet50_Weights

    with pytest.warns(PreprocessOverrideWarning):
        pre = preprocess_from_torchvision(
            ResNet50_Weights.IMAGENET1K_V2, overrides={"input_size": 448}
        )
    assert pre.resize == 464  # 448 * 232 / 224 exactly


def test_mean_override_keeps_the_saved_resize():
    from torchvision.models import ResNet50_Weights

    pre = preprocess_from_torchvision(ResNet50_Weights.IMAGENET1K_V2)
    with pytest.warns(PreprocessOverrideWarning):
        changed = pre.with_overrides({"mean": 0.5})
    assert changed.resize == pre.resize == 232
    assert changed.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"colour": 1}, "Unknown preprocessing override 'colour'"),
        ({"crop_pct": -0.5}, "crop_pct must be in"),
        ({"interpolation": "cubic"}, "interpolation must be one of"),
        ({"std": (0.2, 0.0, 0.2)}, "std must be > 0"),
        ({"input_size": (3, 1, 224, 224)}, "input_size must be"),
        ({"input_size": (1, 224, 224)}, "1 channels"),
        ({"keras": "caffe", "mean": (1, 2, 3)}, "cannot be combined with mean"),
        ({"keras": "theano"}, "keras mode must be one of"),
    ],
)
def test_invalid_overrides_raise_one_line_data_error(overrides, match):
    with pytest.raises(DataError, match=match) as info:
        resolve_preprocess(None, overrides=overrides)
    assert "\n" not in str(info.value)


def test_keras_caffe_mode_gives_bgr_minus_imagenet_mean_in_0_255():
    img = Image.new("RGB", (8, 8), (10, 20, 30))
    with pytest.warns(PreprocessOverrideWarning) as record:
        pre = resolve_preprocess(
            None, overrides={"keras": "caffe", "input_size": 8, "crop_pct": 1.0}
        )
    assert any("keras='caffe'" in str(w.message) for w in record)
    pixel = pre(img)[:, 4, 4]
    # Keras: x[..., ::-1] - [103.939, 116.779, 123.68] -> (30, 20, 10) - mean
    expected = torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68])
    assert torch.allclose(pixel, expected, atol=1e-4)
    assert pre.channel_order == "BGR" and pre.scale == 1.0


def test_keras_tf_mode_scales_to_minus_one_one():
    with pytest.warns(PreprocessOverrideWarning):
        pre = resolve_preprocess(None, overrides={"keras": "tf", "input_size": 4, "crop_pct": 1})
    black, white = Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4), (255, 255, 255))
    assert torch.allclose(pre(black), torch.full((3, 4, 4), -1.0))
    assert torch.allclose(pre(white), torch.full((3, 4, 4), 1.0))


def test_keras_torch_mode_is_imagenet_mean_std_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pre = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"), overrides={"keras": "torch"})
    assert pre.overrides == ()


def test_fingerprint_is_stable_and_changes_when_any_field_changes():
    pre = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"), source="s")
    again = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"), source="s")
    assert pre.fingerprint() == again.fingerprint()
    changes = {
        "input_size": (200, 200),
        "resize": 300,
        "crop_pct": 0.9,
        "crop_mode": "squash",
        "interpolation": "bilinear",
        "scale": 1.0,
        "mean": (0.1, 0.2, 0.3),
        "std": (0.3, 0.2, 0.1),
        "channel_order": "BGR",
        "source": "other",
        "overrides": ("mean",),
        "decode": "exact",
    }
    assert set(changes) == {f.name for f in dataclasses.fields(Preprocess)}
    seen = {pre.fingerprint()}
    for name, value in changes.items():
        extra = {"resize": (300, 300)} if name == "crop_mode" else {}
        changed = dataclasses.replace(pre, **{name: value}, **extra)
        seen.add(changed.fingerprint())
    assert len(seen) == len(changes) + 1


def test_draft_size_is_twice_the_resize_target():
    pre = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"))
    assert pre.resize == 235 and pre.draft_size == (470, 470)
    squash = resolve_preprocess(_timm_cfg(LARGE_NON_SQUARE))
    assert squash.resize == (1024, 768) and squash.draft_size == (1536, 2048)


def test_transform_inserts_the_augmentation_before_the_resize(images):
    pre = resolve_preprocess(_timm_cfg("test_vit.r160_in1k"))
    augmented = pre.transform(ImageOps.mirror)
    img = images["rgb"]
    _assert_same(augmented(img), pre(ImageOps.mirror(img)))
    assert not torch.equal(augmented(img), pre(img))


def test_pipeline_pickles_for_dataloader_workers(images):
    pre = resolve_preprocess(_timm_cfg("deepseek_vit_412m.deepseek_v4_flash_vision_exp"))
    pre(images["small"])  # builds and caches the pipeline
    for obj in (pre, pre.transform()):
        clone = pickle.loads(pickle.dumps(obj))
        assert torch.equal(clone(images["small"]), pre(images["small"]))


def test_timm_cfg_export_resolves_back_to_the_same_preprocessing():
    pre = resolve_preprocess(_timm_cfg("volo_d4_448.sail_in1k"), source="s")
    again = resolve_preprocess(pre.to_timm_cfg(), source="s")
    assert again == pre


def test_describe_shows_sizes_values_and_source():
    from torchvision.models import Inception_V3_Weights

    text = preprocess_from_torchvision(Inception_V3_Weights.IMAGENET1K_V1).describe()
    assert "299x299" in text and "shorter side to 342" in text
    assert "0.485, 0.456, 0.406 (R, G, B)" in text
    assert "torchvision Inception_V3_Weights.IMAGENET1K_V1" in text
    assert "overrides:     none" in text


def _torchvision_to_tensor(pre: Preprocess, img: Image.Image) -> torch.Tensor:
    """What torchvision's ``pil_to_tensor``, scaling and ``Normalize`` compute, step by step."""
    from torchvision.transforms import functional as F

    tensor = F.pil_to_tensor(img)
    if pre.channel_order == "BGR":
        tensor = tensor.flip(0)
    tensor = tensor.to(torch.float32)
    divisor = 1.0 / pre.scale
    tensor = tensor.div(divisor) if divisor == round(divisor) else tensor.mul(pre.scale)
    return F.normalize(tensor, mean=list(pre.mean), std=list(pre.std))


@pytest.mark.parametrize(
    "values",
    [
        {},  # ImageNet, 1/255
        {
            "channel_order": "BGR",
            "scale": 1.0,
            "mean": (103.939, 116.779, 123.68),
            "std": (1, 1, 1),
        },
        {"scale": 1 / 127.5, "mean": (1, 1, 1), "std": (1, 1, 1)},  # Keras "tf"
        {"scale": 0.7, "mean": (0.1, 0.2, 0.3), "std": (0.3, 0.7, 1.9)},
    ],
)
def test_pixel_table_gives_torchvisions_values_bit_for_bit(values):
    pre = Preprocess(input_size=(16, 16), resize=16, **values)
    # Every value 0..255 in every channel, each channel in a different order.
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = Image.fromarray(np.stack([ramp, ramp.T, 255 - ramp], axis=-1))
    ours = pre._to_tensor(img)
    assert torch.equal(ours, _torchvision_to_tensor(pre, img))


def test_tensor_is_chw_over_channels_last_memory():
    pre = Preprocess(input_size=(8, 6), resize=(8, 6), crop_mode="squash")
    tensor = pre(Image.fromarray(_noise(12, 9)))
    assert tensor.shape == (3, 8, 6)
    assert tensor.permute(1, 2, 0).is_contiguous()  # stacks into a channels-last batch


# ---------------------------------------------------------------------- decode exact | fast
# The bounds docs/data.md states for decode="fast": (max, mean) absolute difference from the
# exact tensor, in grey levels (0..255) before normalisation, for photo-like content (grain up to
# std 25) and for any content (grain of std 120 is close to pure noise). benchmarks/decode.py
# measures up to 4 / 0.43 and 15 / 1.77.
FAST_BOUND_PHOTO = (4.0, 0.5)
FAST_BOUND_ANY = (16.0, 2.0)


@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("large")
    return {
        FAST_BOUND_PHOTO: write_large_photo_jpeg(folder / "photo.jpg", (2000, 1500)),
        FAST_BOUND_ANY: write_large_photo_jpeg(
            folder / "grain.jpg", (1500, 2000), noise=120.0, seed=1
        ),
    }


def _decoded(pre: Preprocess, path) -> torch.Tensor:
    """What extraction, training and prediction compute: the decoder, then the preprocessing."""
    return pre(load_image(path, draft_size=pre.draft_size))


def _timm_eval_of_file(cfg: dict, path) -> torch.Tensor:
    with Image.open(path) as img:
        return _timm_reference(cfg)(img.convert("RGB"))


@pytest.mark.parametrize("name", ["resnet50.a1_in1k", "vit_base_patch16_224.augreg2_in21k_ft_in1k"])
def test_exact_decode_of_a_large_jpeg_equals_timms_eval_transform(name, large_jpegs):
    cfg = _timm_cfg(name)
    pre = resolve_preprocess(cfg, overrides={"decode": "exact"})
    assert pre.draft_size is None
    for path in large_jpegs.values():
        _assert_same(_decoded(pre, path), _timm_eval_of_file(cfg, path))


def test_fast_decode_of_a_large_jpeg_stays_within_the_stated_bound(large_jpegs):
    cfg = _timm_cfg("resnet50.a1_in1k")
    pre = resolve_preprocess(cfg)
    assert pre.decode == "fast"
    std = torch.tensor(pre.std).view(3, 1, 1)
    for (most, mean), path in large_jpegs.items():
        grey_levels = (_decoded(pre, path) - _timm_eval_of_file(cfg, path)).abs() * std * 255
        assert grey_levels.max() > 0.5  # the JPEG was DCT-downscaled: fast is not exact here
        assert grey_levels.max() <= most + 1e-3  # whole grey levels, give or take float error
        assert grey_levels.mean() <= mean


# On real photographs the bound depends on the JPEG's chroma subsampling: 4:2:2 chroma is
# upsampled differently once DCT-scaled (benchmarks/decode.py measures up to 3 / 0.39 for 4:4:4
# and 4:2:0, 9 / 0.50 for 4:2:2, over 108 files).
FAST_BOUND_REAL = {"4:4:4": FAST_BOUND_PHOTO, "4:2:0": FAST_BOUND_PHOTO, "4:2:2": (10.0, 0.6)}
# A seeded spread of the benchmark's files: both photos, landscape and portrait, camera sizes,
# qualities from 50 to 95, with and without grain, every subsampling twice.
REAL_JPEGS = [
    ("china.jpg", (2000, 1500), 95, "4:4:4", 8.0),
    ("flower.jpg", (1500, 2000), 50, "4:4:4", 0.0),
    ("china.jpg", (1500, 2000), 75, "4:2:2", 8.0),
    ("flower.jpg", (1500, 2000), 95, "4:2:2", 8.0),
    ("china.jpg", (2000, 1500), 50, "4:2:0", 0.0),
    ("flower.jpg", (2000, 1500), 75, "4:2:0", 8.0),
]


@pytest.mark.parametrize(("photo", "size", "quality", "subsampling", "grain"), REAL_JPEGS)
def test_fast_decode_of_a_real_photograph_stays_within_its_subsamplings_bound(
    photo, size, quality, subsampling, grain, tmp_path
):
    """Proven by mutation: with FAST_BOUND_PHOTO (4 / 0.5) for every subsampling, as the bound
    was first stated, both 4:2:2 cases failed (8 grey levels)."""
    path = write_sample_photo_jpeg(
        tmp_path / "photo.jpg", photo, size, quality=quality, subsampling=subsampling, grain=grain
    )
    cfg = _timm_cfg("resnet50.a1_in1k")
    pre = resolve_preprocess(cfg)
    most, mean = FAST_BOUND_REAL[subsampling]
    grey_levels = (_decoded(pre, path) - _timm_eval_of_file(cfg, path)).abs()
    grey_levels *= torch.tensor(pre.std).view(3, 1, 1) * 255
    assert grey_levels.max() > 0.5  # the JPEG was DCT-downscaled: fast is not exact here
    assert grey_levels.max() <= most + 1e-3
    assert grey_levels.mean() <= mean


def test_choosing_the_decode_is_neither_warned_nor_recorded_as_an_override():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pre = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"), overrides={"decode": "exact"})
    assert (pre.decode, pre.overrides) == ("exact", ())
    assert "decode:        exact" in pre.describe()
    with pytest.raises(DataError, match="decode must be one of exact, fast, got 'slow'"):
        resolve_preprocess(None, overrides={"decode": "slow"})


def test_saved_decode_round_trips_and_a_run_saved_before_it_loads_as_fast():
    exact = resolve_preprocess(None, overrides={"decode": "exact"})
    assert Preprocess.from_dict(json.loads(json.dumps(exact.to_dict()))) == exact
    old = resolve_preprocess(None).to_dict()
    del old["decode"]
    assert Preprocess.from_dict(old).decode == "fast"


def test_fast_decode_keeps_the_cache_key_of_features_cached_before_the_choice_existed():
    pre = resolve_preprocess(_timm_cfg("resnet50.a1_in1k"))
    legacy = {k: v for k, v in pre.to_dict().items() if k != "decode"}
    blob = json.dumps(legacy, sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert pre.fingerprint() == __import__("hashlib").sha256(blob.encode()).hexdigest()
    assert dataclasses.replace(pre, decode="exact").fingerprint() != pre.fingerprint()


def test_exact_decode_survives_a_later_override():
    pre = resolve_preprocess(None, overrides={"decode": "exact"})
    with pytest.warns(PreprocessOverrideWarning):
        changed = pre.with_overrides({"mean": (0.5, 0.5, 0.5)})
    assert changed.decode == "exact"
