"""The preprocessing a backbone's weights expect, resolved from the weights and applied exactly.

A wrong mean/std, pixel scale or channel order does not crash anything: it quietly costs accuracy,
fatally for some models and barely for others (docs/why.md, story 1). So the preprocessing is
never guessed. :func:`resolve_preprocess` reads it from the weights' own config with timm's
precedence (explicit overrides > the weights' config > defaults, as
``timm.data.resolve_data_config`` does), :func:`preprocess_from_torchvision` from a torchvision
weights enum, and the resulting :class:`Preprocess` is the one object that turns an image into a
tensor: in training, prediction, feature caching and export alike, so they cannot drift apart
(story 9).

``Preprocess`` builds the very same torchvision/timm ops the references build (``Resize``,
``CenterCrop``, timm's ``ResizeKeepRatio`` and ``CenterCropOrPad``, ``Normalize``), because
re-deriving the arithmetic would differ from timm's and torchvision's own pipelines by a pixel of
rounding here and there. Keras applications' ``preprocess_input`` modes are expressed in the same
fields (a BGR flip, a pixel scale, mean and std).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from headstart.errors import DataError, PreprocessOverrideWarning, RunFolderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    import torchvision
    from PIL import Image

__all__ = [
    "CROP_MODES",
    "DECODE_MODES",
    "DEFAULT_DECODE",
    "INTERPOLATIONS",
    "KERAS_MODES",
    "KERAS_MODE_VALUES",
    "OVERRIDE_KEYS",
    "RESIZE_MODES",
    "Preprocess",
    "preprocess_from_torchvision",
    "resolve_preprocess",
]

CropMode = Literal["center", "squash", "border"]
ChannelOrder = Literal["RGB", "BGR"]
DecodeMode = Literal["exact", "fast"]

CROP_MODES: tuple[str, ...] = ("center", "squash", "border")
DECODE_MODES: tuple[str, ...] = ("exact", "fast")
DEFAULT_DECODE: DecodeMode = "fast"
"""JPEG decoding by default: DCT-downscaled when the file is over twice the resize target."""
# The modes PIL resizes with; timm's "random" is a training-only choice and never an eval mode.
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
OVERRIDE_KEYS: tuple[str, ...] = (
    "input_size",
    "crop_pct",
    "crop_mode",
    "interpolation",
    "mean",
    "std",
    "scale",
    "channel_order",
    "keras",
    "resize",
    "decode",
)
RESIZE_MODES: tuple[str, ...] = ("crop", "squash")
# --resize squash is Keras' load_img(target_size=...): the whole image squashed to the input
# size, aspect ratio not kept, nothing cropped.
_SQUASH: dict[str, Any] = {"crop_mode": "squash", "crop_pct": 1.0}

# timm's defaults (timm.data.constants), repeated here so that importing this module does not
# import timm's model zoo; a test pins them to timm's values.
_DEFAULT_INPUT_SIZE = (224, 224)
_DEFAULT_CROP_PCT = 0.875
_DEFAULT_CROP_MODE: CropMode = "center"
_DEFAULT_INTERPOLATION = "bicubic"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_UNIT_SCALE = 1 / 255

KERAS_MODE_VALUES: Mapping[str, Mapping[str, Any]] = {
    "caffe": {
        "scale": 1.0,
        "mean": (103.939, 116.779, 123.68),
        "std": (1.0, 1.0, 1.0),
        "channel_order": "BGR",
    },
    "tf": {
        "scale": _UNIT_SCALE,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "channel_order": "RGB",
    },
    "torch": {
        "scale": _UNIT_SCALE,
        "mean": _IMAGENET_MEAN,
        "std": _IMAGENET_STD,
        "channel_order": "RGB",
    },
}
"""Keras applications' ``preprocess_input`` modes in :class:`Preprocess`' fields, the one table
both ``--preprocess keras=MODE`` and the ``keras:`` backbones read
(keras/src/applications/imagenet_utils.py). caffe: RGB->BGR, 0..255, subtract the ImageNet mean
in BGR order, no std. tf: scale to -1..1, i.e. (x/255 - 0.5) / 0.5. torch: 0..1, then ImageNet
mean/std."""
KERAS_MODES: tuple[str, ...] = tuple(KERAS_MODE_VALUES)
_KERAS_KEYS = frozenset(KERAS_MODE_VALUES["caffe"])
_MAX_SIDE = 8192
_DECODE_TEXT = {
    "fast": "fast (JPEGs over twice the resize target are DCT-downscaled while decoding)",
    "exact": "exact (every pixel decoded, as timm's eval transform)",
}  # guards against a typo turning into a 100-gigapixel resize


@dataclass(frozen=True)
class Preprocess:
    """How one image becomes the exact tensor a backbone's weights expect.

    Calling the object applies, in order: convert to RGB, resize, crop (or pad), convert to a
    float tensor, optionally flip to BGR, multiply by ``scale``, subtract ``mean`` and divide by
    ``std``. Each step is the op timm's or torchvision's eval transform uses, so the result equals
    theirs to float rounding.

    Attributes:
        input_size: (height, width) of the tensor the backbone receives.
        resize: What the image is resized to before cropping; this, not ``crop_pct``, is what is
            applied. An int is the shorter side (torchvision's ``Resize(int)``). A (height, width)
            pair depends on ``crop_mode``: "center" scales so that both sides cover it keeping
            the aspect ratio (timm's ``ResizeKeepRatio``), "squash" resizes to exactly it, and
            "border" fits the image inside it keeping the aspect ratio.
        crop_pct: The crop fraction the weights record (crop size / resize size). Kept so that
            configs exported for timm carry the weights' own value rather than a re-derived one.
        crop_mode: "center" crops the centre; "squash" ignores the aspect ratio; "border" pads
            with the mean colour instead of losing image content.
        interpolation: PIL resampling filter name, antialiased as PIL always does.
        scale: Multiplies the 0..255 pixel values: 1/255 for 0..1 inputs, 1.0 for 0..255 (Keras
            "caffe" weights).
        mean: Subtracted per channel, in scaled units and in ``channel_order``.
        std: Divides per channel, in scaled units and in ``channel_order``.
        channel_order: "RGB", or "BGR" for weights trained on OpenCV/Caffe-ordered inputs.
        source: Where these values came from, e.g. "timm pretrained_cfg resnet50.a1_in1k".
        overrides: Names of the values the user overrode; empty when the weights decided all.
        decode: How JPEGs are decoded. "fast" (the default) lets the decoder scale a JPEG larger
            than twice the resize target down by 1/2, 1/4 or 1/8 while decoding (Pillow's
            ``draft``), several times faster on photos, within a small bound of the exact tensor
            (README, "Preprocessing"). "exact" decodes every pixel, so the tensor equals timm's
            eval transform to float rounding. Not a value of the weights: choosing it is not an
            override and is never warned about.
    """

    input_size: tuple[int, int]
    resize: int | tuple[int, int]
    crop_pct: float = _DEFAULT_CROP_PCT
    crop_mode: CropMode = "center"
    interpolation: str = "bilinear"
    scale: float = _UNIT_SCALE
    mean: tuple[float, float, float] = _IMAGENET_MEAN
    std: tuple[float, float, float] = _IMAGENET_STD
    channel_order: ChannelOrder = "RGB"
    source: str = ""
    overrides: tuple[str, ...] = field(default=())
    decode: DecodeMode = DEFAULT_DECODE

    def __post_init__(self) -> None:
        # Normalise JSON-ish inputs (lists, ints) to the canonical types, so that two equal
        # preprocessings compare, hash and fingerprint equal however they were built.
        norm = _normalise_fields(
            {f.name: getattr(self, f.name) for f in fields(self)}, _fail_invalid
        )
        for name, value in norm.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ applying
    #: Calling it from several threads at once is safe (no shared random state), so batches
    #: can decode in threads (:func:`headstart.features.batches.iter_batches`).
    thread_safe: ClassVar[bool] = True

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """Turn one PIL image into the float32 CHW tensor the backbone receives."""
        return self._pipeline(img)

    def resize_and_crop(self, img: Image.Image) -> Image.Image:
        """The RGB image after the resize and crop (or pad) alone, before any arithmetic.

        What an export with uint8 input receives: the geometric part of the pipeline, with the
        very ops ``__call__`` uses, so the rest (scale, channel order, mean, std) can run in a
        graph and give the same tensor.
        """
        if img.mode != "RGB":
            img = img.convert("RGB")
        for op in self._ops():
            img = op(img)
        return img

    def transform(
        self, augment: Callable[[Image.Image], Image.Image] | None = None
    ) -> Callable[[Image.Image], torch.Tensor]:
        """The same pipeline with a PIL-level augmentation inserted before the resize.

        Augmenting strategies use this instead of composing their own pipeline, so an augmented
        view differs from the plain one only by the augmentation, never by the preprocessing.
        The returned object pickles, so DataLoader workers can use it.
        """
        return _Pipeline(self, augment)

    @cached_property
    def _pipeline(self) -> _Pipeline:
        return _Pipeline(self, None)

    @property
    def draft_size(self) -> tuple[int, int] | None:
        """(width, height) a JPEG may be draft-decoded down to, or None to decode every pixel.

        With ``decode="fast"``, twice the resize target on each side: the DCT downscale then
        still leaves the antialiased resize at least 2x of detail to average over, while large
        photos decode several times faster. With ``decode="exact"``, None.
        """
        if self.decode == "exact":
            return None
        if isinstance(self.resize, int):
            return (2 * self.resize, 2 * self.resize)
        height, width = self.resize
        return (2 * width, 2 * height)

    # ------------------------------------------------------------------ (de)serialising
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_dict` turns back into an equal object."""
        return {
            "input_size": list(self.input_size),
            "resize": self.resize if isinstance(self.resize, int) else list(self.resize),
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "source": self.source,
            "overrides": list(self.overrides),
            "decode": self.decode,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocess:
        """Rebuild a saved preprocessing, refusing anything it would have to guess.

        A saved model must predict with exactly the preprocessing it was trained with, so unknown
        keys, missing keys and bad values are errors rather than defaults.

        Raises:
            RunFolderError: ``d`` is not a complete, valid preprocessing as written by
                :meth:`to_dict`.
        """
        if not isinstance(d, Mapping):
            raise RunFolderError(
                f"Saved preprocessing must be a JSON object, got {type(d).__name__}; "
                "the run folder's config.json is damaged, retrain or restore it."
            )
        names = [f.name for f in fields(cls)]
        # Runs saved before the decode choice existed decoded the fast way.
        d = {"decode": DEFAULT_DECODE, **d} if "decode" not in d else d
        unknown = sorted(set(d) - set(names))
        missing = sorted(set(names) - set(d))
        if unknown or missing:
            what = []
            if unknown:
                what.append(f"unknown keys {unknown}")
            if missing:
                what.append(f"missing keys {missing}")
            raise RunFolderError(
                f"Saved preprocessing has {' and '.join(what)}; expected exactly {names}. "
                "The config.json was edited or written by another headstart version."
            )

        def fail(message: str) -> None:
            raise RunFolderError(f"Saved preprocessing is invalid: {message}")

        norm = _normalise_fields(dict(d), fail)
        return cls(**norm)

    def fingerprint(self) -> str:
        """sha256 hex of the canonical JSON: equal preprocessing, equal key (feature caches).

        The default decode is left out of the hashed JSON, so features cached before the decode
        choice existed (all decoded the fast way) keep their keys.
        """
        values = self.to_dict()
        if values["decode"] == "fast":
            del values["decode"]
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> Preprocess:
        """This preprocessing with explicit overrides applied, recorded and warned about.

        The same rules as :func:`resolve_preprocess`, with this object's values in the place of
        the weights' config; used where the preprocessing comes from a saved model.
        """
        if not overrides or all(v is None for v in overrides.values()):
            return self
        base: dict[str, Any] = {
            "input_size": self.input_size,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
            "scale": self.scale,
            "channel_order": self.channel_order,
        }
        return _build(
            base,
            overrides,
            self.source,
            base_resize=self.resize,
            previous=self.overrides,
            decode=self.decode,
        )

    def to_timm_cfg(self) -> dict[str, Any]:
        """The timm ``pretrained_cfg`` keys that describe this preprocessing.

        For exporting a run folder timm itself can load. timm works in 0..1 RGB units, so mean and
        std are converted to them. timm cannot express a BGR flip: for BGR the values are given in
        RGB order, which timm then applies to RGB input; headstart's own loader reads the exact
        :meth:`to_dict` form instead.
        """
        factor = 255 * self.scale  # scaled units per 0..1 unit
        mean = [m / factor for m in self.mean]
        std = [s / factor for s in self.std]
        if self.channel_order == "BGR":
            mean, std = mean[::-1], std[::-1]
        return {
            "input_size": [3, *self.input_size],
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
            "interpolation": self.interpolation,
            "mean": mean,
            "std": std,
        }

    # ------------------------------------------------------------------ showing
    @property
    def _pixel_range(self) -> float:
        """The value a 255 pixel becomes after scaling (255 for 0..255, 1 for 0..1)."""
        return 255 * self.scale

    def describe(self) -> str:
        """A few lines a person can check against the model card."""
        height, width = self.input_size
        interp = self.interpolation
        if self.crop_mode == "center" and isinstance(self.resize, int):
            resize = (
                f"shorter side to {self.resize} px ({interp}), then center crop {height}x{width}"
            )
        elif self.crop_mode == "center":
            rh, rw = cast(tuple[int, int], self.resize)
            resize = (
                f"to cover {rh}x{rw} keeping the aspect ratio ({interp}), "
                f"then center crop {height}x{width}"
            )
        elif self.crop_mode == "squash":
            rh, rw = cast(tuple[int, int], self.resize)
            resize = (
                f"squash to {rh}x{rw}, aspect ratio not kept ({interp}), "
                f"then center crop {height}x{width}"
            )
        else:
            rh, rw = cast(tuple[int, int], self.resize)
            resize = (
                f"fit inside {rh}x{rw} keeping the aspect ratio ({interp}), "
                f"then pad with the mean colour / crop to {height}x{width}"
            )
        if self.scale == _UNIT_SCALE:
            scale = "pixels / 255 (0..1)"
        elif self.scale == 1.0:
            scale = "pixels as they are (0..255)"
        else:
            scale = f"pixels x {self.scale:g} (0..{self._pixel_range:g})"
        channels = ", ".join(self.channel_order)
        lines = [
            f"input size:    {height}x{width} (height x width)",
            f"resize:        {resize}",
            f"crop_pct:      {self.crop_pct:g} ({self.crop_mode})",
            f"interpolation: {interp}",
            f"scale:         {scale}",
            f"mean:          {_fmt(self.mean)} ({channels})",
            f"std:           {_fmt(self.std)} ({channels})",
            f"channel order: {self.channel_order}",
            f"source:        {self.source or 'unknown'}",
            f"overrides:     {', '.join(self.overrides) if self.overrides else 'none'}",
            f"decode:        {_DECODE_TEXT[self.decode]}",
        ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ internals
    def _ops(self) -> list[Callable[[Any], Any]]:
        """The resize and crop ops of timm's ``transforms_imagenet_eval`` (or torchvision's)."""
        from torchvision import transforms
        from torchvision.transforms import InterpolationMode

        mode = InterpolationMode(self.interpolation)
        size = list(self.input_size)
        if self.crop_mode == "center" and isinstance(self.resize, int):
            return [transforms.Resize(self.resize, interpolation=mode), transforms.CenterCrop(size)]
        if self.crop_mode == "squash":
            return [
                transforms.Resize(list(cast(tuple[int, int], self.resize)), interpolation=mode),
                transforms.CenterCrop(size),
            ]
        from timm.data.transforms import CenterCropOrPad, ResizeKeepRatio

        if self.crop_mode == "center":
            return [
                ResizeKeepRatio(self.resize, interpolation=self.interpolation),
                transforms.CenterCrop(size),
            ]
        # border: pad with the mean colour as timm does (round(255 * mean) in RGB 0..255).
        full = 1.0 / self.scale  # 255.0 exactly for 1/255, so this is timm's round(255 * m)
        pixel_mean = [m * full for m in self.mean]
        if self.channel_order == "BGR":
            pixel_mean = pixel_mean[::-1]
        red, green, blue = (min(255, max(0, round(v))) for v in pixel_mean)
        return [
            ResizeKeepRatio(self.resize, interpolation=self.interpolation, longest=1.0),
            CenterCropOrPad(size, fill=(red, green, blue)),
        ]

    def _to_tensor(self, img: Image.Image) -> torch.Tensor:
        """uint8 HWC pixels -> the normalised float32 tensor, as a CHW view of HWC memory.

        Each output value depends on one 0..255 pixel value and its channel, so the arithmetic
        is done once per possible value (:attr:`_pixel_table`) and applied by table lookup: a
        third of the work of computing it per pixel, and in NumPy, which releases the GIL so
        decoding threads run in parallel. The HWC memory stacks straight into the channels-last
        batch the backbone runs fastest on.
        """
        import numpy as np
        import torch

        pixels = np.asarray(img, dtype=np.uint8)
        if self.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        out = np.empty(pixels.shape, dtype=np.float32)
        for channel, table in enumerate(self._pixel_table):
            table.take(pixels[..., channel], out=out[..., channel])
        return torch.from_numpy(out).permute(2, 0, 1)

    @cached_property
    def _pixel_table(self) -> np.ndarray:
        """(3, 256) float32: each channel's normalised value of each pixel value.

        Computed with torchvision's float32 operations in torchvision's order (``to(float32)``,
        ``div(255)`` or ``mul(scale)``, ``Normalize``'s subtract then divide), so a lookup gives
        bitwise the values ``pil_to_tensor`` + ``Normalize`` give.
        """
        import numpy as np

        values = np.arange(256, dtype=np.float32)[None, :]
        divisor = 1.0 / self.scale
        if divisor == round(divisor):
            # 1/255 -> divide by 255 exactly as ToTensor does (x * (1/255) rounds differently).
            scaled = values / np.float32(divisor)
        else:
            scaled = values * np.float32(self.scale)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        return np.ascontiguousarray((scaled - mean) / std)


class _Pipeline:
    """PIL image -> tensor for one :class:`Preprocess`; a class, not a closure, so it pickles."""

    def __init__(
        self, preprocess: Preprocess, augment: Callable[[Image.Image], Image.Image] | None
    ) -> None:
        self.preprocess = preprocess
        self.augment = augment
        self.ops = preprocess._ops()
        # Augmentations draw from the global random generators (headstart.augment.seeded).
        self.thread_safe = augment is None

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            # Backbones take three channels; this is the conversion headstart's decoder applies.
            img = img.convert("RGB")
        if self.augment is not None:
            img = self.augment(img)
        for op in self.ops:
            img = op(img)
        return self.preprocess._to_tensor(img)

    def __repr__(self) -> str:
        return f"_Pipeline({self.preprocess.source or 'preprocess'}, augment={self.augment!r})"


# ---------------------------------------------------------------------- resolving
def resolve_preprocess(
    pretrained_cfg: Mapping[str, Any] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    source: str = "",
) -> Preprocess:
    """Resolve the preprocessing from a timm-style ``pretrained_cfg`` and explicit overrides.

    Precedence is timm's ``resolve_data_config``: an explicit override, else the weights' config,
    else timm's defaults, so a headstart model sees exactly what ``timm.data.create_transform``
    would give it. Overriding is allowed but never silent: every override that changes the
    weights' value is recorded in ``Preprocess.overrides`` and warned about, because a changed
    mean/std or scale can quietly ruin transfer (docs/why.md, story 1).

    Args:
        pretrained_cfg: The weights' config (timm's ``pretrained_cfg`` keys ``input_size``,
            ``crop_pct``, ``crop_mode``, ``interpolation``, ``mean``, ``std``; others ignored).
            None means timm's defaults.
        overrides: Any of ``input_size`` (int or (H, W)), ``crop_pct``, ``crop_mode``,
            ``interpolation``, ``mean``, ``std``, ``scale``, ``channel_order`` and ``keras``
            ("caffe", "tf" or "torch": Keras ``preprocess_input`` modes, which set scale, mean,
            std and channel order together and so cannot be combined with those keys),
            ``resize`` ("crop", the default: keep the aspect ratio and crop as the weights'
            config says; "squash": resize the whole image to the input size as Keras'
            ``load_img(target_size=...)`` does, for parity with a Keras pipeline) and
            ``decode`` ("exact" or "fast": how JPEGs decode; not a value of the weights, so
            never warned about). A None value means "not given", so CLI flags can be passed
            through as they are.
        source: Where ``pretrained_cfg`` came from, shown by ``describe()``.

    Returns:
        The resolved preprocessing.

    Raises:
        DataError: An unknown override key, a bad override value, or a config value headstart
            cannot apply (e.g. a 1-channel input size).

    Warns:
        PreprocessOverrideWarning: once per override that changes the weights' value.
    """
    cfg = dict(pretrained_cfg or {})
    input_size = cfg.get("input_size") or _DEFAULT_INPUT_SIZE
    base = {
        "input_size": _size(input_size, "pretrained_cfg input_size", _fail_invalid),
        "crop_pct": cfg.get("crop_pct") or _DEFAULT_CROP_PCT,
        "crop_mode": cfg.get("crop_mode") or _DEFAULT_CROP_MODE,
        "interpolation": cfg.get("interpolation") or _DEFAULT_INTERPOLATION,
        "mean": cfg.get("mean") or _IMAGENET_MEAN,
        "std": cfg.get("std") or _IMAGENET_STD,
        "scale": _UNIT_SCALE,
        "channel_order": "RGB",
    }
    return _build(base, overrides, source or "timm defaults")


def preprocess_from_torchvision(
    weights: torchvision.models.WeightsEnum, *, overrides: Mapping[str, Any] | None = None
) -> Preprocess:
    """The preprocessing of a torchvision weights enum, read from ``weights.transforms()``.

    Reading the attributes of the transform the weights ship with (no download needed) and
    rebuilding it from the same ops keeps ``Preprocess(img)`` equal to ``weights.transforms()(img)``
    while making it saveable, comparable and overridable like any other preprocessing.

    Args:
        weights: A member of a torchvision classification weights enum, e.g.
            ``ResNet50_Weights.IMAGENET1K_V2``.
        overrides: As for :func:`resolve_preprocess`.

    Raises:
        DataError: The weights' transform is not torchvision's ``ImageClassification`` preset
            (not classification weights), or an override is invalid.
    """
    from torchvision.transforms._presets import ImageClassification

    name = f"{type(weights).__name__}.{weights.name}"
    tf = weights.transforms()
    if not isinstance(tf, ImageClassification):
        raise DataError(
            f"torchvision weights {name} are not image-classification weights "
            f"(their transform is {type(tf).__name__}); use a classification model's weights."
        )
    crop, resize = int(tf.crop_size[0]), int(tf.resize_size[0])
    base = {
        "input_size": (crop, crop),
        # exact, so that an input_size override rescales the resize by torchvision's own ratio
        "crop_pct": Fraction(crop, resize),
        "crop_mode": "center",
        "interpolation": tf.interpolation.value,
        "mean": tuple(tf.mean),
        "std": tuple(tf.std),
        "scale": _UNIT_SCALE,
        "channel_order": "RGB",
    }
    return _build(base, overrides, f"torchvision {name}")


def _build(
    base: dict[str, Any],
    overrides: Mapping[str, Any] | None,
    source: str,
    *,
    base_resize: int | tuple[int, int] | None = None,
    previous: tuple[str, ...] = (),
    decode: DecodeMode = DEFAULT_DECODE,
) -> Preprocess:
    """Apply the overrides to the weights' values, warn about changes, compute the resize.

    ``base_resize`` is kept when no override touches the geometry, so an existing preprocessing
    keeps its exact resize rather than one re-derived from a rounded crop_pct. ``decode`` is the
    decoding before the overrides; a "decode" key in them replaces it without a warning, because
    it is a choice of speed, not a value of the weights.
    """
    base = _normalise_fields(base, _fail_invalid, partial=True)
    keras = (overrides or {}).get("keras")
    squash = (overrides or {}).get("resize") == "squash"
    values = dict(base)
    changed: list[str] = []
    given = _normalise_overrides(overrides)
    decode = given.pop("decode", decode)
    for key, new in given.items():
        if _differs(base[key], new):
            changed.append(key)
        values[key] = new
    # One line per override the user gave: a keras mode is one choice, so one line for it.
    by_keras = [k for k in changed if keras and k in _KERAS_KEYS]
    by_resize = [k for k in changed if squash and k in _SQUASH]
    if by_resize:
        details = ", ".join(f"{k} {_show(values[k])} (was {_show(base[k])})" for k in by_resize)
        warnings.warn(
            f"preprocessing override resize='squash' (Keras load_img): {details}, the whole "
            f"image resized to the input size without keeping its aspect ratio ({source})",
            PreprocessOverrideWarning,
            stacklevel=3,
        )
    for key in changed:
        if key not in by_keras and key not in by_resize:
            warnings.warn(
                f"preprocessing override: {key} {_show(values[key])} instead of "
                f"{_show(base[key])}, the value of the weights ({source})",
                PreprocessOverrideWarning,
                stacklevel=3,
            )
    if by_keras:
        details = ", ".join(f"{k} {_show(values[k])} (was {_show(base[k])})" for k in by_keras)
        warnings.warn(
            f"preprocessing override keras={keras!r}: {details} instead of the values of "
            f"the weights ({source})",
            PreprocessOverrideWarning,
            stacklevel=3,
        )
    height, width = values["input_size"]
    crop_pct = values["crop_pct"]
    # timm's transforms_imagenet_eval: scale_size = floor(size / crop_pct) per side; a square
    # scale in center mode becomes torchvision's shorter-side Resize(int).
    scale_size = (math.floor(height / crop_pct), math.floor(width / crop_pct))
    resize: int | tuple[int, int] = scale_size
    if values["crop_mode"] == "center" and scale_size[0] == scale_size[1]:
        resize = scale_size[0]
    geometry = {"input_size", "crop_pct", "crop_mode"}
    if base_resize is not None and not geometry & set(changed):
        resize = base_resize
    return Preprocess(
        input_size=(height, width),
        resize=resize,
        crop_pct=float(crop_pct),
        crop_mode=values["crop_mode"],
        interpolation=values["interpolation"],
        scale=values["scale"],
        mean=values["mean"],
        std=values["std"],
        channel_order=values["channel_order"],
        source=source,
        overrides=tuple(dict.fromkeys([*previous, *changed])),
        decode=decode,
    )


def _normalise_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate the user's overrides and expand ``keras`` into the fields it sets."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDE_KEYS))
    if unknown:
        raise DataError(
            f"Unknown preprocessing override {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(OVERRIDE_KEYS)}."
        )
    keras = given.pop("keras", None)
    if keras is not None:
        if keras not in KERAS_MODES:
            raise DataError(
                f"keras mode must be one of {', '.join(KERAS_MODES)}, got {keras!r}; "
                "pick the mode of the Keras application the weights come from."
            )
        clash = sorted(set(given) & set(KERAS_MODE_VALUES[keras]))
        if clash:
            raise DataError(
                f"keras={keras!r} sets scale, mean, std and channel order itself; it cannot be "
                f"combined with {', '.join(clash)}. Give either the keras mode or the values."
            )
        given.update(KERAS_MODE_VALUES[keras])
    resize = given.pop("resize", None)
    if resize is not None:
        if resize not in RESIZE_MODES:
            raise DataError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}; 'squash' "
                "resizes the whole image as Keras' load_img(target_size=...) does."
            )
        if resize == "squash":
            clash = sorted(set(given) & set(_SQUASH))
            if clash:
                raise DataError(
                    f"resize='squash' sets crop_mode and crop_pct itself; it cannot be combined "
                    f"with {', '.join(clash)}. Give either --resize squash or --crop-pct."
                )
            given.update(_SQUASH)

    def fail(message: str) -> None:
        raise DataError(f"Invalid preprocessing override: {message}")

    return _normalise_fields(given, fail, partial=True)


def _differs(old: Any, new: Any) -> bool:
    if isinstance(old, tuple) and isinstance(new, tuple):
        return len(old) != len(new) or any(
            not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
            for a, b in zip(old, new, strict=True)
        )
    if isinstance(old, (int, float, Fraction)) and isinstance(new, (int, float, Fraction)):
        return not math.isclose(float(old), float(new), rel_tol=1e-9, abs_tol=1e-12)
    return bool(old != new)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, (float, Fraction)):
        return f"{float(value):.6g}"
    return repr(value) if isinstance(value, str) else str(value)


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


# ---------------------------------------------------------------------- validation
Fail = Callable[[str], None]


def _fail_invalid(message: str) -> None:
    raise DataError(f"Invalid preprocessing: {message}")


def _normalise_fields(
    values: dict[str, Any], fail: Fail, *, partial: bool = False
) -> dict[str, Any]:
    """Check and canonicalise preprocessing values; ``fail`` raises the caller's error."""
    out = dict(values)
    for key, value in values.items():
        if key == "input_size":
            out[key] = _size(value, key, fail)
        elif key == "resize":
            if isinstance(value, int) and not isinstance(value, bool):
                if not 1 <= value <= _MAX_SIDE:
                    fail(f"resize must be 1..{_MAX_SIDE}, got {value!r}.")
                out[key] = value
            else:
                out[key] = _size(value, key, fail, allow_int=False)
        elif key == "crop_pct":
            if isinstance(value, Fraction) and partial and 0 < value <= 4:
                out[key] = value  # torchvision's exact crop/resize ratio
            else:
                out[key] = _number(value, key, fail, low=0.0, high=4.0)
        elif key == "crop_mode":
            out[key] = _choice(value, key, CROP_MODES, fail)
        elif key == "interpolation":
            out[key] = _choice(value, key, INTERPOLATIONS, fail)
        elif key in ("mean", "std"):
            out[key] = _triple(value, key, fail, positive=key == "std")
        elif key == "scale":
            out[key] = _number(value, key, fail, low=0.0, high=1.0)
        elif key == "channel_order":
            out[key] = _choice(value, key, ("RGB", "BGR"), fail)
        elif key == "decode":
            out[key] = _choice(value, key, DECODE_MODES, fail)
        elif key == "source":
            if not isinstance(value, str):
                fail(f"source must be a string, got {value!r}.")
        elif key == "overrides":
            if isinstance(value, str) or not isinstance(value, Sequence):
                fail(f"overrides must be a list of names, got {value!r}.")
            names = tuple(value)
            if not all(isinstance(n, str) for n in names):
                fail(f"overrides must be a list of names, got {value!r}.")
            out[key] = names
    if not partial:
        mode, resize = out.get("crop_mode"), out.get("resize")
        if mode in ("squash", "border") and isinstance(resize, int):
            fail(f"crop_mode {mode!r} needs resize as (height, width), got {resize!r}.")
    return out


def _size(value: Any, key: str, fail: Fail, *, allow_int: bool = True) -> tuple[int, int]:
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3:
        if value[0] != 3:  # timm's (channels, height, width)
            fail(f"{key} {tuple(value)!r} has {value[0]} channels; headstart feeds RGB (3).")
        value = tuple(value[1:])
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and all(1 <= v <= _MAX_SIDE for v in value)
    ):
        return (int(value[0]), int(value[1]))
    shape = "an int or (height, width)" if allow_int else "(height, width)"
    fail(f"{key} must be {shape} with sides 1..{_MAX_SIDE}, got {value!r}.")
    raise AssertionError  # unreachable: fail raises


def _number(value: Any, key: str, fail: Fail, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"{key} must be a number, got {value!r}.")
    number = float(value)
    if not (math.isfinite(number) and low < number <= high):
        fail(f"{key} must be in ({low:g}, {high:g}], got {value!r}.")
    return number


def _triple(value: Any, key: str, fail: Fail, *, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]  # one value for every channel
    if isinstance(value, str) or not isinstance(value, Sequence):
        fail(f"{key} must be 3 numbers (one per channel), got {value!r}.")
    items = list(value)
    if len(items) == 1:  # one value for every channel, as timm accepts
        items = items * 3
    if len(items) != 3 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items
    ):
        fail(f"{key} must be 3 finite numbers (one per channel), got {value!r}.")
    if positive and not all(v > 0 for v in items):
        fail(f"{key} must be > 0 for every channel, got {value!r}.")
    return (float(items[0]), float(items[1]), float(items[2]))


def _choice(value: Any, key: str, allowed: Sequence[str], fail: Fail) -> Any:
    if value not in allowed:
        fail(f"{key} must be one of {', '.join(allowed)}, got {value!r}.")
    return value
