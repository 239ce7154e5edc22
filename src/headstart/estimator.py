"""``ImageClassifier``: the public estimator, in the spirit of scikit-learn.

``__init__`` only stores its keyword arguments; ``fit`` validates them, resolves the backbone and
its preprocessing from the weights, and hands the training to a strategy
(:mod:`headstart.strategies`: cached features, frozen backbone with augmentation, fine-tuning, or
training from scratch); the learned state ends in ``_``. The same object predicts, evaluates and
saves, always through the one ``Preprocess`` the backbone's weights defined, so train and predict
cannot drift apart.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart import distributed
from headstart.backbones import DEFAULT_MODEL, Backbone, create_backbone
from headstart.data import (
    CsvColumns,
    Dataset,
    dataset_from_lists,
    load_dataset,
)
from headstart.data.discovery import Vouch
from headstart.errors import (
    DataError,
    HeadstartWarning,
    ImageDecodeError,
    InvalidParameterError,
    NotFittedError,
)
from headstart.evaluation.calibration import CALIBRATIONS
from headstart.features.cache import decoded_in, default_cache_dir
from headstart.features.engines import check_engine
from headstart.features.extract import extract_cached
from headstart.fit_warnings import warn_on_leakage, warn_on_pretrained_view, warn_on_small_classes
from headstart.fitted import (
    FittedModel,
    LearnedAttributes,
    SplitScores,
    finish_fit,
    fitted_names,
    missing_typicality,
)
from headstart.heads.typicality import DEFAULT_SCORE, DEFAULT_THRESHOLD, check_unknown_options
from headstart.label_sets import (
    check_multi_label_params,
    evaluate_label_sets,
)
from headstart.params import Parameters
from headstart.predicting import Answers, Paths, as_list, in_given_order
from headstart.predictions import Prediction, SplitPrediction
from headstart.saving import load_run, run_config, save_run
from headstart.strategies import (
    Job,
    TrainSettings,
    backbone_weights,
    fit_strategy,
    refuse_C_without_linear_head,
    resolve_train_settings,
)
from headstart.strategies.auto import Advice, advise

if TYPE_CHECKING:
    from headstart.compare import Comparison

__all__ = ["ImageClassifier", "Prediction", "SplitPrediction"]


def _extracts_plain(settings: TrainSettings) -> bool:
    """The strategy's first step extracts plain features of every image with the backbone as
    created (``features`` without an earlier ``layer``), so that step can run before it."""
    return settings.strategy == "features" and settings.layer is None


class ImageClassifier(Parameters, LearnedAttributes):
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
        engine: What runs the backbone when features are extracted on a CPU: ``"torch"``,
            ``"onnxruntime"``, ``"openvino"`` or ``"auto"`` (default: the fastest measured on
            this backbone, torch unless another wins; :mod:`headstart.features.engines`). Any
            engine's features equal torch's to 1e-4 and share its cache entries.
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
        refit: after choosing on validation, train again on train + val (True) or keep the
            final fit on the training images only (False). None (default): ``features``
            refits its head; ``augment``, ``finetune`` and ``scratch`` repeat their run for the
            epochs chosen where that pays: validation images at least half the training ones,
            up to 2000 training images (:func:`headstart.strategies.refit_by_default`).
        calibrate: ``"temperature"`` (default): fit a temperature on held-out logits of the
            selection step so that predicted probabilities match accuracy; ``"none"``: raw
            softmax probabilities.
        class_weight: weight each image's loss by its class, for every head and strategy:
            ``"balanced"`` (``n / (k * n_c)``, scikit-learn's), a dict of class name to weight,
            or ``"none"``. None (default): unweighted, except that ``auto`` measures
            ``"balanced"`` on imbalanced data and keeps it when held-out macro-F1 improves.
        unknown_score: how typical of the training classes an image is
            (:mod:`headstart.heads.typicality`): ``"mahalanobis"`` (default, measured best
            across tasks), another of its scores, ``"auto"`` (chosen by holding out each known
            class in turn), or ``"none"``: predictions then carry no typicality.
        unknown_threshold: typicality below which a prediction is flagged ``unknown``: the share
            of held-out known images that would be (default 0.05: about 95% accepted).


    Under torchrun (a ``torch.distributed`` process group initialised before ``fit``), every
    process calls ``fit`` with the same arguments: extraction and end-to-end training are split
    across them, rank 0 alone uses the feature cache, the checkpoints and the console, and every
    rank ends with the same fitted classifier. Save it from rank 0 only.

    It follows scikit-learn's estimator contract (``get_params``, ``set_params``,
    ``sklearn.base.clone``, a ``repr`` of the parameters that differ from their defaults), and its
    learned state is the fields of :class:`~headstart.fitted.FittedModel` with a trailing ``_``
    (``classes_``, ``head_``, ``settings_``...), the same whether ``fit`` or ``load`` made it.
    """

    # This process's training data and its held-out probabilities (never saved): see ``fit``.
    _fit_dataset: Dataset | None
    _fit_proba: dict[str, SplitScores]

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
        engine: str = "auto",
        num_workers: int | None = None,
        extract_batch_size: int = 32,
        quiet: bool = False,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        check_data: bool = True,
        C: float | None = None,
        refit: bool | None = None,
        calibrate: str = "temperature",
        class_weight: str | Mapping[str, float] | None = None,
        unknown_score: str = DEFAULT_SCORE,
        unknown_threshold: float = DEFAULT_THRESHOLD,
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
        self.engine = engine
        self.num_workers = num_workers
        self.extract_batch_size = extract_batch_size
        self.quiet = quiet
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.check_data = check_data
        self.C = C
        self.refit = refit
        self.calibrate = calibrate
        self.class_weight = class_weight
        self.unknown_score = unknown_score
        self.unknown_threshold = unknown_threshold

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Paths | Dataset, y: Sequence[Any] | None = None) -> ImageClassifier:
        """Train on a folder, a CSV, a ``Dataset``, or a list of image paths with labels ``y``.

        Several labels an image (a CSV cell ``dog;ball``, or a list of labels each in ``y``)
        trains a multi-label classifier (:mod:`headstart.label_sets`).

        Ctrl-C during an end-to-end strategy stops training cleanly: the best weights so far are
        kept, ``interrupted_`` is True, and the classifier can be saved as it is.
        """
        params = self.get_params()
        started = time.monotonic()
        vouched: dict[Path, str] = {}  # digests of the files discovery found in the cache
        dataset = self._as_dataset(X, y, vouched)
        if dataset.multi_label:
            params = check_multi_label_params(params)
        n_train = len(dataset.splits.get("train", []))
        n_val = len(dataset.splits.get("val", []))
        # Resolved once per fit: a named strategy's now, before the backbone is built (a bad
        # option fails before any extraction); auto's once its measurements are in.
        resolved = None
        if params["strategy"] != "auto":
            resolved = resolve_train_settings(params, n_train=n_train, n_val=n_val)
        settings = resolved.settings if resolved is not None else None
        backbone = create_backbone(
            self.model,
            weights=self.weights if settings is None else backbone_weights(settings, self.weights),
            preprocess_overrides=self.preprocess,
        )
        if self.calibrate not in CALIBRATIONS:
            raise InvalidParameterError(
                f"Unknown calibration {self.calibrate!r}; choose one of {', '.join(CALIBRATIONS)}."
            )
        refuse_C_without_linear_head(self.C, self.head)  # before auto measures
        check_unknown_options(self.unknown_score, self.unknown_threshold)
        check_engine(self.engine)
        main = distributed.is_main()  # under torchrun: rank 0 alone warns and prints
        quiet = self.quiet or not main
        if main:
            warn_on_small_classes(dataset)
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
                warn_on_leakage(
                    dataset,
                    plain.digests if plain is not None else None,
                    cache=self.cache,
                    cache_dir=self.cache_dir,
                    num_workers=self.num_workers,
                    quiet=self.quiet,
                )
            with warnings.catch_warnings():
                if not main:
                    warnings.simplefilter("ignore")
                warn_on_pretrained_view(
                    dataset,
                    backbone,
                    partial(self._extract, desc="asking the pretrained classifier"),
                    model=self.model,
                    seed=self.seed,
                )
        advice: Advice | None = None
        if resolved is None:
            # Every rank measures (the extraction is shared); all follow rank 0's advice.
            advice = distributed.broadcast(self._advise(dataset, backbone))
            if not quiet:
                print(advice.explain(), file=sys.stderr)
            resolved = resolve_train_settings(params, n_train=n_train, n_val=n_val, advice=advice)
            if resolved.note is not None and main:
                warnings.warn(resolved.note, HeadstartWarning, stacklevel=2)
        settings = resolved.settings
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
        state, dataset, proba = finish_fit(
            fitted,
            resolved,
            calibration=self.calibrate,
            unknown_score=self.unknown_score,
            unknown_threshold=self.unknown_threshold,
            extract=partial(self._extract, fitted.backbone, desc="evaluating"),
            advice=advice,
            started=started,
        )
        self._set_fitted(state)
        # Kept for this process only (never saved): the report of the run evaluates on the data
        # it trained on, and reading a 100k-image folder again would cost seconds for nothing.
        # Only a dataset read from a path: it is what reading that path again would give.
        self._fit_dataset = dataset if isinstance(X, (str, Path)) else None
        # Its probabilities of each held-out split, a row per sample: predict_split returns them.
        self._fit_proba = proba if self._fit_dataset is not None else {}
        return self

    def _set_fitted(self, state: FittedModel) -> None:
        """The one place the learned attributes are set: each field of ``state`` + ``_``."""
        for name in fitted_names():
            setattr(self, f"{name}_", getattr(state, name))
        self._fit_dataset = None
        self._fit_proba = {}

    def _fitted_state(self) -> FittedModel:
        """The learned attributes as one record (what ``save`` writes)."""
        self._check_fitted()
        return FittedModel(**{name: getattr(self, f"{name}_") for name in fitted_names()})

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

    def compare(
        self,
        X: str | Path | Dataset | Sequence[str | Path],
        models: Sequence[str],
        *,
        y: Sequence[str] | None = None,
        budget: float | None = None,
    ) -> Comparison:
        """Which of ``models`` for this data: each scored by the linear head's held-out
        protocol on the same images, timed, one recommended (:mod:`headstart.compare`). The
        features go to the cache, so training on the recommended one extracts nothing again."""
        from headstart.compare import compare_backbones

        def extract(net: Backbone, paths: Sequence[Path], *, desc: str, cache: bool = True) -> Any:
            return self._extract(net, paths, desc=desc, use_cache=cache)

        return compare_backbones(
            self._as_dataset(X, y),
            models,
            extract,
            weights=self.weights,
            preprocess=self.preprocess,
            budget=budget,
            seed=self.seed,
            quiet=self.quiet,
        )

    def _advise(self, dataset: Dataset, backbone: Backbone) -> Advice:
        def extract(net: Backbone, paths: Sequence[Path], desc: str, view: Any = None) -> Any:
            return self._extract(net, paths, desc=desc, view=view)

        # Under torchrun only rank 0 prints the measurement's progress.
        quiet = self.quiet or not distributed.is_main()
        return advise(dataset, backbone, extract, {**self.get_params(), "quiet": quiet})

    def _as_dataset(
        self,
        X: str | Path | Dataset | Sequence[str | Path],
        y: Sequence[Any] | None,
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
            list(y),  # a label each, or a list of labels each (several labels an image)
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
        use_cache: bool = True,
    ) -> Any:
        return extract_cached(
            backbone,
            paths,
            use_cache=self.cache and use_cache,
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
            desc=desc,
            view=view,
            digests=digests,
            batch_size=self.extract_batch_size,
            num_workers=self.num_workers,
            device=self.device,
            engine=self.engine,
            quiet=self.quiet or not use_cache,  # an uncached pass is a short timing one
        )

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise NotFittedError(
                "This ImageClassifier is not fitted yet; call fit(...) or "
                "ImageClassifier.load(RUN) first."
            )

    def _answers(self) -> Answers:
        """The fitted model's answering half (:mod:`headstart.predicting`)."""
        self._check_fitted()
        return Answers(self.head_, self.classes_, self.thresholds_, self.typicality_)

    def _extract_with_backbone(self, paths: Sequence[Path], **kwargs: Any) -> Any:
        return self._extract(self.backbone_, paths, **kwargs)

    def _tta_proba(
        self, answers: Answers, files: Sequence[Path], *, tta: str, desc: str
    ) -> tuple[Any, np.ndarray, np.ndarray | None]:
        from headstart.tta import tta_views

        views = tta_views(tta, self.preprocess_)
        return answers.tta_proba(self._extract_with_backbone, files, views, desc=desc)

    def predict_files(
        self,
        paths: Paths,
        *,
        top_k: int = 5,
        tta: str = "none",
        unknown_threshold: float | None = None,
    ) -> list[Prediction]:
        """Predict every image among files and folders; unreadable ones get an ``error``.

        One result per file, in the order the paths were given (a folder's files sorted, in its
        place), so the output lines up with the input. With a typicality (runs trained with
        it), each result says how typical of the training classes the image is and whether it
        is ``unknown``: less typical than ``unknown_threshold`` (default: the run's).

        ``tta``: ``"none"``, ``"flip"`` or ``"crops"`` (:mod:`headstart.tta`): average the
        probabilities of that many views of each image.
        """
        answers = self._answers()
        cut = answers.threshold(unknown_threshold)
        ordered = in_given_order(paths)
        files = [p for p, reason in ordered.items() if reason is None]
        extracted, proba, typicality = self._tta_proba(answers, files, tta=tta, desc="predicting")
        answered = dict(
            zip(
                extracted.paths,
                answers.predictions(
                    extracted.paths,
                    extracted.features,
                    top_k=top_k,
                    cut=cut,
                    proba=proba,
                    typicality=typicality,
                ),
                strict=True,
            )
        )
        results: list[Prediction] = []
        for path, skip_reason in ordered.items():
            if skip_reason is not None:
                results.append(Prediction(path, error=skip_reason))
            elif path in extracted.failures or path not in answered:
                reason = extracted.failures.get(path, "could not be read")
                results.append(Prediction(path, error=reason))
            else:
                results.append(answered[path])
        return results

    def predict_features(
        self,
        features: np.ndarray,
        paths: Sequence[str | Path],
        *,
        top_k: int = 5,
        unknown_threshold: float | None = None,
    ) -> list[Prediction]:
        """What ``predict_files`` says about images whose pooled features a caller computed
        itself, a row of ``features`` per image named in ``paths``.

        For a caller that runs ``backbone_`` over images that never were files, such as a
        server batching the uploads of several requests into one forward pass
        (:mod:`headstart.inference`): the answers are built by the same code as
        ``predict_files``' answers, so they hold the same fields and numbers (typicality and
        the unknown flag included, for a run that has them).
        """
        answers = self._answers()
        cut = answers.threshold(unknown_threshold)
        return answers.predictions([Path(p) for p in paths], features, top_k=top_k, cut=cut)

    def predict_typicality(self, paths: Paths) -> np.ndarray:
        """How typical of the training classes each image file in ``paths`` is, in [0, 1]: the
        share of held-out known images less typical than it (so known images spread evenly
        over [0, 1]; below ``typicality_.threshold``: flagged unknown).

        Raises:
            NotFittedError: the classifier has no typicality (trained with ``unknown_score=
                "none"``, or saved before headstart had it).
            ImageDecodeError: a file could not be read; ``predict_files`` gives the others.
        """
        answers = self._answers()
        if answers.typicality is None:
            raise NotFittedError(
                f"This classifier has no typicality score: {missing_typicality(self.unknowns_)}."
            )
        files = [Path(p) for p in as_list(paths)]
        extracted = self._extract_with_backbone(files, desc="predicting")
        if extracted.failures:
            path, reason = next(iter(extracted.failures.items()))
            raise ImageDecodeError(path, reason)
        typicality = answers.typicality_of(extracted.features)
        assert typicality is not None
        return typicality

    def predict_proba(self, paths: Paths, *, tta: str = "none") -> np.ndarray:
        """Class probabilities, one row per image file in ``paths`` (columns: ``classes_``); one
        path alone is a list of one.

        ``tta``: ``"none"``, ``"flip"`` or ``"crops"``: average over that many views of each
        image (:mod:`headstart.tta`).

        Raises:
            ImageDecodeError: a file could not be read; use ``predict_files`` to get the others.
        """
        files = [Path(p) for p in as_list(paths)]
        extracted, proba, _ = self._tta_proba(self._answers(), files, tta=tta, desc="predicting")
        if extracted.failures:
            path, reason = next(iter(extracted.failures.items()))
            raise ImageDecodeError(path, reason)
        return proba

    def predict(self, paths: Paths, *, tta: str = "none") -> list[Any]:
        """The most probable class name for each image file in ``paths`` (one path: a list of
        one name); for a multi-label run, each image's list of labels (possibly empty)."""
        return self._answers().labels(self.predict_proba(paths, tta=tta))

    def evaluate(
        self,
        data: str | Path | Dataset,
        *,
        split: str | None = None,
        tta: str = "none",
        unknown: Paths | None = None,
    ) -> dict[str, Any]:
        """Metrics on labelled data: accuracy, loss, per-class P/R/F1, confusion matrix, and
        for a run with a typicality score the share of these known images flagged unknown.

        The split evaluated is ``split`` if given, else test, else val, else all of ``data``;
        ``tta`` averages the probabilities of several views of each image (:mod:`headstart.tta`).
        A plain class-folder dataset that is the one the model was trained on is split again with
        the recorded seed and fractions, so its test split is the same images as at training time.
        ``unknown``: images of none of the classes (files or folders); adds ``unknowns``, how
        well typicality tells them from the known ones (:func:`~headstart.evaluation.openset.
        unknown_metrics`).
        """
        answers = self._answers()
        if unknown is not None and answers.typicality is None:
            raise InvalidParameterError(
                "Evaluating on images of no class needs a run with a typicality score, and "
                f"this one has none ({missing_typicality(self.unknowns_)})."
            )
        dataset = data if isinstance(data, Dataset) else self.evaluation_dataset(data)
        chosen = split or next(
            (s for s in ("test", "val", "train") if dataset.splits.get(s)), "train"
        )
        if chosen not in dataset.splits:
            raise DataError(
                f"Split {chosen!r} not found in {dataset.root}; it has {', '.join(dataset.splits)}."
            )
        predicted = self.predict_split(dataset, chosen, tta=tta)
        shown = chosen if (chosen != "train" or dataset.split_spec is None) else "all"
        if self.thresholds_ is not None:
            return evaluate_label_sets(predicted, self.thresholds_, self.classes_, shown, tta)
        metrics = answers.split_metrics(predicted, shown, tta)
        if unknown is not None and predicted.typicality is not None:
            metrics["unknowns"] = answers.unknown_metrics(
                self._extract_with_backbone, unknown, predicted.typicality
            )
        return metrics

    def predict_split(self, dataset: Dataset, split: str, *, tta: str = "none") -> SplitPrediction:
        """Probabilities of one split of a labelled dataset, a row per sample that could be read.

        When ``dataset`` is the one ``fit`` read in this process (``evaluation_dataset`` returns
        it for the training folder), the probabilities ``fit`` computed for that split are
        returned without a forward pass: right after training, the report and ``evaluate`` of a
        100k-image folder would otherwise predict every image again for the same numbers. With
        ``tta`` other than "none" the views are always predicted.

        Raises:
            DataError: ``dataset`` has no split ``split``.
        """
        self._check_fitted()
        if split not in dataset.splits:
            raise DataError(
                f"Split {split!r} not found in {dataset.root}; it has {', '.join(dataset.splits)}."
            )
        samples = list(dataset.splits[split])
        held = self._fit_proba.get(split)
        if tta == "none" and held is not None and dataset is self._fit_dataset:
            return SplitPrediction(samples, held.proba, {}, held.typicality)
        extracted, all_proba, all_typicality = self._tta_proba(
            self._answers(), [s.path for s in samples], tta=tta, desc="evaluating"
        )
        row = {p: i for i, p in enumerate(extracted.paths)}
        kept = [s for s in samples if s.path in row]
        rows = [row[s.path] for s in kept]
        proba = all_proba[rows].reshape(len(kept), len(self.classes_))
        typicality = None if all_typicality is None else all_typicality[rows]
        failures = {
            s.path: extracted.failures.get(s.path, "could not be read")
            for s in samples
            if s.path not in row
        }
        return SplitPrediction(kept, proba, failures, typicality)

    def evaluation_dataset(self, data: str | Path, *, columns: CsvColumns | None = None) -> Dataset:
        """``data`` as ``evaluate`` and the report read it.

        When it is the folder this model was trained on and headstart split it, the split is
        redone with the recorded seed and fractions, so "test" is the same images as at training
        time, never training images. Otherwise all of ``data`` is one split. ``columns`` names
        a CSV's columns (as ``load_dataset``'s keywords); the CSV the model was trained on is
        read with the columns recorded then, unless others are given.
        """
        self._check_fitted()
        data = Path(data)
        recorded = self.dataset_ or {}
        spec, root = recorded.get("split_spec"), recorded.get("root")
        # Both resolved: the run records an absolute path, which may go through a symlink.
        same_root = bool(root) and Path(str(root)).resolve() == data.resolve()
        if columns is None and same_root:
            columns = recorded.get("columns")
        held = self._fit_dataset
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
                multi_label=self.thresholds_ is not None,
                **(columns or {}),
            )
        return load_dataset(
            data,
            val_fraction=0.0,
            test_fraction=0.0,
            classes=self.classes_,
            vouch=self._vouch(),
            multi_label=self.thresholds_ is not None,
            **(columns or {}),
        )

    # ----------------------------------------------------------- save and load
    def config(self) -> dict[str, Any]:
        """The run's ``config.json``: a valid timm model config plus a ``headstart`` section."""
        return run_config(self._fitted_state())

    def save(self, folder: str | Path) -> Path:
        """Write the run folder (:func:`headstart.saving.save_run`); config.json last."""
        return save_run(self._fitted_state(), folder)

    @classmethod
    def load(cls, folder: str | Path, **overrides: Any) -> ImageClassifier:
        """Rebuild a saved classifier from its run folder, offline, reading data only.

        ``overrides`` are parameters for what it does next (``device``, ``cache_dir``, ...).
        """
        state = load_run(folder)
        clf = cls(
            model=str(state.backbone.spec.get("model", "")),
            head=state.settings.head,
            strategy=state.settings.strategy,
            seed=state.settings.seed,
            **overrides,
        )
        clf._set_fitted(state)
        return clf
