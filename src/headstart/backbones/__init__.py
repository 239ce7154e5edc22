"""Pretrained backbones by name, with the preprocessing their weights expect.

``create_backbone("resnet50.a1_in1k")`` gives the network cut before its classifier plus its
:class:`~headstart.preprocess.Preprocess`; ``rebuild_backbone(spec, preprocess)`` rebuilds a saved
one offline; ``load_state_dict_file`` is the one safe way to read a weights file, and
``state_dict_sha256`` names tensors by their content (the ``weights_id`` of trained weights).
"""

from headstart.backbones._base import DEFAULT_MODEL, EMBEDDED_MODEL, Backbone, parse_model_name
from headstart.backbones._classifier import PretrainedClassifier
from headstart.backbones._weights import load_state_dict_file, state_dict_sha256
from headstart.backbones.registry import (
    create_backbone,
    list_backbones,
    list_cached_backbones,
    load_pretrained_classifier,
    rebuild_backbone,
    resolve_model_preprocess,
)

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODEL",
    "Backbone",
    "PretrainedClassifier",
    "create_backbone",
    "list_backbones",
    "list_cached_backbones",
    "load_pretrained_classifier",
    "load_state_dict_file",
    "parse_model_name",
    "rebuild_backbone",
    "resolve_model_preprocess",
    "state_dict_sha256",
]
