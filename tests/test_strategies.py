"""The transfer strategies on a tiny BatchNorm backbone: frozen means frozen, and each one works.

The backbone (tests/_backbones.py) has BatchNorm statistics "pretrained" on inputs unlike the
colour images, so a backbone wrongly left in training mode computes visibly different features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import headstart.features.extract as extract_module
from headstart import ImageClassifier
from headstart.backbones import create_backbone
from headstart.data import load_dataset, load_image
from headstart.errors import HeadstartError, HeadstartWarning
from headstart.features import FeatureCache, extract_features, feature_namespace
from headstart.heads import HeadTrainingConfig, train_head
from headstart.heads.training import lr_factor
from headstart.strategies import Network, backbone_stages, resolve_settings
from headstart.strategies._loop import resolve_amp
from headstart.strategies._network import param_groups, unfrozen_stages
from tests._backbones import write_bn_backbone
from tests.conftest import write_colour_dataset


@pytest.fixture(scope="module")
def bn_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_bn_backbone(tmp_path_factory.mktemp("bn") / "backbone")


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_dataset(tmp_path_factory.mktemp("data"), {"train": 8, "val": 8, "test": 4})


def _clf(tmp: Path, model: str, **kwargs) -> ImageClassifier:
    params = dict(strategy="features", num_workers=0, quiet=True, cache_dir=tmp / "cache")
    params.update(kwargs)
    return ImageClassifier(model, **params)


@pytest.fixture(scope="module")
def fitted(bn_model: str, colours: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """features, augment and finetune on the same data with batches of two images."""
    tmp = tmp_path_factory.mktemp("fits")
    return {
        "features": _clf(tmp, bn_model, refit=False).fit(colours),
        "augment": _clf(
            tmp,
            bn_model,
            strategy="augment",
            refit=False,  # val keeps its own metrics, compared with the features head's
            augment="none",
            epochs=15,
            batch_size=2,
            schedule="constant",
            warmup_epochs=0,
        ).fit(colours),
        "finetune": _clf(
            tmp, bn_model, strategy="finetune", unfreeze=1, epochs=2, batch_size=2, refit=False
        ).fit(colours),
    }


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_frozen_network_in_train_mode_computes_the_cached_features(bn_model, colours, tmp_path):
    backbone = create_backbone(bn_model)
    paths = sorted((colours / "val").rglob("*.*"))
    cached = extract_features(backbone, paths, num_workers=0, quiet=True).features
    network = Network(backbone.module, torch.nn.Linear(backbone.num_features, 3)).train()
    assert not any(m.training for m in network.backbone.modules())
    assert not any(p.requires_grad for p in network.backbone.parameters())
    x = torch.stack([backbone.preprocess(load_image(p)) for p in paths])
    np.testing.assert_allclose(network.backbone(x).detach().numpy(), cached, atol=1e-5)


def test_augment_leaves_the_backbone_bit_for_bit_as_pretrained(fitted, bn_model) -> None:
    pretrained = _state(create_backbone(bn_model).module)
    trained = fitted["augment"].backbone_.module.state_dict()
    assert pretrained.keys() == trained.keys()
    for name, value in pretrained.items():
        assert torch.equal(value, trained[name]), name
    assert fitted["augment"].backbone_id_ == fitted["features"].backbone_id_


def test_augment_without_augmentation_matches_the_head_on_cached_features(fitted) -> None:
    on_features = fitted["features"].metrics_["val"]["accuracy"]
    end_to_end = fitted["augment"].metrics_["val"]["accuracy"]
    assert on_features >= 0.9
    assert abs(end_to_end - on_features) <= 0.1


def _trap_val_accuracy(model: str, data: Path, seed: int) -> float:
    """What `trainable=False` alone did in old Keras: frozen weights, BatchNorm in train mode."""
    dataset = load_dataset(data)
    backbone = create_backbone(model)
    net = backbone.module

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        samples = dataset.splits[split]
        x = torch.stack([backbone.preprocess(load_image(s.path)) for s in samples])
        return x, torch.tensor([s.label for s in samples])

    (xt, yt), (xv, yv) = tensors("train"), tensors("val")
    for param in net.parameters():
        param.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.no_grad():
            features = net.eval()(xt)
        shift, scale = features.mean(0), 1 / (features.std(0) + 1e-6)
        head = torch.nn.Linear(backbone.num_features, 3)
        optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
        for _ in range(15):
            net.train()  # the trap: "frozen", yet BatchNorm uses (and updates) batch statistics
            order = torch.randperm(len(xt))
            for start in range(0, len(xt), 2):
                idx = order[start : start + 2]
                loss = F.cross_entropy(head((net(xt[idx]) - shift) * scale), yt[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        net.eval()
        with torch.no_grad():
            predicted = head((net(xv) - shift) * scale).argmax(1)
    return float((predicted == yv).float().mean())


def test_frozen_backbone_left_in_train_mode_loses_accuracy_augment_and_finetune_keep(
    fitted, bn_model, colours
) -> None:
    trap = np.mean([_trap_val_accuracy(bn_model, colours, seed) for seed in range(3)])
    on_features = fitted["features"].metrics_["val"]["accuracy"]
    assert trap <= on_features - 0.3, (trap, on_features)
    assert fitted["augment"].metrics_["val"]["accuracy"] >= on_features - 0.1
    assert fitted["finetune"].metrics_["val"]["accuracy"] >= on_features - 0.1


def _fresh_proba(clf: ImageClassifier, images: list[Path]) -> np.ndarray:
    """Predictions computed now, not served from the cache the fit filled: features computed in
    other batches may differ in the last float bits (batch-size-dependent kernels), so only
    features computed alike can be compared bit for bit."""
    cache = clf.cache
    clf.cache = False
    try:
        return clf.predict_proba(images)
    finally:
        clf.cache = cache


def test_every_strategy_round_trips_through_save_and_load(fitted, colours, tmp_path) -> None:
    images = sorted((colours / "test").rglob("*.*"))
    for name, clf in fitted.items():
        run = clf.save(tmp_path / name)
        loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True)
        np.testing.assert_array_equal(_fresh_proba(clf, images), loaded.predict_proba(images))
        assert loaded.settings_ == clf.settings_
        assert loaded.backbone_id_ == clf.backbone_id_


def test_finetune_trains_the_top_stage_and_keeps_batchnorm_statistics(bn_model, colours, tmp_path):
    # No validation split: the fine-tuned weights replace the head-only result.
    clf = _clf(
        tmp_path, bn_model, strategy="finetune", unfreeze=1, epochs=2, batch_size=4, val_fraction=0
    ).fit(colours / "train")
    before = _state(create_backbone(bn_model).module)
    after = clf.backbone_.module.state_dict()
    assert not torch.equal(before["layer4.0.conv1.weight"], after["layer4.0.conv1.weight"])
    assert not torch.equal(before["layer4.0.bn1.weight"], after["layer4.0.bn1.weight"])
    assert torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    for name, value in before.items():
        if "running_" in name or "num_batches_tracked" in name:
            assert torch.equal(value, after[name]), name
    assert clf.backbone_id_.startswith("trained:sha256:")
    assert clf.backbone_.spec["trained_from"].startswith("sha256:")


def test_bn_train_with_small_batches_warns_and_updates_statistics(bn_model, colours, tmp_path):
    clf = _clf(
        tmp_path,
        bn_model,
        strategy="finetune",
        unfreeze=1,
        bn="train",
        epochs=1,
        batch_size=4,
        val_fraction=0,
    )
    with pytest.warns(HeadstartWarning, match="statistics of 4 images mean little"):
        clf.fit(colours / "train")
    before = create_backbone(bn_model).module.state_dict()
    after = clf.backbone_.module.state_dict()
    assert not torch.equal(before["layer4.0.bn1.running_mean"], after["layer4.0.bn1.running_mean"])
    assert torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert clf.config()["headstart"]["training"]["bn"] == "train"


def test_train_mode_puts_only_unfrozen_stages_in_training_mode(bn_model) -> None:
    backbone = create_backbone(bn_model)
    stages = backbone_stages(backbone.module)
    top = unfrozen_stages(stages, 1)
    head = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(backbone.num_features, 3))
    frozen_bn = Network(backbone.module, head, [n for s in top for n in s], bn="frozen").train()
    layers = frozen_bn.backbone
    assert layers.layer4.training and layers.layer4[0].conv1.training
    assert not layers.layer4[0].bn1.training and not layers.layer1.training
    assert frozen_bn.head[0].training
    batch_bn = Network(backbone.module, head, [n for s in top for n in s], bn="train").train()
    assert batch_bn.backbone.layer4[0].bn1.training
    assert not batch_bn.backbone.layer1[0].bn1.training


def test_each_lower_stage_learns_at_layer_decay_times_the_rate_above(bn_model) -> None:
    backbone = create_backbone(bn_model)
    stages = backbone_stages(backbone.module)
    assert [s[0].split(".")[0] for s in stages] == ["conv1", "layer1", "layer2", "layer3", "layer4"]
    top = unfrozen_stages(stages, 3)
    network = Network(backbone.module, torch.nn.Linear(96, 3), [n for s in top for n in s])
    groups = param_groups(network, top, weight_decay=0.01, layer_decay=0.5)
    scales = {g["name"]: g["lr_scale"] for g in groups}
    assert scales == {
        "head": 1.0,
        "head.no_decay": 1.0,
        "top-1": 0.5,
        "top-1.no_decay": 0.5,
        "top-2": 0.25,
        "top-2.no_decay": 0.25,
        "top-3": 0.125,
        "top-3.no_decay": 0.125,
    }
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith("no_decay"))


def test_torchvision_backbones_split_into_stages_covering_every_parameter() -> None:
    backbone = create_backbone("tv:resnet18", weights="none")
    stages = backbone_stages(backbone.module)
    names = [n for stage in stages for n in stage]
    assert sorted(names) == sorted(n for n, _ in backbone.module.named_parameters())
    assert stages[0] == ["conv1.weight"] and stages[-1][0].startswith("layer4.1.")
    assert len(stages) == 10  # conv1, bn1 and eight residual blocks


def test_scratch_trains_the_architecture_from_random_weights(bn_model, colours, tmp_path) -> None:
    clf = _clf(tmp_path, bn_model, strategy="scratch", epochs=2).fit(colours)
    training = clf.config()["headstart"]["training"]
    assert (training["bn"], training["schedule"], training["unfreeze"]) == (
        "train",
        "onecycle",
        "all",
    )
    assert clf.backbone_.spec["trained_from"].startswith("random:")
    run = clf.save(tmp_path / "run")
    images = sorted((colours / "test").rglob("*.*"))
    loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True)
    np.testing.assert_array_equal(_fresh_proba(clf, images), loaded.predict_proba(images))


def test_scratch_with_a_weights_file_raises(bn_model, colours, tmp_path) -> None:
    weights = Path(bn_model.split(":", 1)[1]) / "model.safetensors"
    with pytest.raises(HeadstartError, match="--strategy finetune --unfreeze all"):
        _clf(tmp_path, bn_model, strategy="scratch", weights=str(weights)).fit(colours)


def test_aug_views_are_cached_per_view_and_validation_is_never_augmented(
    bn_model, colours, tmp_path, monkeypatch
) -> None:
    clf = _clf(tmp_path, bn_model, aug_views=2).fit(colours)
    backbone = create_backbone(bn_model)
    n_train, n_all = 24, 24 + 24 + 12
    with FeatureCache(tmp_path / "cache") as cache:
        assert cache.count(feature_namespace(backbone)) == n_all
        assert cache.count() == n_all + 2 * n_train
    assert clf.extraction_ == {"computed": n_all + 2 * n_train, "cached": 0}
    calls: list[int] = []
    original = extract_module._Forward.__call__
    monkeypatch.setattr(
        extract_module._Forward,
        "__call__",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    again = _clf(tmp_path, bn_model, aug_views=2).fit(colours)
    assert calls == [] and again.extraction_["computed"] == 0
    assert torch.equal(again.head_.weight, clf.head_.weight)


def test_augmented_views_change_what_the_head_learns() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    config = HeadTrainingConfig(epochs=4)
    plain = train_head("linear", x, y, x, y, 3, config, quiet=True)
    views = [x + rng.normal(0, 0.5, x.shape).astype(np.float32)]
    viewed = train_head("linear", x, y, x, y, 3, config, quiet=True, train_views=views)
    assert not torch.equal(plain.head.weight, viewed.head.weight)
    with pytest.raises(HeadstartError, match="same images in the same order"):
        train_head("linear", x, y, x, y, 3, config, quiet=True, train_views=[x[:10]])


def test_layer_features_are_cached_apart_and_used_again_after_load(bn_model, colours, tmp_path):
    clf = _clf(tmp_path, bn_model, layer="layer2").fit(colours)
    assert clf.backbone_.num_features == 48 and clf.backbone_.spec["layer"] == 2
    assert clf.head_.in_features == 48
    assert feature_namespace(clf.backbone_) != feature_namespace(create_backbone(bn_model))
    run = clf.save(tmp_path / "run")
    loaded = ImageClassifier.load(run, cache=False, num_workers=0, quiet=True)
    images = sorted((colours / "test").rglob("*.*"))
    np.testing.assert_array_equal(clf.predict_proba(images), loaded.predict_proba(images))
    assert loaded.backbone_.spec["layer_module"] == "layer2"


def test_results_do_not_depend_on_the_number_of_decoding_workers(bn_model, colours, tmp_path):
    runs = [
        _clf(tmp_path, bn_model, strategy="augment", epochs=2, num_workers=workers).fit(colours)
        for workers in (0, 2)
    ]
    assert runs[0].history_ == runs[1].history_
    heads = [run.head_.state_dict() for run in runs]
    for name, value in heads[0].items():
        assert torch.equal(value, heads[1][name]), name


def test_unknown_layer_lists_the_stages(bn_model, colours, tmp_path) -> None:
    with pytest.raises(HeadstartError, match=r"choose a stage index or name: 0 \(act1\), 1"):
        _clf(tmp_path, bn_model, layer="layer9").fit(colours)


def test_options_a_strategy_does_not_use_are_refused() -> None:
    with pytest.raises(HeadstartError, match="unfreeze does not apply to --strategy augment"):
        resolve_settings("augment", unfreeze=2)
    with pytest.raises(HeadstartError, match="needs --aug-views K"):
        resolve_settings("features", augment="strong")
    with pytest.raises(HeadstartError, match="bn does not apply to --strategy features"):
        resolve_settings("features", bn="train")


def test_each_strategy_has_its_own_defaults() -> None:
    features, finetune = resolve_settings("features"), resolve_settings("finetune")
    assert (features.lr, features.augment.preset, features.schedule) == (1e-3, "none", "constant")
    assert (finetune.lr, finetune.augment.preset, finetune.bn) == (1e-4, "default", "frozen")
    assert resolve_settings("features", aug_views=3).augment.preset == "default"


def test_schedules_warm_up_and_decay() -> None:
    cosine = [lr_factor("cosine", s, 100, 10) for s in range(100)]
    assert cosine[0] < cosine[9] <= 1.0 and cosine[10] == pytest.approx(1.0) and cosine[-1] < 0.01
    onecycle = [lr_factor("onecycle", s, 100) for s in range(101)]
    assert onecycle[0] == pytest.approx(1 / 25) and max(onecycle) == pytest.approx(1.0)
    assert onecycle[-1] == pytest.approx(1e-4)
    assert {lr_factor("constant", s, 100) for s in range(100)} == {1.0}


def test_mixed_precision_is_refused_off_cuda() -> None:
    assert resolve_amp(None, torch.device("cpu")) is None
    with pytest.raises(HeadstartError, match="CUDA only"):
        resolve_amp(True, torch.device("cpu"))


def test_end_to_end_strategies_start_from_the_features_head_and_never_end_worse(fitted) -> None:
    for name in ("augment", "finetune"):
        clf = fitted[name]
        first = clf.history_[0]
        assert first["phase"] == "head" and first["epoch"] == 1
        kept = clf.history_[clf.best_epoch_ - 1]
        assert kept["val_loss"] <= first["val_loss"]
        assert clf.metrics_["val"]["accuracy"] >= first["val_accuracy"] - 1e-9 or (
            clf.best_epoch_ > 1
        )


def test_end_to_end_defaults_scale_to_small_data_and_leave_given_values_alone() -> None:
    from headstart.strategies import resolve_settings
    from headstart.strategies._settings import MIN_STEPS, scale_to_data

    settings = resolve_settings("augment")
    flags = dict(epochs_given=False, batch_given=False, lr_given=False, patience_given=False)
    small = scale_to_data(settings, 45, **flags)
    steps = -(-45 // small.batch_size)
    assert small.batch_size == 8 and small.epochs * steps >= MIN_STEPS["augment"]
    assert small.lr < settings.lr and small.patience >= small.epochs // 4
    assert scale_to_data(settings, 10_000, **flags) == settings  # enough steps already
    given = dict(epochs_given=True, batch_given=True, lr_given=True, patience_given=True)
    assert scale_to_data(settings, 45, **given) == settings
    features = resolve_settings("features")
    assert scale_to_data(features, 45, **flags) == features
