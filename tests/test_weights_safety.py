"""A hostile weights file or model folder is refused as data, never executed or downloaded."""

from __future__ import annotations

import json
import os
import pickle
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from headstart.backbones import create_backbone, load_state_dict_file, resolve_model_preprocess
from headstart.errors import BackboneNotFoundError, UnsafeWeightsError, WeightsError
from tests._backbones import hf_cache_snapshot

TIMM_TEST = "test_resnet.r160_in1k"


class _Payload:
    """Unpickling this runs ``os.system``: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    """Unpickling this calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: loading must never reach the network."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert not attempts


@pytest.fixture(autouse=True)
def weights_only_torch_load(monkeypatch):
    """Fail loudly if anything calls torch.load without weights_only=True."""
    real = torch.load

    def checked(*args, **kwargs):
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", checked)


def _write_raw_pickle(path: Path, payload: object) -> Path:
    with open(path, "wb") as fh:
        pickle.dump({"conv.weight": payload}, fh)
    return path


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".ckpt"])
@pytest.mark.parametrize("payload", [_Payload, _OpenPayload])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, suffix, payload):
    marker = tmp_path / "PWNED"
    path = _write_raw_pickle(tmp_path / f"evil{suffix}", payload(marker))
    with pytest.raises(UnsafeWeightsError, match="Refusing to unpickle") as info:
        load_state_dict_file(path)
    assert not marker.exists()
    assert "\n" not in str(info.value) and ".safetensors" in str(info.value)


def test_malicious_torch_save_zip_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": _Payload(marker)}}, path)
    with pytest.raises(UnsafeWeightsError, match="posix.system|unsupported|Unsupported"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_malicious_weights_given_to_create_backbone_are_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = _write_raw_pickle(tmp_path / "evil.pth", _Payload(marker))
    with pytest.raises(UnsafeWeightsError):
        create_backbone(TIMM_TEST, weights=str(path))
    assert not marker.exists()


def test_plain_state_dict_pth_loads_as_tensors(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save({"model": {"module.a": torch.ones(2), "module.b": torch.zeros(1)}}, path)
    assert set(load_state_dict_file(path)) == {"a", "b"}


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("broken.safetensors", b"not really safetensors", WeightsError, "Cannot read"),
        ("broken.pth", b"", WeightsError, "Refusing|Cannot read"),
        ("weights.h5", b"x", WeightsError, "unknown suffix '.h5'"),
    ],
)
def test_damaged_or_unknown_files_raise_weights_error(tmp_path, name, content, error, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error, match=match):
        load_state_dict_file(path)


def test_missing_file_raises_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.safetensors")


def test_file_without_tensors_raises_weights_error(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(WeightsError, match="not a state dict of tensors"):
        load_state_dict_file(path)


# ---------------------------------------------------------------------- hostile folders
def _timm_folder(folder: Path) -> Path:
    import timm
    from timm.models._hub import save_for_hf

    model = timm.create_model(TIMM_TEST, pretrained=False)
    save_for_hf(model, str(folder), safe_serialization=True)
    return folder


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if key == "pretrained_cfg":
            config["pretrained_cfg"].update(value)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def test_config_naming_a_non_timm_architecture_is_refused(tmp_path):
    folder = _timm_folder(tmp_path / "m")
    _edit_config(folder, architecture="os.system")
    with pytest.raises(BackboneNotFoundError, match="'os.system' is not a timm model name"):
        create_backbone(f"local-dir:{folder}")


@pytest.mark.parametrize(
    "model_args",
    [
        {"pretrained": True},
        {"pretrained_cfg_overlay": {"url": "https://evil.example/x.pth"}},
        {"checkpoint_path": "/tmp/evil.pth"},
        {"in_chans": 3, "act_layer": {"__class__": "os.system"}},
    ],
)
def test_config_model_args_that_load_or_download_are_refused(tmp_path, model_args):
    folder = _timm_folder(tmp_path / "m")
    _edit_config(folder, model_args=model_args)
    with pytest.raises(BackboneNotFoundError, match="model_args"):
        create_backbone(f"local-dir:{folder}")


def test_config_location_keys_are_ignored_never_fetched(tmp_path):
    marker = tmp_path / "PWNED"
    evil = _write_raw_pickle(tmp_path / "evil.pth", _Payload(marker))
    folder = _timm_folder(tmp_path / "m")
    _edit_config(
        folder,
        pretrained_cfg={
            "url": "https://evil.example/weights.pth",
            "hf_hub_id": "evil/repo",
            "file": str(evil),
            "state_dict": {"x": 1},
            "custom_load": True,
        },
        hf_hub_id="evil/repo",
        url="https://evil.example/w.pth",
    )
    backbone = create_backbone(f"local-dir:{folder}")  # no_network fixture checks no access
    assert backbone.weights_id.startswith("sha256:")
    assert not marker.exists()
    for key in ("url", "hf_hub_id", "file", "state_dict", "custom_load"):
        assert key not in backbone.spec["pretrained_cfg"]


def test_malicious_pytorch_model_bin_in_a_folder_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    folder = _timm_folder(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    _write_raw_pickle(folder / "pytorch_model.bin", _Payload(marker))
    with pytest.raises(UnsafeWeightsError):
        create_backbone(f"local-dir:{folder}")
    assert not marker.exists()


def test_config_that_is_not_json_is_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_bytes(pickle.dumps({"architecture": "x"}))
    with pytest.raises(BackboneNotFoundError, match="Cannot read"):
        resolve_model_preprocess(f"local-dir:{folder}")


def test_weights_for_a_folder_model_go_through_the_safe_loader(tmp_path):
    folder = _timm_folder(tmp_path / "m")
    marker = tmp_path / "PWNED"
    evil = _write_raw_pickle(tmp_path / "evil.ckpt", _Payload(marker))
    with pytest.raises(UnsafeWeightsError):
        create_backbone(f"local-dir:{folder}", weights=evil)
    assert not marker.exists()
    save_file({"x": torch.ones(1)}, tmp_path / "wrong.safetensors")
    with pytest.raises(WeightsError, match="do not fit"):
        create_backbone(f"local-dir:{folder}", weights=tmp_path / "wrong.safetensors")


# ------------------------------------------------------------ tampered default weights in caches
TV_MODEL = "tv:squeezenet1_1"


def _torchvision_cache_file(monkeypatch, tmp_path: Path) -> Path:
    """Where `tv:squeezenet1_1`'s default weights are cached, under a private TORCH_HOME."""
    from torchvision.models import SqueezeNet1_1_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder / Path(SqueezeNet1_1_Weights.IMAGENET1K_V1.url).name


def _timm_hub_snapshot(monkeypatch, tmp_path: Path) -> Path:
    """The snapshot folder the Hugging Face cache would hold for `TIMM_TEST`'s default weights."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return hf_cache_snapshot(tmp_path / "hf", "timm/test_resnet.r160_in1k")


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_malicious_cached_torchvision_default_is_refused_unopened(
    kind, monkeypatch, tmp_path
) -> None:
    marker = tmp_path / "PWNED"
    cached = _torchvision_cache_file(monkeypatch, tmp_path)
    if kind == "raw pickle":
        _write_raw_pickle(cached, _Payload(marker))
    else:
        torch.save({"w": _Payload(marker)}, cached)

    with pytest.raises(WeightsError, match="do not match the hash in their name"):
        create_backbone(TV_MODEL)
    assert not marker.exists()


def test_a_substituted_cached_torchvision_default_is_not_loaded_as_the_official_weights(
    monkeypatch, tmp_path
) -> None:
    """Tensors of the right shapes, but not the published ones: before the name's hash was
    checked this loaded silently and the run recorded `tv:SqueezeNet1_1_Weights.IMAGENET1K_V1`."""
    import torchvision

    cached = _torchvision_cache_file(monkeypatch, tmp_path)
    torch.save(torchvision.models.squeezenet1_1().state_dict(), cached)

    with pytest.raises(WeightsError, match=r"changed or damaged after download\. Delete it"):
        create_backbone(TV_MODEL)


@pytest.mark.parametrize("kind", ["raw pickle", "torch.save zip"])
def test_a_malicious_cached_timm_default_is_refused_in_one_line_and_never_runs(
    kind, monkeypatch, tmp_path
) -> None:
    """timm itself loads a cached pytorch_model.bin with weights_only=True; headstart turns its
    refusal (a RuntimeError, a traceback at the CLI) into UnsafeWeightsError."""
    marker = tmp_path / "PWNED"
    cached = _timm_hub_snapshot(monkeypatch, tmp_path) / "pytorch_model.bin"
    if kind == "raw pickle":
        _write_raw_pickle(cached, _Payload(marker))
    else:
        torch.save({"w": _Payload(marker)}, cached)

    with pytest.raises(UnsafeWeightsError, match="Refusing to unpickle the cached weights") as info:
        create_backbone(TIMM_TEST)
    assert not marker.exists()
    assert "\n" not in str(info.value) and "models--timm--test_resnet.r160_in1k" in str(info.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......", "deserializing header"),
        ({"conv1.0.weight": torch.zeros(3)}, "loading state_dict"),
    ],
    ids=["damaged", "other tensors"],
)
def test_a_tampered_cached_timm_safetensors_default_raises_weights_error(
    content, reason, monkeypatch, tmp_path
) -> None:
    cached = _timm_hub_snapshot(monkeypatch, tmp_path) / "model.safetensors"
    if isinstance(content, bytes):
        cached.write_bytes(content)
    else:
        save_file(content, cached)

    with pytest.raises(WeightsError, match=f"cannot be loaded \\(.*{reason}") as info:
        create_backbone(TIMM_TEST)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "pickle_bytes",
    [
        b"\x80\x02Q.",  # a storage record from an empty stack: "pop from empty list"
        b"\x80\x02h\x05.",  # a memo entry never stored: KeyError
        b"\x80\x02K\x01Q.",  # a storage record that is an int: torch's AssertionError
    ],
)
def test_weights_file_with_damaged_pickle_opcodes_is_one_weights_error(
    tmp_path: Path, pickle_bytes: bytes
) -> None:
    import zipfile

    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(2)}, good)
    damaged = tmp_path / "damaged.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, pickle_bytes if info.filename.endswith("data.pkl") else data)
    with pytest.raises(WeightsError, match="damaged or not a PyTorch checkpoint"):
        load_state_dict_file(damaged)


def test_weights_file_of_one_byte_is_one_weights_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.bin"
    path.write_bytes(b"j")  # a legacy (non-zip) torch file cut after its first byte
    with pytest.raises(WeightsError, match="damaged or not a PyTorch checkpoint"):
        load_state_dict_file(path)
