"""``ImageClassifier``: the public estimator, in the spirit of scikit-learn.

``__init__`` only stores its keyword arguments; ``fit`` validates them, resolves the backbone and
its preprocessing from the weights, and hands the training to a strategy
(:mod:`headstart.strategies`: cached features, frozen backbone with augmentation, fine-tuning, or
training from scratch); the learned state ends in ``_``. The same object predicts, evaluates and
saves, always through the one ``Preprocess`` the backbone's weights defined, so train and predict
cannot drift apart.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headstart import distributed
from headstart._version import __version__
from headstart.augment import resolve_augment
from headstart.backbones import DEFAULT_MODEL, Backbone, create_backbone, rebuild_backbone
from headstart.bulk import bulk
from headstart.data import Dataset, collect_image_paths, dataset_from_lists, load_dataset
from headstart.data.discovery import Vouch
from headstart.errors import (
    DataError,
    DataWarning,
    HeadstartError,
    ImageDecodeError,
    NotFittedError,
)
from headstart.evaluation import classification_metrics, plot_curves
from headstart.evaluation.calibration import CALIBRATIONS
from headstart.features.cache import decoded_in, default_cache_dir
from headstart.features.extract import extract_cached
from headstart.heads import HEAD_KINDS
from headstart.heads.modules import fold_temperature, head_config, head_from_config
from headstart.preprocess import Preprocess
from headstart.runs import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    read_run,
    write_history_csv,
    write_json,
    write_skipped_csv,
    write_weights,
)
from headstart.strategies import (
    STRATEGIES,
    Fitted,
    Job,
    TrainSettings,
    fit_strategy,
    inner_module,
    resolve_settings,
    select_layer,
)
from headstart.strategies._common import xy
from headstart.strategies._settings import refuse_C_without_linear_head, scale_to_data
from headstart.strategies.auto import AUG_VIEWS, Advice, decide, measure

__all__ = ["ImageClassifier", "Prediction"]

_HEAD_PREFIX = "headstart_head."


@dataclass(frozen=True)
class Prediction:
    """What ``predict_files`` says about one file; ``error`` is set when it could not be read."""

    path: Path
    label: str | None = None
    probability: float | None = None
    top_k: tuple[tuple[str, float], ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        return {
            "path": str(self.path),
            "label": self.label,
            "probability": self.probability,
            "top_k": [{"label": name, "probability": p} for name, p in self.top_k],
        }


def _extracts_plain(settings: TrainSettings) -> bool:
    """The strategy's first step extracts plain features of every image with the backbone as
    created (``features`` without an earlier ``layer``), so that step can run before it."""
    return settings.strategy == "features" and settings.layer is None


class ImageClassifier:
    """An image classifier built by transfer learning from a pretrained backbone.

    Every training parameter left as None takes the chosen strategy's default
    (:data:`headstart.strategies.STRATEGY_DEFAULTS`), which works without tuning; the values
    used are recorded in the run.

    Args:
        model: backbone name: a timm name (``resnet50.a1_in1k``), ``hf-hub:ORG/REPO``,
            ``local-dir:PATH``, ``tv:NAME`` for torchvision, or ``headstart-tiny`` (shipped).
        weights: ``"default"`` (the pretrained weights), ``"none"`` (random init) or a path to a
            ``.safetensors`` (or weights-only ``.pth``) file.
        head: ``"linear"`` or ``"mlp"``; None (default): linear, or under ``auto`` an MLP when
            it scores measurably better on held-out images.
        strategy: how the backbone is used. ``"auto"`` (default): measure the data and the
            frozen features and pick one of the others (``advise`` shows the choice and why);
            ``"features"``: frozen, cached features, head only; ``"augment"``: frozen backbone
            end to end with augmentation; ``"finetune"``: head first, then the top ``unfreeze``
            stages; ``"scratch"``: the same architecture from random init, as a baseline.
        preprocess: explicit preprocessing overrides (e.g. ``{"mean": ..., "std": ...}`` or
            ``{"keras": "caffe"}``); recorded and warned about when they differ from the weights'.
        epochs, lr, weight_decay, batch_size, patience, seed, label_smoothing: training; the
            weights of the epoch with the lowest validation loss are kept.
        schedule: ``"constant"``, ``"cosine"`` (after ``warmup_epochs`` of linear warm-up) or
            ``"onecycle"``.
        grad_clip: max gradient norm (None: no clipping).
        augment: training augmentation: a preset (``none``, ``light``, ``default``, ``strong``,
            ``randaugment``, ``trivialaugment``) or a dict of values (``{"rotation": 15,
            "hflip": True}``, optionally with ``"preset"`` to start from). Validation and test
            images are never augmented.
        aug_views: ``features`` only: cache this many augmented views of each training image.
        layer: ``features``/``augment``: pool features of this stage (timm ``feature_info``
            index or module name) instead of the last.
        unfreeze: ``finetune``: number of top stages to train, or ``"all"``.
        layer_decay: ``finetune``: learning-rate factor per stage downwards.
        bn: ``finetune``/``scratch``: ``"frozen"`` (BatchNorm keeps its running statistics) or
            ``"train"`` (batch statistics).
        amp: mixed precision on CUDA (None: on when CUDA is used).
        hidden, dropout: the MLP head's width and dropout.
        val_fraction, test_fraction: used when the data has no val/test split of its own.
        cache_dir: feature cache folder (default: the user cache dir); ``cache=False`` disables it.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
        num_workers: image decoding threads (default: one per core; 0: decode in turn). The
            doctor's checks decode in as many processes.
        quiet: no progress output.
        checkpoint_dir: end-to-end strategies write a checkpoint there after every epoch.
        resume: continue from the checkpoint in ``checkpoint_dir`` (same data and settings).
        check_data: before training, look for duplicates across splits and classes (leakage,
            conflicting labels) and warn about them (``DataWarning``); training goes on.
        C: the linear head's inverse L2 strength (scikit-learn's ``C``); None (default) chooses
            it on the validation split, or by cross-validation over train + val when that split
            is small.
        refit: ``features``: after choosing, refit the head on train + val (default); False
            keeps the final fit on the training images only.
        calibrate: ``"temperature"`` (default): fit a temperature on held-out logits of the
            selection step so that predicted probabilities match accuracy; ``"none"``: raw
            softmax probabilities.

    Under torchrun (a ``torch.distributed`` process group initialised before ``fit``), every
    process calls ``fit`` with the same arguments: extraction and end-to-end training are split
    across them, rank 0 alone uses the feature cache, the checkpoints and the console, and every
    rank ends with the same fitted classifier. Save it from rank 0 only.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        weights: str = "default",
        head: str | None = None,
        strategy: str = "auto",
        preprocess: Mapping[str, Any] | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        patience: int | None = None,
        seed: int = 0,
        label_smoothing: float = 0.0,
        schedule: str | None = None,
        warmup_epochs: float | None = None,
        grad_clip: float | None = None,
        augment: str | Mapping[str, Any] | None = None,
        aug_views: int = 0,
        layer: int | str | None = None,
        unfreeze: int | str | None = None,
        layer_decay: float | None = None,
        bn: str | None = None,
        amp: bool | None = None,
        hidden: int = 512,
        dropout: float = 0.2,
        val_fraction: float = 0.2,
        test_fraction: float = 0.1,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        device: str = "auto",
        num_workers: int | None = None,
        extract_batch_size: int = 32,
        quiet: bool = False,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        check_data: bool = True,
        C: float | None = None,
        refit: bool = True,
        calibrate: str = "temperature",
    ) -> None:
        self.model = model
        self.weights = weights
        self.head = head
        self.strategy = strategy
        self.preprocess = preprocess
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.seed = seed
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.grad_clip = grad_clip
        self.augment = augment
        self.aug_views = aug_views
        self.layer = layer
        self.unfreeze = unfreeze
        self.layer_decay = layer_decay
        self.bn = bn
        self.amp = amp
        self.hidden = hidden
        self.dropout = dropout
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.cache = cache
        self.cache_dir = cache_dir
        self.device = device
        self.num_workers = num_workers
        self.extract_batch_size = extract_batch_size
        self.quiet = quiet
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.check_data = check_data
        self.C = C
        self.refit = refit
        self.calibrate = calibrate

    # ------------------------------------------------------------------ fitting
    def fit(
        self, X: str | Path | Dataset | Sequence[str | Path], y: Sequence[str] | None = None
    ) -> ImageClassifier:
        """Train on a folder, a CSV, a ``Dataset``, or a list of image paths with labels ``y``.

        Ctrl-C during an end-to-end strategy stops training cleanly: the best weights so far are
        kept, ``interrupted_`` is True, and the classifier can be saved as it is.
        """
        auto = self.strategy == "auto"
        settings = None if auto else self._settings()
        started = time.monotonic()
        vouched: dict[Path, str] = {}  # digests of the files discovery found in the cache
        dataset = self._as_dataset(X, y, vouched)
        backbone = create_backbone(
            self.model,
            weights=self.weights if settings is None else self._backbone_weights(settings),
            preprocess_overrides=self.preprocess,
        )
        if self.calibrate not in CALIBRATIONS:
            raise HeadstartError(
                f"Unknown calibration {self.calibrate!r}; choose one of {', '.join(CALIBRATIONS)}."
            )
        refuse_C_without_linear_head(self.C, self.head)  # before auto measures
        main = distributed.is_main()  # under torchrun: rank 0 alone warns and prints
        quiet = self.quiet or not main
        if main:
            _warn_on_small_classes(dataset)
        plain = None
        if self.check_data and not self.resume:
            # After the backbone: a bad model name fails first. The features strategy extracts
            # first, so the check reads the facts extraction's decoding pass stored: one decode
            # per image in a cold run, none in a warm one. Extraction is collective under
            # torchrun, so every rank takes part; rank 0 alone warns.
            if self.cache and settings is not None and _extracts_plain(settings):
                paths = [s.path for samples in dataset.splits.values() for s in samples]
                plain = self._extract(backbone, paths, desc="extracting features", digests=vouched)
            if main:
                self._warn_on_leakage(dataset, plain.digests if plain is not None else None)
            with warnings.catch_warnings():
                if not main:
                    warnings.simplefilter("ignore")
                self._warn_on_pretrained_view(dataset, backbone)
        self.advice_: Advice | None = None
        if settings is None:
            # Every rank measures (the extraction is shared); all follow rank 0's advice.
            self.advice_ = distributed.broadcast(self._advise(dataset, backbone))
            if not quiet:
                print(self.advice_.explain(), file=sys.stderr)
            settings = self._settings(self.advice_.strategy, self.advice_.options)
        settings = scale_to_data(
            settings,
            len(dataset.splits.get("train", [])),
            epochs_given=self.epochs is not None,
            batch_given=self.batch_size is not None,
            lr_given=self.lr is not None,
            patience_given=self.patience is not None,
        )
        job = Job(
            dataset=dataset,
            backbone=backbone,
            settings=settings,
            cache=self.cache,
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
            device=self.device,
            num_workers=self.num_workers,
            extract_batch_size=self.extract_batch_size,
            quiet=quiet,
            checkpoint_dir=Path(self.checkpoint_dir) if self.checkpoint_dir else None,
            resume=self.resume,
            plain=plain,
        )
        fitted = fit_strategy(job)
        self.backbone_: Backbone = fitted.backbone
        self.head_: nn.Module = fitted.head
        self.classes_: list[str] = list(fitted.dataset.classes)
        self.preprocess_: Preprocess = fitted.backbone.preprocess
        self.backbone_id_: str = fitted.backbone.weights_id
        self.settings_: TrainSettings = settings
        self.history_: list[dict[str, Any]] = fitted.history
        self.best_epoch_: int = fitted.best_epoch
        self.monitor_: str = fitted.monitor
        self.interrupted_: bool = fitted.interrupted
        self.epoch_seconds_: list[float] = fitted.epoch_seconds
        self.details_: dict[str, Any] = fitted.details
        self.cost_estimate_: str | None = fitted.cost.message() if fitted.cost else None
        self.selection_: dict[str, Any] | None = fitted.details.get("selection")
        self.temperature_: float = 1.0
        self.calibration_: dict[str, Any] | None = self._calibrate(fitted)
        dataset, self.metrics_, proba = self._fitted_metrics(fitted)
        self.dataset_: dict[str, Any] = dataset.summary()
        # Kept for this process only (never saved): the report of the run evaluates on the data
        # it trained on, and reading a 100k-image folder again would cost seconds for nothing.
        # Only a dataset read from a path: it is what reading that path again would give.
        self._fit_dataset: Dataset | None = dataset if isinstance(X, (str, Path)) else None
        # Its probabilities of each held-out split, a row per sample: the report shows them.
        self._fit_proba: dict[str, np.ndarray] = proba if self._fit_dataset is not None else {}
        self.fit_seconds_: float = time.monotonic() - started
        self.extraction_: dict[str, int] = fitted.extraction
        return self

    def _warn_on_leakage(self, dataset: Dataset, digests: Mapping[Path, str] | None) -> None:
        """Warn, never refuse, when the same picture sits in two splits or two classes.

        A leaked duplicate inflates the validation and test scores silently; the user may have
        reasons (augmented copies made on purpose), so training goes on after saying so.
        """
        from headstart.doctor import quick_checks

        findings = quick_checks(
            dataset,
            cache=self.cache,
            cache_dir=self.cache_dir,
            num_workers=self.num_workers,
            quiet=self.quiet,
            digests=digests,
        )
        # One line per kind of problem, not per group: a folder copied into another class
        # makes a group per picture, and a thousand lines would bury the one that matters.
        by_kind: dict[str, list[str]] = {}
        for finding in findings:
            if finding.severity in ("error", "warning"):
                by_kind.setdefault(finding.code, []).append(finding.message)
        for first, *others in by_kind.values():
            more = ""
            if others:
                more = f"; {len(others)} more group{'s' if len(others) > 1 else ''} like it"
            warnings.warn(
                f"{first}{more} (`headstart doctor DATA` lists them all)",
                DataWarning,
                stacklevel=3,
            )

    @bulk
    def _warn_on_pretrained_view(self, dataset: Dataset, backbone: Backbone) -> None:
        """Ask the weights' own classifier about a few training images; warn if it collapses.

        The features it needs are the training images' own, so they land in the cache that
        training reads next: the check costs a classifier pass, not a forward pass.
        """
        from headstart.doctor._pretrained_view import warn_on_pretrained_view

        def extract(net: Backbone, paths: Sequence[Path]) -> Any:
            return self._extract(net, paths, desc="asking the pretrained classifier")

        samples = [(s.path, dataset.classes[s.label]) for s in dataset.splits.get("train", [])]
        warn_on_pretrained_view(backbone, samples, extract, model=self.model, seed=self.seed)

    def advise(
        self, X: str | Path | Dataset | Sequence[str | Path], y: Sequence[str] | None = None
    ) -> Advice:
        """Measure the data and the frozen features, and say which strategy ``auto`` would pick.

        Nothing is trained; the features extracted to measure go to the cache, so a training run
        that follows does not extract them again.
        """
        dataset = self._as_dataset(X, y)
        backbone = create_backbone(
            self.model, weights=self.weights, preprocess_overrides=self.preprocess
        )
        return self._advise(dataset, backbone)

    def _advise(self, dataset: Dataset, backbone: Backbone) -> Advice:
        def extract(net: Backbone, paths: Sequence[Path], desc: str, view: Any = None) -> Any:
            return self._extract(net, paths, desc=desc, view=view)

        preset, params = self._augment_choice()
        augment = None if preset is None and not params else resolve_augment(preset, **params)
        facts = measure(
            dataset,
            backbone,
            extract,
            seed=self.seed,
            # A C given is the linear head's: auto then compares linear heads only.
            head=self.head or ("linear" if self.C is not None else None),
            layer=self.layer,
            augment=augment,
            views=self.aug_views or AUG_VIEWS,
            quiet=self.quiet,
        )
        return decide(facts)

    def _augment_choice(self) -> tuple[Any, dict[str, Any]]:
        """The augmentation preset and explicit values the user gave (None, {}: none given)."""
        if isinstance(self.augment, Mapping):
            values = dict(self.augment)
            preset = values.pop("preset", None)
            if preset is None and values:
                preset = "none"
            return preset, values
        return self.augment, {}

    def _settings(
        self, strategy: str | None = None, advised: Mapping[str, Any] | None = None
    ) -> TrainSettings:
        strategy = strategy or self.strategy
        advised = dict(advised or {})
        advised_head = advised.pop("head", None)
        head = self.head or advised_head or "linear"
        if head not in HEAD_KINDS:
            raise HeadstartError(f"Unknown head {head!r}; choose one of {', '.join(HEAD_KINDS)}.")
        if strategy not in STRATEGIES:
            choices = ", ".join((*STRATEGIES, "auto"))
            raise HeadstartError(f"Unknown strategy {strategy!r}; choose one of {choices}.")
        preset, augment_params = self._augment_choice()
        return resolve_settings(
            strategy,
            augment=preset,
            augment_params=augment_params,
            head=head,
            hidden=self.hidden,
            dropout=self.dropout,
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            patience=self.patience,
            seed=self.seed,
            label_smoothing=self.label_smoothing,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
            grad_clip=self.grad_clip,
            aug_views=self.aug_views or advised.get("aug_views"),
            layer=self.layer if self.layer is not None else advised.get("layer"),
            unfreeze=self.unfreeze if self.unfreeze is not None else advised.get("unfreeze"),
            layer_decay=self.layer_decay,
            bn=self.bn,
            amp=self.amp,
            C=self.C,
            refit=self.refit,
            explicit=self.strategy != "auto",
        )

    def _backbone_weights(self, settings: TrainSettings) -> str:
        if settings.strategy != "scratch":
            return self.weights
        if str(self.weights).strip().lower() not in ("default", "none"):
            raise HeadstartError(
                f"--strategy scratch trains from random initialisation, but weights "
                f"{self.weights!r} were given; to start from them use --strategy finetune "
                "--unfreeze all."
            )
        return "none"

    def _calibrate(self, fitted: Fitted) -> dict[str, Any] | None:
        """Fit ``temperature_`` on logits of images the model that produced them never saw.

        The temperature is folded into the head's last layer (weights and bias divided by it),
        so every path that runs the head (predict, evaluate, the report, timm loading the run
        folder, an export) gives calibrated probabilities without knowing about it, and no
        prediction changes: the arg-max of ``z / T`` is that of ``z``.

        Those are the selection step's held-out logits (validation, or out of fold); after an
        end-to-end strategy, the validation logits of the final model, which chose only its
        epoch there. A model refitted on train + val has no such logits of its own: the
        temperature of its selection step carries over (the refit sees more images of the same
        kind, so it is, if anything, slightly less over-confident). The temperature is applied
        only when a likelihood-ratio test on those logits supports it and it does not raise their
        ECE (:func:`~headstart.evaluation.calibration.calibrate_temperature`).
        """
        from headstart.evaluation.calibration import calibrate_temperature

        logits, y = fitted.heldout_logits, fitted.heldout_y
        source = "held-out logits of the selection step"
        if logits is None and not fitted.trained_on_val and "val" in fitted.features:
            val_x, y = fitted.features["val"]
            if len(y):
                self.head_.eval()
                with torch.no_grad():
                    logits = self.head_(torch.from_numpy(np.ascontiguousarray(val_x))).numpy()
                source = "validation logits of the final model"
        if self.calibrate == "none" or logits is None or y is None or not len(y):
            reason = (
                "turned off (--calibrate none)"
                if self.calibrate == "none"
                else ("no held-out images to fit it on")
            )
            return {"method": "none", "temperature": 1.0, "reason": reason}
        fit = calibrate_temperature(logits, y)
        temperature = fit.temperature
        self.temperature_ = temperature
        fold_temperature(self.head_, temperature)
        return {
            "method": "temperature",
            "temperature": temperature,
            "fitted_temperature": fit.fitted,
            "likelihood_ratio": fit.statistic,
            "significant": fit.significant,
            "test": fit.describe(),
            "fitted_on": source,
            "n": int(len(y)),
            "heldout_ece_before": fit.ece_before,
            "heldout_ece_after": fit.ece_applied,
        }

    def _fitted_metrics(
        self, fitted: Fitted
    ) -> tuple[Dataset, dict[str, Any], dict[str, np.ndarray]]:
        """Validation and test metrics, from the features the strategy has, else extracted, and
        the probabilities they came from (each split's, when it has a row per sample).

        A model refitted on train + val gets no "val" metrics: those images trained it. The
        held-out figures of its selection step are in ``selection_``, named as what they are.
        """
        dataset = fitted.dataset
        split_xy = dict(fitted.features)
        skip = {"train", "val"} if fitted.trained_on_val else {"train"}
        split_xy = {k: v for k, v in split_xy.items() if k not in skip}
        missing = [
            name
            for name, samples in dataset.splits.items()
            if name not in skip and samples and name not in split_xy
        ]
        if missing:
            paths = [s.path for name in missing for s in dataset.splits[name]]
            extracted = self._extract(self.backbone_, paths, desc="evaluating")
            if extracted.failures:
                dataset = dataset.without(extracted.failures)
            by_path = dict(zip(extracted.paths, extracted.features, strict=True))
            for name in missing:
                split_xy[name] = xy(
                    dataset.splits.get(name, []), by_path, self.backbone_.num_features
                )
        metrics: dict[str, Any] = {}
        probabilities: dict[str, np.ndarray] = {}
        for name, (x, y_) in split_xy.items():
            if name in skip or not len(y_):
                continue
            proba = self._proba(x)
            metrics[name] = classification_metrics(y_, proba, self.classes_)
            samples = dataset.splits.get(name, [])
            if np.array_equal(y_, [s.label for s in samples]):
                probabilities[name] = proba  # a row per sample of the split, in its order
        return dataset, metrics, probabilities

    def _as_dataset(
        self,
        X: str | Path | Dataset | Sequence[str | Path],
        y: Sequence[str] | None,
        vouched: dict[Path, str] | None = None,
    ) -> Dataset:
        if isinstance(X, Dataset):
            return X
        if isinstance(X, (str, Path)):
            if y is not None:
                raise DataError("Pass labels y only with a list of image paths, not a folder.")
            return load_dataset(
                X,
                val_fraction=self.val_fraction,
                test_fraction=self.test_fraction,
                seed=self.seed,
                vouch=self._vouch(vouched),
            )
        if y is None:
            raise DataError("A list of image paths needs labels: fit(paths, labels).")
        return dataset_from_lists(
            list(X),
            [str(label) for label in y],
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            seed=self.seed,
            vouch=self._vouch(vouched),
        )

    def _vouch(self, found: dict[Path, str] | None = None) -> Vouch | None:
        """With the cache on, discovery does not open files an earlier run decoded whole and
        that are unchanged since: a warm run lists a folder with one ``stat`` per file. Their
        digests go into ``found``, for the same run's extraction to use without a second stat.
        """
        if not self.cache:
            return None
        folder = Path(self.cache_dir) if self.cache_dir else default_cache_dir()

        def vouch(paths: Sequence[Path]) -> Mapping[Path, str]:
            decoded = decoded_in(folder, paths)
            if found is not None:
                found.update(decoded)
            return decoded

        return vouch

    def _extract(
        self,
        backbone: Backbone,
        paths: Sequence[Path],
        *,
        desc: str,
        view: Any = None,
        digests: Mapping[Path, str] | None = None,
    ) -> Any:
        return extract_cached(
            backbone,
            paths,
            use_cache=self.cache,
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
            desc=desc,
            view=view,
            digests=digests,
            batch_size=self.extract_batch_size,
            num_workers=self.num_workers,
            device=self.device,
            quiet=self.quiet,
        )

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError(
                "This ImageClassifier is not fitted yet; call fit(...) or "
                "ImageClassifier.load(RUN) first."
            )

    def _proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities: the softmax of the head's (calibrated) logits."""
        self.head_.eval()
        with torch.no_grad():
            logits = self.head_(torch.from_numpy(np.ascontiguousarray(features, np.float32)))
            return F.softmax(logits, dim=1).numpy()

    def _fitted_proba(self, dataset: Dataset, split: str) -> np.ndarray | None:
        """The probabilities ``fit`` computed for ``split`` of ``dataset``, a row per sample, when
        it is the dataset this process trained on (the report then predicts nothing again)."""
        if dataset is not getattr(self, "_fit_dataset", None):
            return None
        return getattr(self, "_fit_proba", {}).get(split)

    def _tta_proba(self, files: Sequence[Path], *, tta: str, desc: str) -> tuple[Any, np.ndarray]:
        """(extraction of the plain view, probabilities averaged over the ``tta`` views)."""
        from headstart.tta import tta_views

        views = tta_views(tta, self.preprocess_)
        extracted = self._extract(self.backbone_, files, desc=desc)
        proba = self._proba(extracted.features)
        for view in views[1:]:
            name = view.name if view is not None else "plain"
            other = self._extract(
                self.backbone_, extracted.paths, desc=f"{desc}, {name}", view=view
            )
            if other.paths != extracted.paths:  # the same files decoded a moment ago
                path = next(iter(other.failures), extracted.paths[0])
                raise ImageDecodeError(path, other.failures.get(path, "changed while reading"))
            proba = proba + self._proba(other.features)
        return extracted, proba / len(views)

    def predict_files(
        self, paths: Sequence[str | Path], *, top_k: int = 5, tta: str = "none"
    ) -> list[Prediction]:
        """Predict every image among files and folders; unreadable ones get an ``error``.

        ``tta``: ``"none"``, ``"flip"`` or ``"crops"`` (:mod:`headstart.tta`): average the
        probabilities of that many views of each image.
        """
        self._check_fitted()
        files, skipped = collect_image_paths(list(paths))
        extracted, proba = self._tta_proba(files, tta=tta, desc="predicting")
        row_of = {p: i for i, p in enumerate(extracted.paths)}
        k = max(1, min(top_k, len(self.classes_)))
        results: list[Prediction] = [Prediction(s.path, error=s.reason) for s in skipped]
        for path in files:
            if path in extracted.failures or path not in row_of:
                reason = extracted.failures.get(path, "could not be read")
                results.append(Prediction(path, error=reason))
                continue
            row = proba[row_of[path]]
            order = np.argsort(-row, kind="stable")[:k]
            top = tuple((self.classes_[i], float(row[i])) for i in order)
            results.append(Prediction(path, top[0][0], top[0][1], top))
        return results

    def predict_proba(self, paths: Sequence[str | Path], *, tta: str = "none") -> np.ndarray:
        """Class probabilities, one row per image file in ``paths`` (columns: ``classes_``).

        ``tta``: ``"none"``, ``"flip"`` or ``"crops"``: average over that many views of each
        image (:mod:`headstart.tta`).

        Raises:
            ImageDecodeError: a file could not be read; use ``predict_files`` to get the others.
        """
        self._check_fitted()
        files = [Path(p) for p in paths]
        extracted, proba = self._tta_proba(files, tta=tta, desc="predicting")
        if extracted.failures:
            path, reason = next(iter(extracted.failures.items()))
            raise ImageDecodeError(path, reason)
        return proba

    def predict(self, paths: Sequence[str | Path], *, tta: str = "none") -> list[str]:
        """The most probable class name for each image file in ``paths``."""
        proba = self.predict_proba(paths, tta=tta)
        return [self.classes_[i] for i in proba.argmax(1)]

    def evaluate(
        self, data: str | Path | Dataset, *, split: str | None = None, tta: str = "none"
    ) -> dict[str, Any]:
        """Metrics on labelled data: accuracy, loss, per-class P/R/F1, confusion matrix.

        The split evaluated is ``split`` if given, else test, else val, else all of ``data``;
        ``tta`` averages the probabilities of several views of each image (:mod:`headstart.tta`).
        A plain class-folder dataset that is the one the model was trained on is split again with
        the recorded seed and fractions, so its test split is the same images as at training time.
        """
        self._check_fitted()
        dataset = data if isinstance(data, Dataset) else self.evaluation_dataset(data)
        chosen = split or next(
            (s for s in ("test", "val", "train") if dataset.splits.get(s)), "train"
        )
        if chosen not in dataset.splits:
            raise DataError(
                f"Split {chosen!r} not found in {dataset.root}; it has {', '.join(dataset.splits)}."
            )
        samples = dataset.splits[chosen]
        extracted, all_proba = self._tta_proba(
            [s.path for s in samples], tta=tta, desc="evaluating"
        )
        row = {p: i for i, p in enumerate(extracted.paths)}
        kept = [s for s in samples if s.path in row]
        proba = all_proba[[row[s.path] for s in kept]].reshape(len(kept), len(self.classes_))
        y = np.array([s.label for s in kept], dtype=np.int64)
        metrics = classification_metrics(y, proba, self.classes_)
        metrics["split"] = chosen if (chosen != "train" or dataset.split_spec is None) else "all"
        metrics["tta"] = tta
        metrics["paths"] = [str(s.path) for s in kept]
        metrics["predicted"] = [int(i) for i in proba.argmax(1)] if len(kept) else []
        metrics["skipped"] = [{"path": str(p), "reason": r} for p, r in extracted.failures.items()]
        return metrics

    def evaluation_dataset(self, data: str | Path) -> Dataset:
        """``data`` as ``evaluate`` and the report read it.

        When it is the folder this model was trained on and headstart split it, the split is
        redone with the recorded seed and fractions, so "test" is the same images as at training
        time, never training images. Otherwise all of ``data`` is one split.
        """
        self._check_fitted()
        data = Path(data)
        recorded = getattr(self, "dataset_", {}) or {}
        spec, root = recorded.get("split_spec"), recorded.get("root")
        # Both resolved: the run records an absolute path, which may go through a symlink.
        same_root = bool(root) and Path(str(root)).resolve() == data.resolve()
        held = getattr(self, "_fit_dataset", None)
        if same_root and held is not None and held.split_spec == (spec or None):
            return held  # what reading it again would give, as this process already read it
        if same_root and spec:
            return load_dataset(
                data,
                val_fraction=float(spec["val_fraction"]),
                test_fraction=float(spec["test_fraction"]),
                seed=int(spec["seed"]),
                classes=self.classes_,
                vouch=self._vouch(),
            )
        return load_dataset(
            data, val_fraction=0.0, test_fraction=0.0, classes=self.classes_, vouch=self._vouch()
        )

    # ----------------------------------------------------------- save and load
    def _timm_classifier(self) -> str | None:
        """The timm classifier name the linear head is saved under, so timm loads the run.

        Only for a linear head on a timm backbone's final features: features of an earlier
        stage (``layer``) are not what timm's classifier receives.
        """
        classifier = self.backbone_.spec.get("classifier")
        if (
            self.backbone_.spec.get("family") == "timm"
            and isinstance(self.head_, nn.Linear)
            and isinstance(classifier, str)
            and classifier
            and self.backbone_.spec.get("layer") is None
        ):
            return classifier
        return None

    def _state_tensors(self) -> dict[str, torch.Tensor]:
        tensors = dict(inner_module(self.backbone_.module).state_dict())
        classifier = self._timm_classifier()
        timm_linear = classifier is not None
        for name, value in self.head_.state_dict().items():
            key = f"{classifier}.{name}" if timm_linear else f"{_HEAD_PREFIX}{name}"
            tensors[key] = value
        return tensors

    def _head_keys(self) -> dict[str, str]:
        """Maps saved tensor keys to the head's own state-dict keys."""
        classifier = self._timm_classifier()
        prefix = f"{classifier}." if classifier is not None else _HEAD_PREFIX
        return {f"{prefix}{name}": name for name in self.head_.state_dict()}

    def config(self) -> dict[str, Any]:
        """The run's ``config.json``: a valid timm model config plus a ``headstart`` section."""
        self._check_fitted()
        spec = dict(self.backbone_.spec)
        hs: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "classes": self.classes_,
            "backbone": spec,
            "preprocess": self.preprocess_.to_dict(),
            "strategy": self.settings_.strategy,
            "strategy_reason": _reason(self),
            "advice": _advice_dict(self),
            "head": head_config(self.settings_.head, self.head_),
            "training": {
                **self.settings_.to_dict(),
                "best_epoch": self.best_epoch_,
                "epochs_run": len(self.history_),
                "monitor": self.monitor_,
                "interrupted": getattr(self, "interrupted_", False),
                "seconds": round(getattr(self, "fit_seconds_", 0.0), 2),
                "epoch_seconds": [round(t, 3) for t in getattr(self, "epoch_seconds_", [])],
                "details": getattr(self, "details_", {}),
                "selection": getattr(self, "selection_", None),
            },
            "calibration": getattr(self, "calibration_", None),
            "data": self.dataset_,
            "metrics": self.metrics_,
            "versions": _versions(),
        }
        config: dict[str, Any] = {}
        if spec.get("family") == "timm":
            pretrained_cfg = dict(spec.get("pretrained_cfg") or {})
            pretrained_cfg.update(self.preprocess_.to_timm_cfg())
            pretrained_cfg["num_classes"] = len(self.classes_)
            config.update(
                architecture=spec["architecture"],
                num_classes=len(self.classes_),
                num_features=self.backbone_.num_features,
                model_args=spec.get("model_args") or {},
                pretrained_cfg=pretrained_cfg,
                label_names=self.classes_,
            )
        config["headstart"] = hs
        return config

    def save(self, folder: str | Path) -> Path:
        """Write the run folder: model.safetensors, history.csv, curves.png, config.json last."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_weights(folder / WEIGHTS_NAME, self._state_tensors(), {"format": "pt"})
        write_history_csv(folder / "history.csv", self.history_)
        if self.history_:
            plot_curves(self.history_, self.best_epoch_, folder / "curves.png")
        write_skipped_csv(folder / "skipped.csv", self.dataset_.get("skipped", []))
        if self.metrics_:
            write_json(folder / "metrics.json", self.metrics_)
        write_json(folder / CONFIG_NAME, self.config())
        return folder

    @classmethod
    def load(cls, folder: str | Path, **overrides: Any) -> ImageClassifier:
        """Rebuild a saved classifier from its run folder, offline, reading data only."""
        config, tensors = read_run(folder)
        hs = config["headstart"]
        try:
            preprocess = Preprocess.from_dict(hs["preprocess"])
            spec = hs["backbone"]
            backbone = rebuild_backbone(spec, preprocess)
            head = head_from_config(hs["head"])
            classes = [str(c) for c in hs["classes"]]
            training = hs.get("training", {})
            strategy = str(hs.get("strategy", "features"))
            settings = TrainSettings.from_dict({**training, "strategy": strategy})
        except (KeyError, TypeError, ValueError, HeadstartError) as exc:
            raise _run_error(folder, f"bad config.json ({exc})") from exc
        clf = cls(
            model=str(spec.get("model", "")),
            head=str(hs["head"]["kind"]),
            strategy=strategy,
            seed=settings.seed,
            **overrides,
        )
        if spec.get("layer") is not None:
            try:
                backbone = select_layer(backbone, spec["layer"])
            except HeadstartError as exc:
                raise _run_error(folder, str(exc)) from exc
        clf.backbone_ = backbone
        clf.head_ = head
        head_keys = clf._head_keys()
        head_state = {head_keys[k]: v for k, v in tensors.items() if k in head_keys}
        backbone_state = {k: v for k, v in tensors.items() if k not in head_keys}
        try:
            inner_module(backbone.module).load_state_dict(backbone_state, strict=True)
            head.load_state_dict(head_state, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise _run_error(folder, f"weights do not fit the model ({first})") from exc
        backbone.module.eval()
        head.eval()
        for param in backbone.module.parameters():
            param.requires_grad_(False)
        clf.settings_ = settings
        clf.interrupted_ = bool(training.get("interrupted", False))
        clf.classes_ = classes
        clf.preprocess_ = preprocess
        clf.backbone_id_ = backbone.weights_id
        clf.dataset_ = hs.get("data", {})
        clf.metrics_ = hs.get("metrics", {})
        clf.best_epoch_ = int(training.get("best_epoch", 0))
        clf.monitor_ = str(training.get("monitor", "val_loss"))
        clf.history_ = []
        calibration = hs.get("calibration") or {}
        clf.calibration_ = calibration or None
        clf.temperature_ = float(calibration.get("temperature", 1.0))
        clf.selection_ = training.get("selection")
        return clf


def _warn_on_small_classes(dataset: Dataset) -> None:
    """One line per class that a split it needs is missing: it cannot be validated or tested."""
    totals = Counter(s.label for split in dataset.splits.values() for s in split)
    for name in ("val", "test"):
        samples = dataset.splits.get(name)
        if not samples:
            continue
        present = {s.label for s in samples}
        for index, cls in enumerate(dataset.classes):
            if index in present:
                continue
            total = totals[index]
            needs = (
                "add images to it (at least one per split)" if total else "it has no images at all"
            )
            warnings.warn(
                f"class {cls!r} has no {name} images ({total} in all), so it cannot be "
                f"{'validated' if name == 'val' else 'tested'}; {needs}.",
                DataWarning,
                stacklevel=3,
            )


def _advice_dict(clf: ImageClassifier) -> dict[str, Any] | None:
    advice: Advice | None = getattr(clf, "advice_", None)
    return advice.to_dict() if advice is not None else None


def _reason(clf: ImageClassifier) -> str:
    """Why this strategy: the measured advice under ``auto``, else the user's choice."""
    advice = getattr(clf, "advice_", None)
    if advice is not None:
        return "chosen by --strategy auto: " + "; ".join(advice.reasons)
    return f"chosen by the user (--strategy {clf.settings_.strategy})"


def _run_error(folder: str | Path, what: str) -> HeadstartError:
    from headstart.errors import RunFolderError

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
