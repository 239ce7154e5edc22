"""Procedurally generated images: the pretraining data of the embedded backbone, and the demo data.

headstart must show transfer learning working on a machine with no internet, so it cannot rely on
downloaded weights or datasets. This module draws labelled images from a small visual world
(shapes x textures on cluttered backgrounds) with numpy and Pillow only, so that it can be
imported without torch and runs fast on a CPU.

The world serves two tasks that must not overlap:

* the *source* task (:data:`SOURCE_CLASSES`), on which ``scripts/train_embedded_backbone.py``
  pretrains the embedded ``headstart-tiny`` backbone;
* the *demo* task (:data:`DEMO_CLASSES`), written to disk by :func:`make_demo_dataset`. Its classes
  are shape x texture combinations the backbone never saw as classes, so a classifier built on
  them is real transfer learning: the backbone knows hexagons and stripes, not striped hexagons.

Every image comes from its own ``numpy.random.Generator``, seeded from integers only (never
Python's ``hash()``, which changes between processes), so the same seed gives the same pixels on
every run and the images do not depend on the order they are generated in.
"""

from __future__ import annotations

import colorsys
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from headstart.errors import DataError

__all__ = [
    "DEMO_CLASSES",
    "SHAPES",
    "SOURCE_CLASSES",
    "TEXTURES",
    "class_name",
    "make_demo_dataset",
    "make_image",
    "make_source_batch",
]

SHAPES: Final[tuple[str, ...]] = (
    "circle",
    "ellipse",
    "square",
    "triangle",
    "pentagon",
    "hexagon",
    "diamond",
    "star",
    "cross",
    "ring",
    "heart",
    "arrow",
)
"""Object outlines. Position, size, rotation and colour vary per image; the outline is the class."""

TEXTURES: Final[tuple[str, ...]] = (
    "solid",
    "striped",
    "checkered",
    "dotted",
    "speckled",
    "gradient",
    "wavy",
    "grid",
)
"""Object fills. Period, angle and colours vary per image; the kind of pattern is the class."""

DEMO_CLASSES: Final[tuple[tuple[str, str], ...]] = (
    ("hexagon", "striped"),
    ("pentagon", "striped"),
    ("star", "striped"),
    ("cross", "striped"),
    ("hexagon", "dotted"),
    ("pentagon", "dotted"),
    ("star", "dotted"),
    ("cross", "dotted"),
)
"""(shape, texture) pairs of the demo task.

Chosen so that texture alone separates only two groups of four: telling a striped hexagon from a
striped pentagon needs shape features, which random weights do not have and pretraining gives.
"""


def _source_classes() -> tuple[tuple[str, str], ...]:
    # A diagonal pattern over the shape x texture grid: every shape appears with two or three
    # textures and every texture with two to four shapes, so the backbone must learn both
    # factors; the pairs of DEMO_CLASSES are removed so that no demo class is a source class.
    pairs = [
        (shape, texture)
        for i, shape in enumerate(SHAPES)
        for j, texture in enumerate(TEXTURES)
        if (i + j) % 3 == 0 and (shape, texture) not in DEMO_CLASSES
    ]
    return tuple(pairs)


SOURCE_CLASSES: Final[tuple[tuple[str, str], ...]] = _source_classes()
"""(shape, texture) pairs of the pretraining task; disjoint from :data:`DEMO_CLASSES`."""

_DEMO_FORMAT_VERSION: Final = 1
_MANIFEST_NAME: Final = "headstart-demo.json"
_SPLITS: Final = ("train", "val", "test")


def class_name(shape: str, texture: str) -> str:
    """Name a (shape, texture) class the way a person would, e.g. ``"striped_hexagon"``.

    Args:
        shape: One of :data:`SHAPES`.
        texture: One of :data:`TEXTURES`.

    Returns:
        ``"<texture>_<shape>"``; the name doubles as the class folder name of the demo data.
    """
    return f"{texture}_{shape}"


# --------------------------------------------------------------------------------------------
# Outlines: unit polygons (radius about 1), as (points, fill) pairs; fill 0 cuts a hole.


def _regular(n: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _star() -> np.ndarray:
    outer = _regular(5, 1.0)
    inner = _regular(5, 0.42, phase=-np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _cross(w: float = 0.32) -> np.ndarray:
    return np.array(
        [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w)]
        + [(-1, -w), (-w, -w)],
        dtype=np.float64,
    )


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 16.5


_ARROW: Final = np.array(
    [(-1, -0.25), (0.15, -0.25), (0.15, -0.65), (1, 0), (0.15, 0.65), (0.15, 0.25), (-1, 0.25)]
)

_OUTLINES: Final[dict[str, list[tuple[np.ndarray, int]]]] = {
    "circle": [(_regular(48), 255)],
    "ellipse": [(_regular(48) * np.array([1.0, 0.55]), 255)],
    "square": [(_regular(4, np.sqrt(2) * 0.8, phase=np.pi / 4), 255)],
    "triangle": [(_regular(3, 1.05), 255)],
    "pentagon": [(_regular(5), 255)],
    "hexagon": [(_regular(6), 255)],
    "diamond": [(np.array([(0, -1), (0.62, 0), (0, 1), (-0.62, 0)], dtype=np.float64), 255)],
    "star": [(_star(), 255)],
    "cross": [(_cross(), 255)],
    "ring": [(_regular(48), 255), (_regular(48, 0.55), 0)],
    "heart": [(_heart(), 255)],
    "arrow": [(_ARROW, 255)],
}


_EXTENT: Final[dict[str, float]] = {
    shape: max(float(np.hypot(p[:, 0], p[:, 1]).max()) for p, _ in parts)
    for shape, parts in _OUTLINES.items()
}
"""Largest distance from the centre of each unit outline: bounds the pixels an object covers."""


def _shape_mask(
    shape: str, size: int, cx: float, cy: float, radius: float, angle: float
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], drawn at twice the size and box-filtered down."""
    ss = 2
    mask = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(mask)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for points, fill in _OUTLINES[shape]:
        xy = (points @ rot.T * radius + (cx, cy)) * ss
        draw.polygon([(float(x), float(y)) for x, y in xy], fill=fill)
    small = mask.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# --------------------------------------------------------------------------------------------
# Textures: a pattern in [0, 1] over object-local coordinates (u, v), mixing two colours.


def _soft(x: np.ndarray) -> np.ndarray:
    # A steep but smooth step keeps edges of stripes and dots free of jaggies.
    return np.clip(x * 2.5 + 0.5, 0.0, 1.0)


def _tex_solid(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.zeros_like(u)


def _tex_striped(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(7.0, 12.0)
    return _soft(np.sin(2 * np.pi * u / period))


def _tex_checkered(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(10.0, 16.0)
    return _soft(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) * 2)


def _tex_dotted(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(8.0, 12.0)
    du = np.mod(u, period) - period / 2
    dv = np.mod(v, period) - period / 2
    return _soft((period * 0.3 - np.sqrt(du * du + dv * dv)) / 2)


def _tex_speckled(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = u.shape
    step = int(rng.integers(3, 6))
    coarse_hw = (max(2, h // step), max(2, w // step))
    coarse = Image.fromarray((rng.random(coarse_hw) * 255).astype(np.uint8))
    fine = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255
    return _soft((fine - 0.5) * 3)


def _tex_gradient(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    extent = float(np.abs(u).max()) * rng.uniform(0.35, 0.6) + 1e-6
    return np.clip(u / (2 * extent) + 0.5, 0.0, 1.0)


def _tex_wavy(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(8.0, 12.0)
    amp = rng.uniform(2.5, 4.5)
    wavelength = rng.uniform(14.0, 22.0)
    return _soft(np.sin(2 * np.pi * (u + amp * np.sin(2 * np.pi * v / wavelength)) / period))


def _tex_grid(u: np.ndarray, v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    period = rng.uniform(9.0, 14.0)
    width = rng.uniform(1.8, 2.8)
    du = np.abs(np.mod(u, period) - period / 2)
    dv = np.abs(np.mod(v, period) - period / 2)
    return _soft((np.maximum(du, dv) - (period / 2 - width)) / 1.5)


_TEXTURE_FNS: Final[
    dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]]
] = {
    "solid": _tex_solid,
    "striped": _tex_striped,
    "checkered": _tex_checkered,
    "dotted": _tex_dotted,
    "speckled": _tex_speckled,
    "gradient": _tex_gradient,
    "wavy": _tex_wavy,
    "grid": _tex_grid,
}


# --------------------------------------------------------------------------------------------
# Colours, backgrounds, composition.


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _object_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Two colours far enough apart in hue or brightness that the pattern stays visible.
    h = rng.random()
    c1 = _hsv(h, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0))
    if rng.random() < 0.5:
        c2 = _hsv(h + rng.uniform(0.3, 0.7), rng.uniform(0.45, 1.0), rng.uniform(0.5, 1.0))
    else:
        c2 = _hsv(h + rng.uniform(-0.08, 0.08), rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.3))
    return c1, c2


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dark = rng.random() < 0.5
    value = (0.05, 0.4) if dark else (0.6, 0.95)

    def colour() -> np.ndarray:
        return _hsv(rng.random(), rng.uniform(0.0, 0.45), rng.uniform(*value))

    kind = rng.integers(3)
    if kind == 0:  # plain
        return np.broadcast_to(colour(), (size, size, 3)).copy()
    if kind == 1:  # linear gradient between two colours
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy) / size + 0.5
        t = np.clip(t, 0.0, 1.0)[..., None]
        return (1 - t) * colour() + t * colour()
    # smooth noise: a coarse random field, upsampled
    cells = int(rng.integers(3, 9))
    coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255
    t = field[..., None]
    return (1 - t) * colour() + t * colour()


def _paint(
    canvas: np.ndarray,
    rng: np.random.Generator,
    shape: str,
    texture: str,
    cx: float,
    cy: float,
    radius: float,
    yy: np.ndarray,
    xx: np.ndarray,
) -> None:
    size = canvas.shape[0]
    angle = rng.uniform(0, 2 * np.pi)
    mask = _shape_mask(shape, size, cx, cy, radius, angle)
    # Only the object's bounding box is textured and blended: most of the cost otherwise.
    reach = radius * _EXTENT[shape]
    lo_x, hi_x = max(0, int(cx - reach) - 2), min(size, int(cx + reach) + 3)
    lo_y, hi_y = max(0, int(cy - reach) - 2), min(size, int(cy + reach) + 3)
    if lo_x >= hi_x or lo_y >= hi_y:
        return
    box = (slice(lo_y, hi_y), slice(lo_x, hi_x))
    dx, dy = xx[box] - cx, yy[box] - cy
    # The texture is laid out in the object's own rotated frame, so it turns with the object.
    tex_angle = angle + rng.uniform(0, np.pi)
    u = np.cos(tex_angle) * dx + np.sin(tex_angle) * dy
    v = -np.sin(tex_angle) * dx + np.cos(tex_angle) * dy
    pattern = _TEXTURE_FNS[texture](u, v, rng)[..., None]
    c1, c2 = _object_colours(rng)
    m = mask[box][..., None]
    region = canvas[box]
    region += m * ((1 - pattern) * c1 + pattern * c2 - region)


def make_image(rng: np.random.Generator, shape: str, texture: str, size: int = 128) -> np.ndarray:
    """Draw one image of a (shape, texture) object on a cluttered background.

    Everything but the class varies: position, size, rotation, colours, the texture's period and
    angle, the background (plain, gradient or noise), small distractor shapes behind the object,
    thin lines, blur and sensor-like noise. That nuisance variation is what makes the features
    learned on it useful, and what makes the demo task hard for features that were not learned.

    Args:
        rng: The only source of randomness; the image is a pure function of its state.
        shape: One of :data:`SHAPES`.
        texture: One of :data:`TEXTURES`.
        size: Side of the square image in pixels. Periods are in pixels, so sizes far from 128
            change how textures look.

    Returns:
        ``uint8`` array of shape ``[size, size, 3]`` (RGB).

    Raises:
        ValueError: Unknown shape or texture, or ``size`` below 16.
    """
    if shape not in _OUTLINES:
        raise ValueError(f"Unknown shape {shape!r}; expected one of {', '.join(SHAPES)}.")
    if texture not in _TEXTURE_FNS:
        raise ValueError(f"Unknown texture {texture!r}; expected one of {', '.join(TEXTURES)}.")
    if size < 16:
        raise ValueError(f"Image size must be at least 16 pixels, got {size}.")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    canvas = _background(rng, size, yy, xx).astype(np.float32)

    for _ in range(int(rng.integers(0, 4))):  # distractors, behind the object
        d_shape = SHAPES[int(rng.integers(len(SHAPES)))]
        d_radius = size * rng.uniform(0.05, 0.11)
        dx, dy = rng.uniform(0.08, 0.92, size=2) * size
        _paint(canvas, rng, d_shape, "solid", dx, dy, d_radius, yy, xx)

    radius = size * rng.uniform(0.2, 0.34)
    cx, cy = size * rng.uniform(0.5 - 0.18, 0.5 + 0.18, size=2)
    _paint(canvas, rng, shape, texture, cx, cy, radius, yy, xx)

    image = Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8))
    n_lines = int(rng.integers(0, 3))
    if n_lines:
        draw = ImageDraw.Draw(image)
        for _ in range(n_lines):
            x0, y0, x1, y1 = (rng.uniform(0, size, size=4)).tolist()
            rgb = tuple(int(c) for c in rng.integers(0, 256, size=3))
            draw.line([(x0, y0), (x1, y1)], fill=rgb, width=int(rng.integers(1, 3)))
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.9))))
    out = np.asarray(image, dtype=np.float32)
    out += rng.normal(0.0, rng.uniform(0.0, 5.0), size=out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_source_batch(
    seed: int, indices: Sequence[int], class_ids: Sequence[int], size: int = 128
) -> np.ndarray:
    """Draw pretraining images of :data:`SOURCE_CLASSES`.

    Image ``k`` is drawn from ``default_rng([seed, indices[k], class_ids[k]])``, so any subset of
    a dataset can be regenerated on its own, in any order, and a training set and a validation set
    made with different seeds never share an image.

    Args:
        seed: Seed of the whole set (e.g. one for training, another for validation).
        indices: Index of each image within its set.
        class_ids: Index into :data:`SOURCE_CLASSES` of each image.
        size: Side of the square images in pixels.

    Returns:
        ``uint8`` array ``[N, size, size, 3]``.

    Raises:
        ValueError: ``indices`` and ``class_ids`` differ in length, or a class id is out of range.
    """
    if len(indices) != len(class_ids):
        raise ValueError(
            f"indices and class_ids must have the same length, got {len(indices)} and "
            f"{len(class_ids)}."
        )
    out = np.empty((len(class_ids), size, size, 3), dtype=np.uint8)
    for k, (index, cid) in enumerate(zip(indices, class_ids, strict=True)):
        if not 0 <= cid < len(SOURCE_CLASSES):
            raise ValueError(f"Class id {cid} out of range 0..{len(SOURCE_CLASSES) - 1}.")
        shape, texture = SOURCE_CLASSES[cid]
        rng = np.random.default_rng([seed, int(index), int(cid)])
        out[k] = make_image(rng, shape, texture, size)
    return out


# --------------------------------------------------------------------------------------------
# The demo dataset on disk.


def _demo_manifest(seed: int, n_per_class: tuple[int, int, int], size: int) -> dict[str, Any]:
    return {
        "format": "headstart-synthetic-demo",
        "version": _DEMO_FORMAT_VERSION,
        "seed": seed,
        "size": size,
        "n_per_class": dict(zip(_SPLITS, n_per_class, strict=True)),
        "classes": [class_name(s, t) for s, t in DEMO_CLASSES],
        "jpeg_quality": 90,
    }


def _is_complete(out: Path, manifest: dict[str, Any]) -> bool:
    path = out / _MANIFEST_NAME
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if written != manifest:
        return False
    for split, n in manifest["n_per_class"].items():
        for name in manifest["classes"]:
            folder = out / split / name
            if not all((folder / f"{name}_{i:04d}.jpg").is_file() for i in range(n)):
                return False
    return True


def make_demo_dataset(
    out: Path,
    *,
    seed: int = 0,
    n_per_class: tuple[int, int, int] = (60, 20, 40),
    size: int = 128,
) -> Path:
    """Write the demo dataset as JPEG folders: ``out/{train,val,test}/<class>/*.jpg``.

    The classes (:data:`DEMO_CLASSES`, e.g. ``striped_hexagon``) were never classes of the
    embedded backbone's pretraining, so the demo measures transfer rather than recall. The layout
    is the one users already have, so the demo exercises the same code as real data; JPEG at
    quality 90 adds the compression artefacts real photos carry.

    A manifest (``headstart-demo.json``) written last records the parameters. When it matches and
    every file is present, nothing is written, so calling this before every demo costs nothing.

    Args:
        out: Folder to write into; created when missing.
        seed: Seed of the whole dataset; each image's generator is seeded from (seed, split,
            class, index), so changing one count leaves the other images as they were.
        n_per_class: Images per class in train, val and test.
        size: Side of the square images in pixels.

    Returns:
        ``out``, for chaining.

    Raises:
        DataError: ``out`` exists and holds files but no demo manifest; headstart refuses to mix
            its images into, or delete, a folder it did not write.
        ValueError: A count is negative or ``size`` is below 16.
    """
    out = Path(out)
    counts = tuple(int(n) for n in n_per_class)
    if len(counts) != 3 or min(counts) < 0:
        raise ValueError(
            f"n_per_class must be three non-negative counts (train, val, test), got {n_per_class}."
        )
    if size < 16:
        raise ValueError(f"Image size must be at least 16 pixels, got {size}.")
    manifest = _demo_manifest(seed, (counts[0], counts[1], counts[2]), size)
    if _is_complete(out, manifest):
        return out

    if out.exists():
        ours = (out / _MANIFEST_NAME).is_file()
        if not ours and any(out.iterdir()):
            raise DataError(
                f"{out} is not empty and was not written by make_demo_dataset; "
                "pass an empty or missing folder."
            )
        (out / _MANIFEST_NAME).unlink(missing_ok=True)
        for split in _SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)

    for split_id, (split, n) in enumerate(zip(_SPLITS, counts, strict=True)):
        for class_id, (shape, texture) in enumerate(DEMO_CLASSES):
            name = class_name(shape, texture)
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                # SeedSequence pads with zeros, so [s, a, b] and [s, a, b, 0] are the same seed:
                # the 1000 offset, not the length, keeps demo images apart from source images.
                rng = np.random.default_rng([1000 + seed, split_id, class_id, i])
                pixels = make_image(rng, shape, texture, size)
                Image.fromarray(pixels).save(folder / f"{name}_{i:04d}.jpg", quality=90)
    tmp = out / (_MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / _MANIFEST_NAME)
    return out
