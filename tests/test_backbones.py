"""Backbones by name: parsing, features, weights, offline behaviour and the offline rebuild."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from headstart.backbones import (
    DEFAULT_MODEL,
    EMBEDDED_MODEL,
    Backbone,
    _local,
    create_backbone,
    list_backbones,
    parse_model_name,
    rebuild_backbone,
    resolve_model_preprocess,
)
from headstart.errors import (
    BackboneNotFoundError,
    PreprocessOverrideWarning,
    RunFolderError,
    WeightsError,
)
from tests._backbones import hf_cache_snapshot

TIMM_TEST = "test_convnext.r160_in1k"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def timm_full():
    """The full timm test model (with its 1000-class classifier), as a pretrained file would be."""
    import timm

    return timm.create_model(TIMM_TEST, pretrained=False).eval()


@pytest.fixture(scope="module")
def random_convnext() -> Backbone:
    return create_backbone(TIMM_TEST, weights="none")


def _batch(backbone: Backbone, n: int = 2) -> torch.Tensor:
    return torch.randn(
        n, 3, *backbone.preprocess.input_size, generator=torch.Generator().manual_seed(0)
    )


def _features(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


# ---------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet50.a1_in1k", ("timm", "resnet50.a1_in1k")),
        ("timm:convnext_tiny", ("timm", "convnext_tiny")),
        ("hf-hub:timm/resnet18.a1_in1k", ("hf-hub", "timm/resnet18.a1_in1k")),
        ("hf_hub:org/repo@v1", ("hf-hub", "org/repo@v1")),
        ("local-dir:/models/mine", ("local-dir", "/models/mine")),
        ("tv:resnet50.IMAGENET1K_V2", ("tv", "resnet50.IMAGENET1K_V2")),
        ("headstart-tiny", ("embedded", "headstart-tiny")),
    ],
)
def test_parse_model_name_splits_source_and_name(name, expected):
    assert parse_model_name(name) == expected


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("./my_model", "looks like a path; write --model local-dir:./my_model"),
        ("/abs/model.safetensors", "looks like a path"),
        ("models\\resnet", "looks like a path"),
        ("tensorflow:vgg16", "Unknown model source 'tensorflow:'"),
        ("tv:./x", "for a folder use local-dir:"),
        ("", "empty"),
        ("hf-hub:", "names nothing"),
    ],
)
def test_parse_model_name_rejects_paths_and_unknown_prefixes(name, match):
    with pytest.raises(BackboneNotFoundError, match=match):
        parse_model_name(name)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("convnxt_tiny", "Unknown backbone 'convnxt_tiny'. Did you mean 'convnext_tiny'"),
        ("headstnt-tiny", "Unknown backbone 'headstnt-tiny'. Did you mean 'headstart-tiny'"),
        ("tv:resnt18", "Unknown torchvision model 'tv:resnt18'. Did you mean 'tv:resnet18'"),
        ("tv:resnet50.IMAGENET9K", "available: tv:resnet50.IMAGENET1K_V1"),
        ("resnet50.no_such_tag", "Unknown pretrained tag 'no_such_tag' for resnet50"),
    ],
)
def test_unknown_names_raise_one_line_with_did_you_mean(model, match):
    with pytest.raises(BackboneNotFoundError, match=match) as info:
        create_backbone(model, weights="none")
    assert "\n" not in str(info.value)


def test_every_listed_backbone_resolves_its_preprocessing_offline():
    names = [name for name, _ in list_backbones()]
    assert names[:2] == [EMBEDDED_MODEL, DEFAULT_MODEL]
    assert len(set(names)) == len(names)
    for name in names:
        if name == EMBEDDED_MODEL and not (_local.EMBEDDED_DIR / name).is_dir():
            continue  # shipped by the package build; tested with a stand-in below
        pre = resolve_model_preprocess(name)
        assert pre.source and pre.input_size[0] >= 64


def test_list_backbones_searches_timm_and_torchvision_names():
    rows = dict(list_backbones("resnet18"))
    assert "resnet18.a1_in1k" in rows and "tv:resnet18.IMAGENET1K_V1" in rows


# ---------------------------------------------------------------------- timm
def test_timm_random_init_gives_pooled_features_in_eval_mode(random_convnext):
    b = random_convnext
    assert not b.module.training
    x = _batch(b)
    assert _features(b.module, x).shape == (2, b.num_features)
    assert b.spec["family"] == "timm" and b.spec["architecture"] == "test_convnext"
    assert b.spec["classifier"] == "head.fc"
    assert b.weights_id.startswith("random:sha256:")
    json.dumps(b.spec)  # JSON-able, for the run folder
    assert "hf_hub_id" not in b.spec["pretrained_cfg"] and "url" not in b.spec["pretrained_cfg"]


def test_random_init_is_reproducible_and_identified_by_its_tensors(random_convnext):
    again = create_backbone(TIMM_TEST, weights="none")
    assert again.weights_id == random_convnext.weights_id
    x = _batch(again)
    assert torch.equal(_features(again.module, x), _features(random_convnext.module, x))
    other = create_backbone("test_resnet.r160_in1k", weights="none")
    assert other.weights_id != random_convnext.weights_id


def test_timm_weights_file_with_classifier_gives_the_full_models_pre_logits(timm_full, tmp_path):
    path = tmp_path / "full.safetensors"
    save_file(timm_full.state_dict(), path)
    b = create_backbone(TIMM_TEST, weights=str(path))
    x = _batch(b)
    expected = timm_full.forward_head(timm_full.forward_features(x), pre_logits=True)
    assert torch.allclose(_features(b.module, x), expected, atol=1e-5)
    assert b.weights_id.startswith("sha256:") and b.spec["weights"] == str(path)


def test_nested_dataparallel_pth_checkpoint_loads(timm_full, tmp_path):
    path = tmp_path / "ckpt.pth"
    state = {f"module.{k}": v for k, v in timm_full.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, path)
    b = create_backbone(TIMM_TEST, weights=path)
    x = _batch(b)
    expected = timm_full.forward_head(timm_full.forward_features(x), pre_logits=True)
    assert torch.allclose(_features(b.module, x), expected, atol=1e-5)


def test_weights_of_another_architecture_raise_weights_error_naming_keys(tmp_path):
    import timm

    other = timm.create_model("test_resnet.r160_in1k", pretrained=False)
    path = tmp_path / "resnet.safetensors"
    save_file(other.state_dict(), path)
    with pytest.raises(WeightsError, match=r"do not fit .*(missing|unexpected|shape)") as info:
        create_backbone(TIMM_TEST, weights=path)
    assert "\n" not in str(info.value)


def test_missing_weights_file_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not 'default', 'none' or an existing weights file"):
        create_backbone(TIMM_TEST, weights=str(tmp_path / "nope.safetensors"))


def test_preprocess_overrides_reach_the_backbone_and_warn():
    with pytest.warns(PreprocessOverrideWarning, match="input_size"):
        b = create_backbone(TIMM_TEST, weights="none", preprocess_overrides={"input_size": 96})
    assert b.preprocess.input_size == (96, 96) and b.preprocess.overrides == ("input_size",)


def test_resolve_model_preprocess_matches_the_built_backbone(random_convnext):
    assert resolve_model_preprocess(TIMM_TEST) == random_convnext.preprocess


def test_rebuild_gives_the_same_network_offline(random_convnext):
    spec = json.loads(json.dumps(random_convnext.spec))
    rebuilt = rebuild_backbone(spec, random_convnext.preprocess)
    rebuilt.module.load_state_dict(random_convnext.module.state_dict(), strict=True)
    x = _batch(rebuilt)
    assert torch.equal(_features(rebuilt.module, x), _features(random_convnext.module, x))
    assert rebuilt.weights_id == random_convnext.weights_id
    assert rebuilt.num_features == random_convnext.num_features and not rebuilt.module.training


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"family": "jax"}, RunFolderError, "family 'jax' is unknown"),
        ({"architecture": None}, RunFolderError, "no architecture"),
        ({"architecture": "os.system"}, BackboneNotFoundError, "Unknown timm architecture"),
        ({"model_args": {"pretrained": True}}, RunFolderError, "'pretrained' is not allowed"),
        ({"model_args": {"checkpoint_path": "/x.pth"}}, RunFolderError, "not allowed"),
        ({"model_args": {"act_kwargs": {"a": 1}}}, RunFolderError, "must be a number"),
    ],
)
def test_rebuild_refuses_a_bad_spec(random_convnext, change, error, match):
    spec = {**random_convnext.spec, **change}
    with pytest.raises(error, match=match):
        rebuild_backbone(spec, random_convnext.preprocess)


def test_default_weights_offline_fail_fast_with_the_alternatives(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    started = time.monotonic()
    with pytest.raises(BackboneNotFoundError) as info:
        create_backbone(TIMM_TEST)
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "\n" not in message
    for alternative in ("headstart-tiny", "local-dir:PATH", "--weights PATH.safetensors", "none"):
        assert alternative in message


# ---------------------------------------------------------------------- torchvision
@pytest.mark.parametrize(
    ("model", "classifier", "width", "size"),
    [
        ("tv:resnet18", "fc", 512, 64),
        ("tv:squeezenet1_0", "classifier", 512, 64),
        ("tv:mobilenet_v3_small", "classifier.3", 1024, 64),
        ("tv:alexnet", "classifier.6", 4096, 64),
        ("tv:inception_v3", "fc", 2048, 75),
    ],
)
def test_torchvision_backbones_output_the_input_of_their_classifier(model, classifier, width, size):
    b = create_backbone(model, weights="none")
    assert b.spec["classifier"] == classifier and b.num_features == width
    assert _features(b.module, torch.randn(1, 3, size, size)).shape == (1, width)
    assert not b.module.training and b.spec["family"] == "torchvision"
    json.dumps(b.spec)


def test_torchvision_inception_has_no_aux_logits_and_keeps_input_transform():
    b = create_backbone("tv:inception_v3", weights="none")
    assert b.module.AuxLogits is None
    assert b.spec["model_args"] == {"aux_logits": False, "transform_input": True}
    assert b.preprocess.input_size == (299, 299) and b.preprocess.resize == 342


def test_torchvision_weights_file_gives_the_full_models_penultimate_features(tmp_path):
    from torchvision import models

    torch.manual_seed(1)
    full = models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    b = create_backbone("tv:resnet18", weights=path)
    full.fc = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(_features(b.module, x), _features(full, x), atol=1e-5)


def test_torchvision_inception_file_with_aux_head_loads(tmp_path):
    from torchvision import models

    full = models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.safetensors"
    save_file(full.state_dict(), path)
    b = create_backbone("tv:inception_v3", weights=path)
    assert b.weights_id.startswith("sha256:")


def test_torchvision_rebuild_loads_the_saved_state():
    b = create_backbone("tv:squeezenet1_0", weights="none")
    rebuilt = rebuild_backbone(json.loads(json.dumps(b.spec)), b.preprocess)
    rebuilt.module.load_state_dict(b.module.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_features(rebuilt.module, x), _features(b.module, x))


def test_torchvision_default_weights_offline_fail_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackboneNotFoundError, match="Offline, use --model headstart-tiny") as e:
        create_backbone("tv:resnet18")
    assert "tv:resnet18.IMAGENET1K_V1" in str(e.value)


def test_torchvision_preprocessing_follows_the_named_weights():
    pre = resolve_model_preprocess("tv:resnet50.IMAGENET1K_V2")
    assert (pre.resize, pre.input_size) == (232, (224, 224))
    assert resolve_model_preprocess("tv:resnet50").source.endswith("IMAGENET1K_V2")  # DEFAULT


# ---------------------------------------------------------------------- folders
def _save_timm_folder(folder: Path, model_name: str = TIMM_TEST, **kwargs) -> torch.nn.Module:
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model(model_name, pretrained=False, **kwargs).eval()
    save_for_hf(model, str(folder), safe_serialization=True)
    return model


def test_local_dir_in_timm_layout_loads_through_the_safe_loader(tmp_path, timm_full):
    full = _save_timm_folder(tmp_path / "m")  # with a 1000-class classifier
    b = create_backbone(f"local-dir:{tmp_path / 'm'}")
    x = _batch(b)
    expected = full.forward_head(full.forward_features(x), pre_logits=True)
    assert torch.allclose(_features(b.module, x), expected, atol=1e-5)
    assert b.weights_id.startswith("sha256:")
    assert b.preprocess.source == f"local-dir {tmp_path / 'm'} config.json"
    assert b.preprocess == resolve_model_preprocess(f"local-dir:{tmp_path / 'm'}")
    rebuilt = rebuild_backbone(json.loads(json.dumps(b.spec)), b.preprocess)
    rebuilt.module.load_state_dict(b.module.state_dict(), strict=True)


def test_local_dir_preprocessing_comes_from_its_config(tmp_path):
    _save_timm_folder(tmp_path / "m", "test_vit.r160_in1k", num_classes=0)
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    config["pretrained_cfg"].update(mean=[0.1, 0.2, 0.3], crop_pct=1.0)
    config_path.write_text(json.dumps(config))
    pre = resolve_model_preprocess(f"local-dir:{tmp_path / 'm'}")
    assert pre.mean == (0.1, 0.2, 0.3) and pre.resize == 160


def test_local_dir_without_config_raises_one_line(tmp_path):
    with pytest.raises(BackboneNotFoundError, match="has no config.json"):
        create_backbone(f"local-dir:{tmp_path}")


def test_embedded_name_resolves_to_the_shipped_folder(tmp_path, monkeypatch):
    _save_timm_folder(tmp_path / EMBEDDED_MODEL, "test_resnet.r160_in1k")
    monkeypatch.setattr(_local, "EMBEDDED_DIR", tmp_path)
    b = create_backbone(EMBEDDED_MODEL)
    assert b.spec["model"] == EMBEDDED_MODEL and b.spec["architecture"] == "test_resnet"
    assert b.preprocess.source == f"embedded {EMBEDDED_MODEL} config.json"
    assert _features(b.module, _batch(b, 1)).shape == (1, b.num_features)


def test_missing_embedded_model_says_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(_local, "EMBEDDED_DIR", tmp_path)
    with pytest.raises(BackboneNotFoundError, match="missing from this installation"):
        create_backbone(EMBEDDED_MODEL)


def test_hf_hub_model_is_read_through_the_safe_loader(tmp_path, monkeypatch):
    import huggingface_hub

    folder = tmp_path / "snapshot"
    _save_timm_folder(folder, "test_resnet.r160_in1k")
    requested = []

    def fake_download(repo_id, filename, revision=None):
        requested.append((repo_id, filename, revision))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    b = create_backbone("hf-hub:someone/tiny-resnet@main")
    assert requested == [
        ("someone/tiny-resnet", "config.json", "main"),
        ("someone/tiny-resnet", "model.safetensors", "main"),
    ]
    assert b.spec["architecture"] == "test_resnet" and b.weights_id.startswith("sha256:")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hf_hub_offline_loads_a_cached_pytorch_model_bin_and_prefers_safetensors(
    monkeypatch, tmp_path
):
    import timm
    from huggingface_hub import constants
    from timm.models._hub import save_for_hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = hf_cache_snapshot(tmp_path, "someone/old-upload")
    model = timm.create_model("test_resnet.r160_in1k", pretrained=False).eval()
    save_for_hf(model, str(snapshot), safe_serialization=False)  # older uploads: the .bin only
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", "pytorch_model.bin"]
    b = create_backbone("hf-hub:someone/old-upload")
    x = _batch(b)
    expected = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.allclose(_features(b.module, x), expected, atol=1e-5)
    assert b.weights_id == f"sha256:{_sha256(snapshot / 'pytorch_model.bin')}"
    save_for_hf(model, str(snapshot), safe_serialization=True)  # both cached: the safetensors
    b = create_backbone("hf-hub:someone/old-upload")
    assert b.weights_id == f"sha256:{_sha256(snapshot / 'model.safetensors')}"


def test_hf_hub_offline_raises_one_line_with_local_alternatives(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BackboneNotFoundError, match="local-dir:PATH") as info:
        resolve_model_preprocess("hf-hub:timm/resnet18.a1_in1k")
    assert "\n" not in str(info.value)


def _write_run_folder(folder: Path, backbone: Backbone, preprocess, *, timm_layout: bool) -> None:
    """A headstart run folder: backbone tensors plus a head, config with a headstart section."""
    folder.mkdir()
    state = {k: v.contiguous() for k, v in backbone.module.state_dict().items()}
    state["headstart_head.0.weight"] = torch.ones(3, backbone.num_features)
    config: dict = {"headstart": {"preprocess": preprocess.to_dict(), "backbone": backbone.spec}}
    if timm_layout:
        state[f"{backbone.spec['classifier']}.weight"] = torch.ones(3, backbone.num_features)
        config.update(
            architecture=backbone.spec["architecture"],
            model_args=backbone.spec["model_args"],
            pretrained_cfg=backbone.spec["pretrained_cfg"],
        )
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("model", [TIMM_TEST, "tv:squeezenet1_0"])
def test_headstart_run_folder_serves_as_a_backbone_with_its_exact_preprocessing(model, tmp_path):
    trained = create_backbone(model, weights="none")
    with pytest.warns(PreprocessOverrideWarning):
        saved = trained.preprocess.with_overrides({"keras": "caffe"})  # not expressible in timm
    _write_run_folder(tmp_path / "run", trained, saved, timm_layout=model == TIMM_TEST)
    b = create_backbone(f"local-dir:{tmp_path / 'run'}")
    assert b.preprocess == saved and b.spec["family"] == trained.spec["family"]
    x = _batch(b) if model == TIMM_TEST else torch.randn(1, 3, 64, 64)
    assert torch.equal(_features(b.module, x), _features(trained.module, x))


def test_recommended_backbones_describe_the_pretraining_their_tag_names() -> None:
    from headstart.backbones import list_backbones

    for name, description in list_backbones(None):
        tag = name.partition(".")[2]
        for data, words in (("in12k", "ImageNet-12k"), ("in22k", "ImageNet-22k")):
            if tag.startswith(data):
                assert words in description, (name, description)
            elif words in description:
                raise AssertionError(f"{name} is described as {words}: {description}")
