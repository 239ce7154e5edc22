"""Saving a fitted classifier as a run folder and loading it back: :class:`FittedModel` <-> disk.

A run folder is ``config.json`` (a timm model config with a ``headstart`` section) and
``model.safetensors``, plus what a person looks at (``history.csv``, ``curves.png``,
``skipped.csv``, ``metrics.json``). The backbone's tensors are saved under their own names; the
head's under timm's classifier name when plain timm can load the run (a linear head on a timm
backbone's final features, :func:`headstart.runs.plain_timm`), else under ``headstart_head.``.
``config.json`` records which, and why, so the run says what it is.

Loading reads JSON and safetensors only (:func:`headstart.runs.read_run`) and rebuilds the same
record that ``fit`` produced, so a loaded classifier is the fitted one.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from headstart._version import __version__
from headstart.backbones import rebuild_backbone
from headstart.errors import HeadstartError, RunFolderError
from headstart.fitted import FittedModel
from headstart.heads.modules import head_config, head_from_config
from headstart.heads.typicality import Typicality
from headstart.preprocess import Preprocess
from headstart.runs import (
    CONFIG_NAME,
    FORMAT_VERSION,
    TYPICALITY_NAME,
    WEIGHTS_NAME,
    plain_timm,
    read_history_csv,
    read_run,
    read_tensors,
    staged_writes,
    write_history_csv,
    write_json,
    write_skipped_csv,
    write_weights,
)
from headstart.strategies import TrainSettings, inner_module, select_layer
from headstart.strategies.auto import Advice

__all__ = ["load_run", "run_config", "save_run"]

HEAD_PREFIX = "headstart_head."
HISTORY_NAME = "history.csv"


def run_config(model: FittedModel) -> dict[str, Any]:
    """The run's ``config.json``: a valid timm model config plus a ``headstart`` section."""
    spec = dict(model.backbone.spec)
    hs: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "classes": model.classes,
        "backbone": spec,
        "preprocess": model.preprocess.to_dict(),
        "strategy": model.settings.strategy,
        "strategy_reason": _reason(model),
        "advice": model.advice.to_dict() if model.advice is not None else None,
        "head": head_config(model.settings.head, model.head),
        "training": {
            **model.settings.to_dict(),
            "best_epoch": model.best_epoch,
            "epochs_run": len(model.history),
            "monitor": model.monitor,
            "interrupted": model.interrupted,
            "seconds": round(model.fit_seconds, 2),
            "epoch_seconds": [round(t, 3) for t in model.epoch_seconds],
            "details": model.details,
            "selection": model.selection,
            "not_used": model.not_used,
        },
        "calibration": model.calibration,
        "unknowns": _unknowns_config(model),
        "data": model.dataset,
        "metrics": model.metrics,
        "versions": _versions(),
    }
    if model.thresholds is not None:  # only then: single-label configs stay as they were
        hs["multi_label"] = {"output": "sigmoid", "thresholds": model.thresholds}
    classifier, why = plain_timm(hs)
    hs["plain_timm"] = {"loads": classifier is not None, "reason": why}
    config: dict[str, Any] = {}
    if spec.get("family") == "timm":
        pretrained_cfg = dict(spec.get("pretrained_cfg") or {})
        pretrained_cfg.update(model.preprocess.to_timm_cfg())
        pretrained_cfg["num_classes"] = len(model.classes)
        config.update(
            architecture=spec["architecture"],
            num_classes=len(model.classes),
            num_features=model.backbone.num_features,
            model_args=spec.get("model_args") or {},
            pretrained_cfg=pretrained_cfg,
            label_names=model.classes,
        )
    config["headstart"] = hs
    return config


def save_run(model: FittedModel, folder: str | Path) -> Path:
    """Write the run folder (weights, typicality, history, curves, skipped files, metrics,
    config.json last); over an earlier run, all of them land or none (:func:`staged_writes`)."""
    from headstart.evaluation.plots import plot_curves

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = run_config(model)
    with staged_writes():  # over an earlier run: all of the new files or none of them
        if model.history:
            plot_curves(model.history, model.best_epoch, folder / "curves.png")
        write_weights(folder / WEIGHTS_NAME, _state_tensors(model, config), {"format": "pt"})
        if model.typicality is not None:
            tensors, _ = model.typicality.to_state()
            write_weights(folder / TYPICALITY_NAME, tensors, {"format": "pt"})
        write_history_csv(folder / HISTORY_NAME, model.history)
        write_skipped_csv(folder / "skipped.csv", model.dataset.get("skipped", []))
        if model.metrics:
            write_json(folder / "metrics.json", model.metrics)
        write_json(folder / CONFIG_NAME, config)
    return folder


def load_run(folder: str | Path) -> FittedModel:
    """The fitted state saved in a run folder, rebuilt offline from data only.

    Raises:
        RunFolderError: the folder is missing, incomplete, or its config or weights do not fit.
    """
    config, tensors = read_run(folder)
    hs = config["headstart"]
    try:
        preprocess = Preprocess.from_dict(hs["preprocess"])
        spec = hs["backbone"]
        backbone = rebuild_backbone(spec, preprocess)
        with torch.device("meta"):
            # No memory until the weights arrive: a config whose sizes lie (a head of 2**40
            # features) fails on the saved tensors' shapes, not by exhausting memory.
            head = head_from_config(hs["head"])
        classes = [str(c) for c in hs["classes"]]
        training = hs.get("training", {})
        strategy = str(hs.get("strategy", "features"))
        settings = TrainSettings.from_dict({**training, "strategy": strategy})
        advice = Advice.from_dict(hs["advice"]) if hs.get("advice") else None
        calibration = hs.get("calibration") or {}
        unknowns = dict(hs.get("unknowns") or {})
        # What the run recorded, read here so that a damaged value is a bad config.json, not
        # a traceback (tests/test_fuzz_runs.py changes every value of a run's config).
        recorded = {
            "best_epoch": int(training.get("best_epoch", 0)),
            "monitor": str(training.get("monitor", "val_loss")),
            "interrupted": bool(training.get("interrupted", False)),
            "epoch_seconds": [float(t) for t in training.get("epoch_seconds") or []],
            "fit_seconds": float(training.get("seconds") or 0.0),
            "details": dict(training.get("details") or {}),
            "selection": training.get("selection"),
            "calibration": calibration or None,
            "temperature": float(calibration.get("temperature", 1.0)),
            "metrics": hs.get("metrics", {}),
            "dataset": hs.get("data", {}),
            "not_used": dict(training.get("not_used") or {}),
        }
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, HeadstartError) as exc:
        raise _run_error(folder, f"bad config.json ({_first_line(exc)})") from exc
    if spec.get("layer") is not None:
        try:
            backbone = select_layer(backbone, spec["layer"])
        except HeadstartError as exc:
            raise _run_error(folder, str(exc)) from exc
    shape = head_config(str(hs["head"].get("kind")), head)
    if shape["in_features"] != backbone.num_features or shape["num_classes"] != len(classes):
        raise _run_error(
            folder,
            f"its head maps {shape['in_features']} features to {shape['num_classes']} classes, "
            f"but its backbone gives {backbone.num_features} features and it names "
            f"{len(classes)} classes",
        )
    head_keys = _head_keys(head, hs)
    broken = _unusable_tensors(tensors, head_keys)
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise _run_error(
            folder,
            f"its weights hold NaN or infinite values ({', '.join(broken[:3])}{more}): the file "
            "is damaged or the training diverged",
        )
    head_state = {head_keys[k]: v.float() for k, v in tensors.items() if k in head_keys}
    backbone_state = {k: v for k, v in tensors.items() if k not in head_keys}
    try:
        inner_module(backbone.module).load_state_dict(backbone_state, strict=True)
        head.load_state_dict(head_state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise _run_error(folder, f"weights do not fit the model ({first})") from exc
    backbone.module.eval()
    head.eval()
    for param in backbone.module.parameters():
        param.requires_grad_(False)
    return FittedModel(
        backbone=backbone,
        head=head,
        classes=classes,
        preprocess=preprocess,
        backbone_id=backbone.weights_id,
        settings=settings,
        history=read_history_csv(Path(folder) / HISTORY_NAME),
        advice=advice,
        **recorded,
        typicality=_load_typicality(Path(folder), unknowns),
        unknowns=unknowns,
        thresholds=_load_thresholds(folder, hs, len(classes)),
    )


def _load_thresholds(folder: str | Path, hs: Mapping[str, Any], labels: int) -> list[float] | None:
    """A multi-label run's thresholds, one a label; None for a single-label run."""
    multi = hs.get("multi_label")
    if multi is None:
        return None
    try:
        thresholds = [float(t) for t in multi["thresholds"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise _run_error(folder, f"bad multi_label thresholds ({_first_line(exc)})") from exc
    if len(thresholds) != labels:
        raise _run_error(folder, f"{len(thresholds)} thresholds for {labels} labels")
    return thresholds


def _unknowns_config(model: FittedModel) -> dict[str, Any]:
    """What config.json says about unknowns: the record, and where the score's state is."""
    if model.typicality is None:
        return dict(model.unknowns)
    _, state = model.typicality.to_state()
    return {**model.unknowns, **state, "file": TYPICALITY_NAME}


def _load_typicality(folder: Path, unknowns: Mapping[str, Any]) -> Typicality | None:
    """The run's typicality score; None for a run without one (saved before headstart had it,
    or trained with it off)."""
    if not unknowns.get("file"):
        return None
    try:
        return Typicality.from_state(read_tensors(folder / TYPICALITY_NAME), unknowns)
    except (KeyError, TypeError, ValueError, HeadstartError) as exc:
        raise _run_error(folder, f"bad typicality state ({_first_line(exc)})") from exc


def _state_tensors(model: FittedModel, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    tensors = dict(inner_module(model.backbone.module).state_dict())
    keys = _head_keys(model.head, config["headstart"])
    by_name = {name: key for key, name in keys.items()}
    for name, value in model.head.state_dict().items():
        tensors[by_name[name]] = value
    return tensors


def _unusable_tensors(
    tensors: Mapping[str, torch.Tensor], head_keys: Mapping[str, str]
) -> list[str]:
    """The saved tensors no prediction can come from: NaN anywhere, or an infinite value in
    the head. Such a run predicted NaN probabilities (and printed ``NaN`` into predict's JSON)
    with exit 0 (tests/_hostile_models.py, ``run-weights-nan-inf``). Infinity is allowed in
    the backbone, where a model may keep an attention mask of -inf as a buffer."""
    broken = []
    for key, value in tensors.items():
        if not value.is_floating_point():
            continue
        if key in head_keys:
            bad = not bool(torch.isfinite(value).all())
        else:
            bad = bool(torch.isnan(value).any())
        if bad:
            broken.append(key)
    return broken


def _head_keys(head: torch.nn.Module, hs: Mapping[str, Any]) -> dict[str, str]:
    """Maps saved tensor keys to the head's own state-dict keys: under timm's classifier name
    when plain timm can load the run, so that it does, else under ``headstart_head.``."""
    classifier, _ = plain_timm(hs)
    prefix = f"{classifier}." if classifier is not None else HEAD_PREFIX
    return {f"{prefix}{name}": name for name in head.state_dict()}


def _reason(model: FittedModel) -> str:
    """Why this strategy: the measured advice under ``auto``, else the user's choice."""
    if model.advice is not None:
        return "chosen by --strategy auto: " + "; ".join(model.advice.reasons)
    return f"chosen by the user (--strategy {model.settings.strategy})"


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: torch's errors carry its C++ stack on the lines after
    (a head of 10**30 features, tests/_hostile_models.py), which is no help and no one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def _run_error(folder: str | Path, what: str) -> HeadstartError:
    return RunFolderError(f"Cannot load run '{folder}': {what}. Retrain or re-save it.")


def _versions() -> dict[str, str]:
    import timm
    import torchvision

    return {
        "headstart": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }
