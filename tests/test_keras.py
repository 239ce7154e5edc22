"""Keras applications as backbones: Keras' own files load, and features equal Keras' own.

Every model here has seeded random weights saved by Keras itself (no download), at small inputs
(32 px, or the family's minimum), so the parity of each family costs a second or two.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart import ImageClassifier
from headstart.backbones import _keras as hk
from headstart.backbones import (
    create_backbone,
    load_pretrained_classifier,
    resolve_model_preprocess,
)
from headstart.errors import (
    BackboneNotFoundError,
    PreprocessOverrideWarning,
    UnsafeWeightsError,
    WeightsError,
)
from headstart.strategies import Network, backbone_stages
from tests.conftest import write_colour_dataset

keras = hk.import_keras()

# family -> (module with its preprocess_input, smallest input Keras accepts or a small one)
FAMILIES = {
    "VGG16": ("vgg16", 32),
    "VGG19": ("vgg19", 32),
    "ResNet50": ("resnet50", 32),
    "ResNet50V2": ("resnet_v2", 32),
    "InceptionV3": ("inception_v3", 75),
    "Xception": ("xception", 71),
    "MobileNetV2": ("mobilenet_v2", 32),
    "DenseNet121": ("densenet", 32),
    "EfficientNetB0": ("efficientnet", 32),
    "ConvNeXtTiny": ("convnext", 32),
}


def _keras_model(family: str, size: int, seed: int = 1):
    """A Keras application with seeded random weights and non-trivial BatchNorm statistics."""
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, family)(
        weights=None, include_top=False, pooling="avg", input_shape=(size, size, 3)
    )
    rng = np.random.default_rng(seed)
    for variable in model.non_trainable_weights:
        if variable.path.endswith("moving_mean"):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
        elif variable.path.endswith("moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
    return model


def _save_legacy_h5(model, path: Path) -> Path:
    """The layout of Keras applications' ``_notop.h5`` downloads, written by Keras' own code."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def _images(size: int, n: int = 2, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)
    ]


def _keras_features(model, family: str, images: list[Image.Image]) -> np.ndarray:
    module = getattr(keras.applications, FAMILIES[family][0])
    x = np.stack([np.asarray(img, dtype="float32") for img in images])
    return np.asarray(model.predict(module.preprocess_input(x), verbose=0))


def _headstart(model: str, weights, size: int):
    with pytest.warns(PreprocessOverrideWarning, match="input_size"):
        return create_backbone(model, weights=weights, preprocess_overrides={"input_size": size})


@pytest.mark.parametrize("family", list(FAMILIES))
def test_keras_saved_weights_give_keras_own_features(family, tmp_path):
    # Half the families load the .weights.h5 Keras 3 writes, half the legacy _notop.h5 layout
    # Keras applications download: both formats, at half the cost of both for each.
    size = FAMILIES[family][1]
    model = _keras_model(family, size)
    if list(FAMILIES).index(family) % 2:
        weights = _save_legacy_h5(model, tmp_path / f"{family.lower()}_notop.h5")
    else:
        weights = tmp_path / "model.weights.h5"
        model.save_weights(weights)
    images = _images(size)
    expected = _keras_features(model, family, images)

    backbone = _headstart(f"keras:{family}", weights, size)
    x = torch.stack([backbone.preprocess(img) for img in images])
    with torch.no_grad():
        features = backbone.module(x).numpy()
    assert features.shape == (2, backbone.num_features)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-4)
    assert backbone.spec["family"] == "keras" and backbone.weights_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("family", "shown"),
    [
        ("ResNet50", ["224x224", "pixels as they are (0..255)", "103.939, 116.779, 123.68 (B, G"]),
        ("InceptionV3", ["299x299", "pixels / 255 (0..1)", "0.5, 0.5, 0.5 (R, G, B)"]),
        ("DenseNet121", ["224x224", "pixels / 255 (0..1)", "0.485, 0.456, 0.406"]),
        ("EfficientNetB0", ["224x224", "pixels as they are (0..255)", "mean:          0, 0, 0"]),
    ],
)
def test_preprocessing_is_the_familys_preprocess_input_at_its_size(family, shown):
    text = resolve_model_preprocess(f"keras:{family}").describe()
    for part in shown:
        assert part in text
    assert f"keras.applications {family} preprocess_input" in text


def test_headstart_preprocessing_equals_preprocess_input_on_images_at_the_input_size():
    for family, (module_name, _) in FAMILIES.items():
        preprocess = resolve_model_preprocess(f"keras:{family}")
        img = _images(preprocess.input_size[0], n=1)[0]
        module = getattr(keras.applications, module_name)
        expected = module.preprocess_input(np.asarray(img, dtype="float32")[None].copy())[0]
        got = preprocess(img).permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_resize_squash_is_keras_load_img_and_changes_the_fingerprint_only_when_used():
    plain = resolve_model_preprocess("keras:ResNet50")
    assert resolve_model_preprocess("keras:ResNet50", overrides={"resize": "crop"}) == plain
    with pytest.warns(PreprocessOverrideWarning, match="squash"):
        squash = resolve_model_preprocess("keras:ResNet50", overrides={"resize": "squash"})
    assert squash.fingerprint() != plain.fingerprint()
    assert "crop_mode" in squash.overrides
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 300, 3), dtype=np.uint8))
    squashed = img.resize((224, 224), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(squash(img).numpy(), squash(squashed).numpy(), atol=0.6)
    assert squash(img).shape == plain(img).shape == (3, 224, 224)


@pytest.mark.parametrize(
    ("size", "suffix"), [((300, 90), ".png"), ((150, 400), ".jpg"), ((1000, 700), ".jpg")]
)
def test_preprocess_resize_squash_gives_keras_load_img_arrays_exactly(
    size, suffix, tmp_path, capsys
) -> None:
    """Checked against Keras itself, not against headstart: ``headstart preprocess --resize
    squash`` of a photograph (wide, tall, and a JPEG over twice the input size) equals
    ``preprocess_input(img_to_array(load_img(path, target_size=..., interpolation="bilinear")))``
    to the last bit. Proven by mutation: with squash resizing by NEAREST, every case failed."""
    from keras.applications import resnet50
    from sklearn.datasets import load_sample_image

    from headstart.cli.main import main

    path = tmp_path / f"photo{suffix}"
    Image.fromarray(load_sample_image("china.jpg")).resize(size).save(path)
    saved = tmp_path / "x.npy"

    args = ["preprocess", "--model", "keras:ResNet50", "--resize", "squash", str(path)]
    assert main([*args, "--save", str(saved)]) == 0

    assert "warning: preprocessing override resize='squash'" in capsys.readouterr().err
    loaded = keras.utils.load_img(path, target_size=(224, 224), interpolation="bilinear")
    expected = resnet50.preprocess_input(keras.utils.img_to_array(loaded)).transpose(2, 0, 1)
    np.testing.assert_array_equal(np.load(saved), expected)


def test_without_keras_a_keras_name_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # import keras raises ImportError
    with pytest.raises(BackboneNotFoundError, match=r"pip install 'headstart\[keras\]'"):
        hk.import_keras()


def test_unknown_family_and_offline_default_weights_raise_one_line(tmp_path, monkeypatch):
    with pytest.raises(BackboneNotFoundError, match="Did you mean 'keras:ResNet50'"):
        create_backbone("keras:ResNet05", weights="none")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))
    with pytest.raises(BackboneNotFoundError, match="resnet50_weights_tf_dim_ordering_tf_kernels"):
        create_backbone("keras:ResNet50")


def test_weights_of_another_family_raise_weights_error(tmp_path):
    _keras_model("VGG16", 32).save_weights(tmp_path / "vgg.weights.h5")
    with pytest.raises(WeightsError, match="do not fit"):
        create_backbone("keras:ResNet50", weights=tmp_path / "vgg.weights.h5")
    with pytest.raises(WeightsError, match="fits a --model keras:NAME"):
        create_backbone("resnet18", weights=tmp_path / "vgg.weights.h5")


# ---------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(
        tmp_path_factory.mktemp("kdata"), {"train": 4, "val": 2, "test": 2}, size=32
    )


def _fit(tmp: Path, model: str, data: Path, **kwargs) -> ImageClassifier:
    params = dict(
        weights="none",
        strategy="features",
        preprocess={"input_size": 32},
        num_workers=0,
        quiet=True,
        cache_dir=tmp / "cache",
        device="cpu",
    )
    params.update(kwargs)
    with pytest.warns(PreprocessOverrideWarning):
        return ImageClassifier(model, **params).fit(data)


def _bn_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "moving_" in k}


@pytest.fixture(scope="module")
def strategy_fits(colours, tmp_path_factory) -> dict[str, dict[str, ImageClassifier]]:
    """features, augment and finetune on ResNet50 and MobileNetV2, fitted once per module."""
    fits: dict[str, dict[str, ImageClassifier]] = {}
    for family in ("ResNet50", "MobileNetV2"):
        tmp = tmp_path_factory.mktemp(family)
        model = f"keras:{family}"
        fits[family] = {
            "features": _fit(tmp, model, colours),
            "augment": _fit(tmp, model, colours, strategy="augment", epochs=1),
            "finetune": _fit(tmp, model, colours, strategy="finetune", unfreeze=1, epochs=1),
        }
    return fits


@pytest.mark.parametrize("family", ["ResNet50", "MobileNetV2"])
def test_features_augment_and_finetune_train_and_keep_frozen_batchnorm(
    family, strategy_fits, colours
):
    start = _bn_state(create_backbone(f"keras:{family}", weights="none").module)
    images = sorted((colours / "test").rglob("*.*"))
    for name, clf in strategy_fits[family].items():
        assert clf.predict_proba(images).shape == (len(images), 3), name
        after = _bn_state(clf.backbone_.module)
        for key, value in start.items():
            assert torch.equal(value, after[key]), (name, key)


def test_bn_policy_reaches_keras_batchnorm_layer_by_layer():
    backbone = create_backbone("keras:ResNet50", weights="none")
    module = backbone.module
    stages = backbone_stages(module)
    assert len(stages) == 5  # conv1, conv2..conv5 blocks, as Keras names them
    x = torch.randn(2, 3, 32, 32) * 60
    top = [n for n in stages[-1]]
    start = _bn_state(module)

    frozen = Network(module, torch.nn.Linear(2048, 3), trainable=top, bn="frozen").train()
    frozen(x).sum().backward()
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in start.items())
    assert module.get_parameter("conv5_block3_3_conv.kernel").grad is not None
    assert module.get_parameter("conv1_conv.kernel").grad is None

    trains = Network(module, torch.nn.Linear(2048, 3), trainable=top, bn="train").train()
    trains(x)
    now = module.state_dict()
    assert not torch.equal(
        start["conv5_block3_3_bn.moving_mean"], now["conv5_block3_3_bn.moving_mean"]
    )
    assert torch.equal(start["conv1_bn.moving_mean"], now["conv1_bn.moving_mean"])


@pytest.mark.parametrize("strategy", ["features", "finetune"])
def test_keras_run_saves_as_safetensors_and_loads_with_the_same_outputs(
    strategy, strategy_fits, colours, tmp_path
):
    clf = strategy_fits["MobileNetV2"][strategy]
    run = clf.save(tmp_path / "run")
    saved = sorted(p.name for p in run.glob("*.safetensors"))
    assert saved == ["model.safetensors", "typicality.safetensors"]
    loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True, device="cpu")
    images = sorted((colours / "test").rglob("*.*"))
    clf.cache = False
    np.testing.assert_allclose(clf.predict_proba(images), loaded.predict_proba(images), atol=1e-6)
    assert loaded.preprocess_ == clf.preprocess_
    assert loaded.backbone_id_ == clf.backbone_id_
    metrics = loaded.evaluate(colours / "test")
    truth = [loaded.classes_.index(Path(p).parent.name) for p in metrics["paths"]]
    assert metrics["accuracy"] == pytest.approx(np.mean(np.equal(metrics["predicted"], truth)))


def test_user_keras_classifier_is_cut_below_its_top_and_its_head_matches_keras(colours, tmp_path):
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    out = keras.layers.Dense(5, activation="softmax", name="old_top")(pooled)
    model = keras.Model(base.input, out)
    model.save(tmp_path / "clf.keras")

    clf = ImageClassifier(
        f"keras:{tmp_path / 'clf.keras'}",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache=False,
        device="cpu",
    ).fit(colours)  # its top has 5 classes, too few to judge its view by: no warning
    backbone = clf.backbone_
    assert backbone.num_features == 1280 and backbone.preprocess.input_size == (32, 32)
    images = _images(32)
    cut = keras.Model(model.input, model.get_layer("pool").output)
    expected = _keras_features(cut, "MobileNetV2", images)
    with torch.no_grad():
        got = backbone.module(torch.stack([backbone.preprocess(i) for i in images])).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)

    head = clf.head_.state_dict()
    dense = keras.layers.Dense(len(clf.classes_), activation="softmax")
    keras_clf = keras.Model(cut.input, dense(cut.output))
    dense.set_weights([head["weight"].numpy().T, head["bias"].numpy()])
    paths = sorted((colours / "test").rglob("*.*"))
    x = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype="float32") for p in paths])
    keras_proba = keras_clf.predict(keras.applications.mobilenet_v2.preprocess_input(x), verbose=0)
    np.testing.assert_allclose(clf.predict_proba(paths), keras_proba, atol=1e-5)

    run = clf.save(tmp_path / "run")
    loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True, device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(paths), keras_proba, atol=1e-5)


# ---------------------------------------------------------------------- hostile files


def _lambda_model(marker: Path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Lambda(lambda t, m=str(marker): (open(m, "w").close(), t)[1])(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_keras_archive_with_a_lambda_layer_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    _lambda_model(marker).save(tmp_path / "evil.keras")
    marker.unlink(missing_ok=True)  # Keras ran the lambda once while building the model
    with pytest.raises(UnsafeWeightsError, match="Lambda"):
        create_backbone(f"keras:{tmp_path / 'evil.keras'}")
    with pytest.raises(UnsafeWeightsError, match="Lambda"):
        create_backbone("keras:ResNet50", weights=tmp_path / "evil.keras")
    assert not marker.exists()


def test_keras_archive_naming_a_non_keras_class_is_refused(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(tmp_path / "ok.keras")
    with zipfile.ZipFile(tmp_path / "ok.keras") as src:
        files = {name: src.read(name) for name in src.namelist()}
    config = files["config.json"].decode().replace('"module": "keras.layers"', '"module": "os"', 1)
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as dst:
        for name, data in files.items():
            dst.writestr(name, config if name == "config.json" else data)
    with pytest.raises(UnsafeWeightsError, match="module 'os'"):
        create_backbone(f"keras:{tmp_path / 'evil.keras'}")


def test_legacy_full_model_h5_with_a_lambda_is_refused(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    marker = tmp_path / "ran"
    legacy_h5_format.save_model_to_hdf5(_lambda_model(marker), tmp_path / "evil.h5")
    marker.unlink(missing_ok=True)  # Keras ran the lambda once while building the model
    with h5py.File(tmp_path / "evil.h5", "r") as f:
        assert "model_config" in f.attrs
    with pytest.raises(UnsafeWeightsError, match="Lambda"):
        create_backbone(f"keras:{tmp_path / 'evil.h5'}")
    with pytest.raises(UnsafeWeightsError, match="Lambda"):
        create_backbone("keras:ResNet50", weights=tmp_path / "evil.h5")
    assert not marker.exists()


def test_edited_run_config_with_a_lambda_is_refused_on_load(tmp_path):
    with pytest.raises(UnsafeWeightsError, match="Lambda"):
        hk.check_config(
            {
                "class_name": "Functional",
                "config": {"layers": [{"class_name": "Lambda", "config": {"function": "x"}}]},
            },
            "config.json",
        )


# ---------------------------------------------------------------------- pretraining classifier


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits, dim=1).numpy()


def _user_classifier(tmp_path: Path, top) -> Path:
    """A MobileNetV2 classifier with ``top`` (a function of its feature map), saved by Keras."""
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3))
    path = tmp_path / "clf.keras"
    keras.Model(base.input, top(base.output)).save(path)
    return path


def test_user_classifier_top_is_its_pretraining_classifier_with_keras_own_probabilities(tmp_path):
    def top(x):
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.layers.Dense(5, activation="softmax", name="old_top")(x)

    path = _user_classifier(tmp_path, top)
    backbone = create_backbone(f"keras:{path}")
    classifier = load_pretrained_classifier(backbone)
    assert classifier is not None
    assert classifier.classes == tuple(f"class {i}" for i in range(5))
    assert "clf.keras" in classifier.source and "old_top" in classifier.source
    images = _images(32, n=3)
    with torch.no_grad():
        x = torch.stack([backbone.preprocess(img) for img in images])
        got = _softmax(classifier.module(backbone.module(x)))
    model = keras.saving.load_model(path)
    expected = _keras_features(model, "MobileNetV2", images)  # the softmax output
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "top",
    [
        lambda x: keras.layers.Dense(5)(x),  # over the feature map, per position
        lambda x: keras.layers.Dense(5, activation="relu")(
            keras.layers.GlobalAveragePooling2D()(x)
        ),
    ],
    ids=["feature-map", "relu"],
)
def test_user_top_that_is_not_a_plain_classifier_of_pooled_features_gives_none(top, tmp_path):
    backbone = create_backbone(f"keras:{_user_classifier(tmp_path, top)}")
    assert load_pretrained_classifier(backbone) is None


def test_user_classifier_changed_on_disk_gives_no_classifier(tmp_path):
    def top(x):
        return keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))

    path = _user_classifier(tmp_path, top)
    backbone = create_backbone(f"keras:{path}")
    path.write_bytes(b"not the file the backbone was built from")
    assert load_pretrained_classifier(backbone) is None


@pytest.fixture(scope="module")
def mobilenet_with_top(tmp_path_factory):
    """MobileNetV2 with its 1000-class top, seeded, as Keras' full download and as .weights.h5."""
    folder = tmp_path_factory.mktemp("top")
    keras.utils.set_random_seed(2)
    model = keras.applications.MobileNetV2(weights=None, include_top=True, input_shape=(32, 32, 3))
    legacy = _save_legacy_h5(
        model, folder / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    )
    model.save_weights(folder / "full.weights.h5")
    notop = keras.Model(model.input, model.layers[-2].output)  # its global average pool
    notop.save_weights(folder / "notop.weights.h5")
    return model, {
        "legacy": legacy,
        "keras3": folder / "full.weights.h5",
        "notop": folder / "notop.weights.h5",
    }


@pytest.mark.parametrize("kind", ["legacy", "keras3"])
def test_full_imagenet_weights_file_loads_and_brings_its_imagenet_classifier(
    kind, mobilenet_with_top
):
    model, files = mobilenet_with_top
    backbone = _headstart("keras:MobileNetV2", files[kind], 32)
    classifier = load_pretrained_classifier(backbone)
    assert classifier is not None
    assert classifier.classes[1].startswith("goldfish") and len(classifier.classes) == 1000
    images = _images(32, n=3)
    with torch.no_grad():
        x = torch.stack([backbone.preprocess(img) for img in images])
        got = _softmax(classifier.module(backbone.module(x)))
    expected = _keras_features(model, "MobileNetV2", images)  # the full model's predictions
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_notop_weights_file_has_no_classifier(mobilenet_with_top):
    _, files = mobilenet_with_top
    assert load_pretrained_classifier(_headstart("keras:MobileNetV2", files["notop"], 32)) is None
