"""Backbones where loaders look for them: a tiny "pretrained" BatchNorm backbone folder (timm
layout) for strategy tests, and a Hugging Face cache snapshot folder for the hub loaders.

timm's ``test_resnet`` with 32-pixel inputs, random weights, and BatchNorm running statistics
"pretrained" on inputs unlike the test data (shifted by ``offset``), so that batch statistics and
running statistics clearly differ: the setting in which a frozen backbone left in training mode
goes wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

__all__ = ["hf_cache_snapshot", "write_bn_backbone"]


def write_bn_backbone(folder: Path, *, offset: float = 2.0, size: int = 32) -> str:
    """Write ``folder/config.json`` + ``model.safetensors``; return the ``local-dir:`` name."""
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("test_resnet", num_classes=0)
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a cumulative average over the calibration batches
                module.reset_running_stats()
        with torch.no_grad():
            for _ in range(4):
                model(torch.randn(16, 3, size, size) + offset)
    save_file(model.state_dict(), folder / "model.safetensors")
    config = {
        "architecture": "test_resnet",
        "num_classes": 0,
        "pretrained_cfg": {
            "input_size": [3, size, size],
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return f"local-dir:{folder}"


def hf_cache_snapshot(cache: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in a Hugging Face cache at ``cache`` (the hub's layout:
    ``models--ORG--NAME/refs/main`` naming a revision, ``snapshots/REVISION/``), created empty.

    The caller points ``huggingface_hub.constants.HF_HUB_CACHE`` at ``cache`` and puts files in.
    """
    folder = cache / f"models--{repo.replace('/', '--')}"
    revision = "0" * 40
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(revision)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    return snapshot
