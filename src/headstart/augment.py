"""Training-time image augmentation: Keras' familiar controls plus RandAugment and TrivialAugment.

Augmentation works on the decoded PIL image *before* the weights' own resize, crop and
normalisation (:meth:`headstart.preprocess.Preprocess.transform`), so an augmented view differs
from the plain one by the augmentation only, never by the preprocessing the weights expect.
Evaluation never augments: only training code builds an :class:`Augmenter`.

Every random choice is drawn from generators seeded by a key such as (seed, epoch, sample index)
(:func:`sample_seed`, :func:`seeded`), never from a stream that runs across samples. An image's
augmentation then depends neither on how many worker processes decode, nor on the order they
finish in, and a resumed run replays exactly the augmentations of an uninterrupted one. The
augmented views that ``--aug-views`` caches are keyed by (seed, view, image digest) the same way,
so a cached view stays valid across runs.

The controls (rotation, width/height shift, shear, zoom, flips, brightness) mean what they mean
in Keras' ``ImageDataGenerator``; uncovered corners are filled by reflecting the image, as a photo
seen slightly rotated still shows plausible content rather than black wedges.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from headstart.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from headstart.preprocess import Preprocess

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentConfig",
    "AugmentedView",
    "Augmenter",
    "resolve_augment",
    "sample_seed",
    "seeded",
]

AutoAugment = Literal["none", "randaugment", "trivialaugment"]
FillMode = Literal["reflect", "nearest", "constant"]

AUGMENT_PRESETS: tuple[str, ...] = (
    "none",
    "light",
    "default",
    "strong",
    "randaugment",
    "trivialaugment",
)
_AUTO = ("none", "randaugment", "trivialaugment")
_FILLS = ("reflect", "nearest", "constant")
# Bump when the same config would produce different pixels: cached augmented views then miss.
_AUGMENT_FORMAT = 1


@dataclass(frozen=True)
class AugmentConfig:
    """What augmentation a training image gets; JSON-able and fingerprinted.

    Attributes:
        rotation: Degrees; a uniform angle in [-rotation, rotation] (Keras ``rotation_range``).
        width_shift: Fraction of the width; a uniform shift in [-w, w] (``width_shift_range``).
        height_shift: Fraction of the height (``height_shift_range``).
        shear: Degrees of shear, uniform in [-shear, shear] (``shear_range``).
        zoom: The image is scaled by a factor uniform in [1 - zoom, 1 + zoom] (``zoom_range``);
            above 1 magnifies (a tighter crop), below 1 shows more context.
        hflip: Mirror left-right with probability 1/2. On by default in presets, because most
            photographed classes look the same mirrored; turn it off for text, digits, arrows.
        vflip: Flip upside down with probability 1/2. Off in presets: few photos are
            orientation-free (aerial and microscope images are).
        brightness: Multiply brightness by a factor uniform in [1 - b, 1 + b].
        auto: After the above, timm's RandAugment (``"randaugment"``) or torchvision's
            TrivialAugmentWide (``"trivialaugment"``): policies that need no tuning.
        magnitude: RandAugment magnitude (0-30, timm's ``rand-mN``).
        fill: How uncovered corners are filled: "reflect" (default), "nearest" (Keras' default)
            or "constant" (black).
        preset: The preset these values started from, for the record; not part of the
            fingerprint, since two configs with the same values augment identically.
    """

    rotation: float = 0.0
    width_shift: float = 0.0
    height_shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    hflip: bool = False
    vflip: bool = False
    brightness: float = 0.0
    auto: AutoAugment = "none"
    magnitude: int = 9
    fill: FillMode = "reflect"
    preset: str = "none"

    def __post_init__(self) -> None:
        limits = {
            "rotation": (0.0, 180.0),
            "width_shift": (0.0, 1.0),
            "height_shift": (0.0, 1.0),
            "shear": (0.0, 80.0),
            "zoom": (0.0, 0.9),
            "brightness": (0.0, 1.0),
            "magnitude": (0, 30),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidParameterError(f"Augmentation {name} must be a number, got {value!r}.")
            if not low <= value <= high or (isinstance(value, float) and math.isnan(value)):
                raise InvalidParameterError(
                    f"Augmentation {name}={value!r} is out of range; use {low:g} to {high:g}."
                )
        if self.auto not in _AUTO:
            raise InvalidParameterError(
                f"Unknown automatic augmentation {self.auto!r}; choose one of {', '.join(_AUTO)}."
            )
        if self.fill not in _FILLS:
            raise InvalidParameterError(
                f"Unknown fill {self.fill!r}; choose one of {', '.join(_FILLS)}."
            )
        for name in ("hflip", "vflip"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(f"Augmentation {name} must be true or false.")
        object.__setattr__(self, "magnitude", int(self.magnitude))
        for name in ("rotation", "width_shift", "height_shift", "shear", "zoom", "brightness"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def is_identity(self) -> bool:
        """True when no image is ever changed (the ``none`` preset)."""
        defaults = AugmentConfig()
        return all(
            getattr(self, f.name) == getattr(defaults, f.name)
            for f in fields(self)
            if f.name not in ("preset", "fill", "magnitude")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AugmentConfig:
        """Rebuild a recorded config; unknown keys are an error, not ignored."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InvalidParameterError(
                f"Unknown augmentation keys {unknown}; known: {', '.join(sorted(names))}."
            )
        return cls(**dict(d))

    def fingerprint(self) -> str:
        """sha256 of the values that decide the pixels (cache namespaces of augmented views)."""
        values = {k: v for k, v in self.to_dict().items() if k != "preset"}
        values["format"] = _AUGMENT_FORMAT
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def describe(self) -> str:
        """One line for logs: the non-default controls."""
        if self.is_identity:
            return "none"
        parts = [
            f"{f.name}={getattr(self, f.name)}"
            for f in fields(self)
            if f.name not in ("preset", "fill", "magnitude")
            and getattr(self, f.name) != getattr(AugmentConfig(), f.name)
        ]
        if self.auto == "randaugment":
            parts.append(f"magnitude={self.magnitude}")
        return f"{self.preset}: " + ", ".join(parts)


_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(preset="none"),
    # Small changes that keep every object recognisable and centred.
    "light": AugmentConfig(
        rotation=10, width_shift=0.05, height_shift=0.05, zoom=0.1, hflip=True, preset="light"
    ),
    # The usual transfer-learning recipe: flips, a little rotation, shift, zoom and lighting.
    "default": AugmentConfig(
        rotation=15,
        width_shift=0.1,
        height_shift=0.1,
        zoom=0.15,
        hflip=True,
        brightness=0.2,
        preset="default",
    ),
    # Chollet's cats-vs-dogs ImageDataGenerator settings (rotation 40, shifts 0.2, shear, zoom).
    "strong": AugmentConfig(
        rotation=40,
        width_shift=0.2,
        height_shift=0.2,
        shear=10,
        zoom=0.2,
        hflip=True,
        brightness=0.3,
        preset="strong",
    ),
    "randaugment": AugmentConfig(hflip=True, auto="randaugment", magnitude=9, preset="randaugment"),
    "trivialaugment": AugmentConfig(hflip=True, auto="trivialaugment", preset="trivialaugment"),
}


def resolve_augment(
    preset: str | Mapping[str, Any] | AugmentConfig | None = "default", **params: Any
) -> AugmentConfig:
    """An :class:`AugmentConfig` from a preset name, explicit values overriding it.

    Args:
        preset: One of :data:`AUGMENT_PRESETS`, a dict of values (a recorded config, or values
            starting from ``none``), or a config as is. None means ``none``.
        params: Any :class:`AugmentConfig` field; a None value means "not given", so CLI flags
            pass through unchanged. A config with explicit values records preset "custom".

    Raises:
        HeadstartError: An unknown preset or key, or a value out of range.
    """
    if isinstance(preset, AugmentConfig):
        base = preset
    elif isinstance(preset, Mapping):
        base = AugmentConfig.from_dict({"preset": "custom", **preset})
    else:
        name = "none" if preset is None else str(preset).strip().lower()
        if name not in _PRESETS:
            raise InvalidParameterError(
                f"Unknown augmentation preset {preset!r}; choose one of "
                f"{', '.join(AUGMENT_PRESETS)}, or give explicit values (--rotation 15 ...)."
            )
        base = _PRESETS[name]
    given = {k: v for k, v in params.items() if v is not None}
    known = {f.name for f in fields(AugmentConfig)} - {"preset"}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidParameterError(
            f"Unknown augmentation parameters {unknown}; known: {sorted(known)}."
        )
    if not given:
        return base
    changed = replace(base, **given)
    if changed == base:
        return base
    label = "custom" if base.preset in ("none", "custom") else f"{base.preset}+custom"
    return replace(changed, preset=label)


# ------------------------------------------------------------------------- randomness
def sample_seed(*parts: object) -> int:
    """A 63-bit seed from a key such as ("train", seed, epoch, index): stable across runs."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# The global generators are shared by every thread of the process; this lock makes each seeded
# block own them while it runs, so images augmented in decoding threads stay deterministic.
_GLOBAL_GENERATORS = threading.RLock()


def _new_lock_after_fork() -> None:
    # A child forked while a decoding thread held the lock would otherwise never get it.
    global _GLOBAL_GENERATORS
    _GLOBAL_GENERATORS = threading.RLock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators for one block, then restore them.

    Third-party augmentations (timm's RandAugment draws from ``random`` and ``numpy.random``,
    torchvision's from torch) only take the global generators, so each sample seeds them from
    its own key; restoring them afterwards leaves the caller's random streams untouched. The
    block holds a process-wide lock: keep it to the random draws and the work that uses them.
    """
    import torch

    with _GLOBAL_GENERATORS, torch.random.fork_rng(devices=[]):
        py_state = random.getstate()
        np_state = np.random.get_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# ------------------------------------------------------------------------- applying
class Augmenter:
    """PIL image -> augmented PIL image, drawing from the global generators (see :func:`seeded`).

    Picklable, so DataLoader workers can use it. Call it inside ``seeded(key)``, or use
    :meth:`apply`, which does.
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self._auto: Callable[[Image.Image], Image.Image] | None = _auto_transform(config)

    def apply(self, img: Image.Image, seed: int) -> Image.Image:
        """The augmentation of ``img`` for ``seed``: the same seed gives the same pixels."""
        with seeded(seed):
            return self(img)

    def __call__(self, img: Image.Image) -> Image.Image:
        from PIL import ImageEnhance, ImageOps

        c = self.config
        if c.hflip and random.random() < 0.5:
            img = ImageOps.mirror(img)
        if c.vflip and random.random() < 0.5:
            img = ImageOps.flip(img)
        if c.rotation or c.width_shift or c.height_shift or c.shear or c.zoom:
            angle = random.uniform(-c.rotation, c.rotation)
            dx = random.uniform(-c.width_shift, c.width_shift) * img.width
            dy = random.uniform(-c.height_shift, c.height_shift) * img.height
            shear = random.uniform(-c.shear, c.shear)
            scale = random.uniform(1.0 - c.zoom, 1.0 + c.zoom)
            img = _affine(img, angle, (dx, dy), scale, shear, c.fill)
        if c.brightness:
            factor = random.uniform(1.0 - c.brightness, 1.0 + c.brightness)
            img = ImageEnhance.Brightness(img).enhance(factor)
        if self._auto is not None:
            img = self._auto(img)
        return img

    def __repr__(self) -> str:
        return f"Augmenter({self.config.describe()})"


def _auto_transform(config: AugmentConfig) -> Callable[[Image.Image], Image.Image] | None:
    if config.auto == "randaugment":
        from timm.data.auto_augment import rand_augment_transform

        # timm's ImageNet training recipe: magnitude noise 0.5, increasing severity, relative
        # translation (so the image size before the resize does not matter), mean-colour fill.
        hparams = {"img_mean": (124, 116, 104)}
        transform: Callable[[Image.Image], Image.Image] = rand_augment_transform(
            f"rand-m{config.magnitude}-mstd0.5-inc1", hparams
        )
        return transform
    if config.auto == "trivialaugment":
        from torchvision.transforms import TrivialAugmentWide

        return TrivialAugmentWide()
    return None


def _affine(
    img: Image.Image,
    angle: float,
    shift: tuple[float, float],
    scale: float,
    shear: float,
    fill: str,
) -> Image.Image:
    """Rotate, shift, zoom and shear about the centre; corners filled by ``fill``.

    PIL can only fill with a constant colour, so for "reflect"/"nearest" the image is padded with
    reflected (or repeated edge) pixels first, transformed, and cropped back to its size.
    """
    from PIL import Image as PILImage
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    width, height = img.size
    if fill == "constant":
        return TF.affine(
            img,
            angle=angle,
            translate=[int(round(shift[0])), int(round(shift[1]))],
            scale=scale,
            shear=[shear, 0.0],
            interpolation=InterpolationMode.BILINEAR,
            fill=0,
        )
    pad_x, pad_y = (width + 1) // 2, (height + 1) // 2
    pixels = np.asarray(img)
    widths = ((pad_y, pad_y), (pad_x, pad_x), (0, 0))
    if fill == "reflect":
        padded = np.pad(pixels, widths, mode="reflect")
    else:
        padded = np.pad(pixels, widths, mode="edge")
    big = TF.affine(
        PILImage.fromarray(padded),
        angle=angle,
        translate=[int(round(shift[0])), int(round(shift[1]))],
        scale=scale,
        shear=[shear, 0.0],
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    )
    return big.crop((pad_x, pad_y, pad_x + width, pad_y + height))


class AugmentedTransform:
    """(image, seed) -> the preprocessed tensor of its augmentation; picklable for workers.

    Safe to call from several threads: only the augmentation itself runs under :func:`seeded`'s
    lock, while decoding, resizing and normalising run in parallel.
    """

    thread_safe = True

    def __init__(self, preprocess: Preprocess, config: AugmentConfig) -> None:
        self.augmenter = Augmenter(config)
        self.preprocess = preprocess

    def __call__(self, img: Image.Image, seed: int) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")  # as Preprocess.transform does before augmenting
        with seeded(seed):
            augmented = self.augmenter(img)
        return self.preprocess(augmented)


@dataclass(frozen=True)
class AugmentedView:
    """The ``index``-th cached augmented view of every training image (``--aug-views``).

    A view is deterministic given (seed, view index, image digest), so its features can be cached
    like plain features and stay valid across runs; :attr:`name` goes into the cache namespace.
    """

    config: AugmentConfig
    seed: int
    index: int

    @property
    def name(self) -> str:
        return f"augment:{self.config.fingerprint()}:seed={self.seed}:view={self.index}"

    def transform(self, preprocess: Preprocess) -> Callable[[Image.Image, str], torch.Tensor]:
        return _ViewTransform(AugmentedTransform(preprocess, self.config), self.seed, self.index)


class _ViewTransform:
    thread_safe = True  # as AugmentedTransform

    def __init__(self, inner: AugmentedTransform, seed: int, index: int) -> None:
        self.inner = inner
        self.seed = seed
        self.index = index

    def __call__(self, img: Image.Image, digest: str) -> torch.Tensor:
        return self.inner(img, sample_seed("view", self.seed, self.index, digest))
