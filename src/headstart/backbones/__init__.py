"""Pretrained backbones by name, with the preprocessing their weights expect.

``create_backbone("resnet50.a1_in1k")`` gives the network cut before its classifier plus its
:class:`~headstart.preprocess.Preprocess`; ``rebuild_backbone(spec, preprocess)`` rebuilds a saved
one offline; ``load_state_dict_file`` is the one safe way to read a weights file.
"""

from headstart.backbones._classifier import PretrainedClassifier, load_pretrained_classifier
from headstart.backbones._weights import load_state_dict_file
from headstart.backbones.registry import (
    DEFAULT_MODEL,
    EMBEDDED_MODEL,
    Backbone,
    create_backbone,
    list_backbones,
    parse_model_name,
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
    "load_pretrained_classifier",
    "load_state_dict_file",
    "parse_model_name",
    "rebuild_backbone",
    "resolve_model_preprocess",
]
