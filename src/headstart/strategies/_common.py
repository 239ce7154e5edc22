"""What every strategy receives (:class:`Job`) and returns (:class:`Fitted`).

The estimator builds a ``Job`` (the dataset, the backbone, resolved settings and where to run) and
calls :func:`headstart.strategies.fit_strategy`; a strategy returns the backbone it ends with (the
same one, or a trained copy with a new ``weights_id``), a head taking that backbone's features,
the history and, where still valid, the plain validation and test features it already has, so
the estimator computes metrics without another pass. A strategy chooser (``auto``) can build Jobs
and call strategies the same way.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from headstart.backbones import Backbone, state_dict_sha256
from headstart.data import Dataset
from headstart.data.multilabel import label_matrix
from headstart.device import prepare_device
from headstart.features.extract import ExtractResult, FeatureView, extract_cached
from headstart.strategies._cost import CostEstimate
from headstart.strategies._network import inner_module
from headstart.strategies._settings import SETTINGS_ADDED, TrainSettings

__all__ = [
    "Fitted",
    "Job",
    "SplitFeatures",
    "extract_splits",
    "targets",
    "trained_backbone",
    "xy",
]

SplitFeatures = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class Job:
    """One training job: data, backbone, settings, and where and how verbosely to run.

    Attributes:
        dataset: The labelled images.
        backbone: The backbone as created (pretrained, or random init for ``scratch``).
        settings: Resolved settings (:func:`headstart.strategies.resolve_settings`).
        cache: Use the feature cache; ``cache_dir`` (default: the user cache dir) holds it.
        device: "auto", "cpu", "cuda", "mps".
        num_workers: Decoding workers (None: from the cores; see ``iter_batches``).
        extract_batch_size: Batch size of feature extraction.
        quiet: No progress output.
        checkpoint_dir: End-to-end strategies write a checkpoint there every epoch.
        resume: Continue from the checkpoint in ``checkpoint_dir``.
        stream: Where estimates and epoch lines go (stderr by default).
        plain: Plain features of every image of ``dataset`` through ``backbone``, when the
            caller already extracted them (training does, so that the leakage check reads the
            facts that extraction's decoding pass stored); used instead of extracting again.
    """

    dataset: Dataset
    backbone: Backbone
    settings: TrainSettings
    cache: bool = True
    cache_dir: Path | None = None
    device: str = "auto"
    num_workers: int | None = None
    extract_batch_size: int = 32
    quiet: bool = False
    checkpoint_dir: Path | None = None
    resume: bool = False
    stream: IO[str] | None = None
    plain: ExtractResult | None = None

    @property
    def torch_device(self) -> torch.device:
        """The device to train on, prepared for use (:func:`~headstart.device.prepare_device`)."""
        return prepare_device(self.device)

    @property
    def out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.out, flush=True)

    def extract(
        self,
        backbone: Backbone,
        paths: Sequence[Path],
        *,
        desc: str,
        view: FeatureView | None = None,
    ) -> ExtractResult:
        """Features of ``paths`` through the cache (plain, or one augmented ``view``)."""
        return extract_cached(
            backbone,
            paths,
            use_cache=self.cache,
            cache_dir=self.cache_dir,
            desc=desc,
            view=view,
            batch_size=self.extract_batch_size,
            num_workers=self.num_workers,
            device=self.device,
            engine=self.settings.engine,
            quiet=self.quiet,
        )

    def fingerprint(self, backbone: Backbone, dataset: Dataset) -> str:
        """Identifies what a checkpoint belongs to: settings, backbone and training data."""
        return _fingerprint(self.settings.to_dict(), backbone, dataset)

    def earlier_fingerprints(self, backbone: Backbone, dataset: Dataset) -> tuple[str, ...]:
        """The fingerprints an older headstart gave this same run: its settings without those
        added since (:data:`._settings.SETTINGS_ADDED`), when they hold the value that
        reproduces what runs from before them did, and :meth:`fingerprints_before_refit`. A
        checkpoint with one of these resumes: the run it belongs to trained as this one does."""
        return (
            *_earlier(self.settings, backbone, dataset),
            *self.fingerprints_before_refit(backbone, dataset),
        )

    def fingerprints_before_refit(self, backbone: Backbone, dataset: Dataset) -> tuple[str, ...]:
        """An end-to-end run's fingerprints from before end-to-end refits existed. Such a run
        trained with refit off whatever it stored: its ``--refit trainval``, then the default,
        refitted a features head only. A checkpoint with one resumes, and the run ends as it
        began, without a refit (:func:`._refit.refit_run`)."""
        if not (self.settings.end_to_end and self.settings.refit):
            return ()
        off = replace(self.settings, refit=False)
        return (_fingerprint(off.to_dict(), backbone, dataset), *_earlier(off, backbone, dataset))


def _earlier(settings: TrainSettings, backbone: Backbone, dataset: Dataset) -> list[str]:
    """The fingerprints of ``settings`` as hashed before the settings added since existed,
    newest first, as far back as ``settings`` hold the values of the runs from before them."""
    values = settings.to_dict()
    found: list[str] = []
    for since in range(len(SETTINGS_ADDED) - 1, -1, -1):
        added = {k: v for step in SETTINGS_ADDED[since:] for k, v in step.items()}
        if any(getattr(settings, name) != value for name, value in added.items()):
            break
        older = {k: v for k, v in values.items() if k not in added}
        found.append(_fingerprint(older, backbone, dataset))
    return found


def _fingerprint(settings: dict[str, Any], backbone: Backbone, dataset: Dataset) -> str:
    payload = {
        "settings": settings,
        "backbone": backbone.weights_id,
        "architecture": backbone.spec.get("architecture"),
        "preprocess": backbone.preprocess.fingerprint(),
        "classes": dataset.classes,
        "splits": {
            name: [[str(s.path), s.label if s.labels is None else list(s.labels)] for s in samples]
            for name, samples in dataset.splits.items()
            if name in ("train", "val")
        },
    }
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class Fitted:
    """A strategy's result.

    Attributes:
        backbone: The backbone to predict with (a trained copy has a new ``weights_id``).
        head: Takes ``backbone``'s raw pooled features, on the CPU.
        history: One row per epoch (``epoch, loss, accuracy, val_loss, val_accuracy``, and for
            end-to-end phases ``lr`` and ``phase``).
        best_epoch: The epoch whose weights were kept (an index into ``history``, 1-based).
        monitor: "val_loss", or "loss" without validation data.
        dataset: The dataset with unreadable images moved to ``skipped``.
        features: Plain features by split (train, val, test) still valid for ``backbone``.
        extraction: Images whose features were computed and read from the cache.
        interrupted: Ctrl-C ended training; the best weights so far were kept.
        cost: The estimate printed before training (CPU only), if any.
        epoch_seconds: Wall time of each end-to-end epoch.
        details: Strategy-specific facts for the run's config (stages unfrozen, views, and
            ``selection``: how the head's setting was chosen and which images the final fit used).
        heldout_logits, heldout_y: Logits of images no model that produced them trained on (the
            selection step's validation or out-of-fold logits), for calibration; None without.
    """

    backbone: Backbone
    head: nn.Module
    history: list[dict[str, Any]]
    best_epoch: int
    monitor: str
    dataset: Dataset
    features: SplitFeatures = field(default_factory=dict)
    extraction: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    cost: CostEstimate | None = None
    epoch_seconds: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    heldout_logits: np.ndarray | None = None
    heldout_y: np.ndarray | None = None

    @property
    def trained_on_val(self) -> bool:
        """Whether the final model learnt from the validation images (a refit)."""
        selection = self.details.get("selection") or {}
        return "val" in (selection.get("fit_images") or {})


def xy(
    samples: Sequence[Any],
    by_path: Mapping[Path, np.ndarray],
    dim: int,
    *,
    num_labels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and labels of the samples that have features, in the samples' order.

    With ``num_labels`` (multi-label data), the labels are a 0/1 matrix with that many columns.
    """
    kept = [s for s in samples if s.path in by_path]
    if not kept:
        empty = np.zeros(0 if num_labels is None else (0, num_labels), np.int64)
        return np.zeros((0, dim), np.float32), empty
    x = np.stack([by_path[s.path] for s in kept]).astype(np.float32, copy=False)
    return x, targets(kept, num_labels)


def targets(samples: Sequence[Any], num_labels: int | None = None) -> np.ndarray:
    """Class indices of samples, or with ``num_labels`` their 0/1 label matrix (multi-label)."""
    if num_labels is not None:
        return label_matrix(samples, num_labels)
    return np.array([s.label for s in samples], dtype=np.int64)


def extract_splits(
    job: Job, backbone: Backbone, *, desc: str = "extracting features"
) -> tuple[Dataset, SplitFeatures, dict[str, int]]:
    """Plain features of every split; unreadable images are moved to the dataset's skipped."""
    dataset = job.dataset
    paths = [s.path for samples in dataset.splits.values() for s in samples]
    if job.plain is not None and backbone is job.backbone:
        extracted = job.plain
    else:
        extracted = job.extract(backbone, paths, desc=desc)
    if extracted.failures:
        dataset = dataset.without(extracted.failures)
    split_xy = _split_rows(dataset, extracted)
    counts = {"computed": extracted.n_computed, "cached": extracted.n_cached}
    return dataset, split_xy, counts


def _split_rows(dataset: Dataset, extracted: ExtractResult) -> SplitFeatures:
    """Each split's (features, labels), as views of the extracted array where they can be.

    The splits were extracted in order, so each split's readable images are one run of rows:
    a slice, not a copy, which for a million 1024-d features is 4 GB not allocated twice.
    """
    row = {path: i for i, path in enumerate(extracted.paths)}
    out: SplitFeatures = {}
    for name, samples in dataset.splits.items():
        kept = [s for s in samples if s.path in row]
        rows = np.fromiter((row[s.path] for s in kept), dtype=np.int64, count=len(kept))
        y = targets(kept, len(dataset.classes) if dataset.multi_label else None)
        if len(rows) and (rows == np.arange(rows[0], rows[0] + len(rows))).all():
            x = extracted.features[rows[0] : rows[0] + len(rows)]
        else:
            x = extracted.features[rows]  # an unusual order (repeated paths): a copy
        out[name] = (x, y)
    return out


def trained_backbone(backbone: Backbone) -> Backbone:
    """``backbone`` after training: its ``weights_id`` becomes the SHA-256 of its weights.

    The feature cache is keyed by ``weights_id``, so features of the trained network can never
    be confused with those of the weights it started from.
    """
    state = inner_module(backbone.module).state_dict()
    weights_id = f"trained:sha256:{state_dict_sha256(state)}"
    spec = {
        **backbone.spec,
        "weights_id": weights_id,
        "trained_from": backbone.spec.get("trained_from") or backbone.weights_id,
    }
    return replace(backbone, spec=spec)
