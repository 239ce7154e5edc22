"""One pass over every image: content hash, full decode, header facts and perceptual hash.

Each file is read once for its SHA-256 and decoded once through :func:`headstart.data.load_image`,
the decoder training uses, so "truncated" here means exactly what would fail during a run. JPEGs
decode at a reduced (DCT-scaled) size: every byte of the compressed data is still read and
checked, at a fraction of the cost, and a 32 px thumbnail is all the hashes need.

Why our own perceptual hash rather than ``imagehash``: it is twenty lines of NumPy (a 32x32 DCT
done as two matrix products), it adds no dependency (``imagehash`` pulls in SciPy and PyWavelets),
and the pair search needs the hashes as integers anyway.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.data import IMAGE_FORMATS, load_image, sniff_format
from headstart.errors import ImageDecodeError
from headstart.progress import Progress

__all__ = ["ImageFacts", "THUMB_SIDE", "inspect_image", "inspect_images"]

# JPEGs are draft-decoded no smaller than this; enough detail for a 32 px hash thumbnail.
_DRAFT = 64
_HASH_SIDE = 32
THUMB_SIDE = 8
"""Side of the colour thumbnail that confirms a near-duplicate (8x8x3 = 192 bytes per image)."""

# A grey image stored as RGB (or as a JPEG, whose chroma rounding adds a little colour) has mean
# |R-G| + |G-B| near 0; even a dull photo is well above 2 grey levels.
_GRAY_SPREAD = 2.0
# Below this standard deviation (grey levels) an image is blank: its DCT is rounding noise, so it
# gets hash 0 and blank images are compared by their thumbnails alone.
_FLAT_STD = 2.0
# A process pool (start-up, pickling every result back) only pays off beyond this many files.
_MIN_FILES_FOR_POOL = 2000

_k = np.arange(_HASH_SIDE)
_DCT = np.sqrt(2.0 / _HASH_SIDE) * np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / 64)
_DCT[0] /= np.sqrt(2.0)


@dataclass(frozen=True)
class ImageFacts:
    """What one pass over a file learned.

    Attributes:
        path: The file.
        sha256: Hex digest of its bytes, or None when it could not be read.
        problem: Why it cannot be used as an image (load_image's reason), or None.
        format: The format its content is in (whatever its name says), or None.
        width: Width in pixels as displayed (EXIF rotation applied); 0 when not decoded.
        height: Height in pixels as displayed; 0 when not decoded.
        mode: Colour mode stored in the file ("RGB", "L", "P", "CMYK", "I;16", ...).
        grayscale: The content has no colour, whatever the mode (a grey photo saved as RGB).
        phash: 64-bit DCT perceptual hash (0 for a blank image).
        thumb: ``THUMB_SIDE`` x ``THUMB_SIDE`` RGB thumbnail bytes.
    """

    path: Path
    sha256: str | None
    problem: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""
    grayscale: bool = False
    phash: int = 0
    thumb: bytes = b""

    @property
    def ok(self) -> bool:
        return self.problem is None


def phash(gray: np.ndarray) -> int:
    """The 64-bit perceptual hash of a 32x32 grey image (Zauner's pHash, as ``imagehash``).

    The 8x8 lowest DCT frequencies, each compared with their median: resizing, recompression and
    small edits barely move them, while different pictures differ in about half the bits.
    """
    coeffs = _DCT @ gray @ _DCT.T
    low = coeffs[:8, :8].ravel()
    bits = np.packbits(low > np.median(low))
    return int.from_bytes(bits.tobytes(), "big")


def _header(data: bytes) -> tuple[int, int, str]:
    """(width, height, mode) as stored, with width and height swapped for EXIF rotations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # already decoded once; any warning was seen there
        with Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS)) as img:
            width, height = img.size
            mode = img.mode
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:  # corrupt EXIF: load_image keeps the pixels as stored too
                orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, mode


def inspect_image(path: Path) -> ImageFacts:
    """Read, hash and decode one file; never raises for a bad file, says why in ``problem``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageFacts(path, None, f"cannot read file ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    fmt = sniff_format(data[:32])
    try:
        image = load_image(path, draft_size=(_DRAFT, _DRAFT))
    except ImageDecodeError as exc:
        return ImageFacts(path, digest, exc.reason, fmt)
    width, height, mode = _header(data)
    small = image.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    rgb = np.asarray(small, dtype=np.int16)
    spread = np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()
    gray = np.asarray(small.convert("L"), dtype=np.float64)
    return ImageFacts(
        path=path,
        sha256=digest,
        format=fmt,
        width=width,
        height=height,
        mode=mode,
        grayscale=bool(spread < _GRAY_SPREAD),
        phash=0 if gray.std() < _FLAT_STD else phash(gray),
        thumb=small.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes(),
    )


def inspect_images(
    paths: Sequence[Path],
    *,
    num_workers: int | None = None,
    quiet: bool = False,
    desc: str = "checking images",
) -> list[ImageFacts]:
    """:func:`inspect_image` over many files, in order, with progress.

    Args:
        paths: The files.
        num_workers: Processes to decode in. None: in this process below 2,000 files, else one
            per core but one (at most 8). 0 or 1: in this process.
        quiet: No progress output.
        desc: What the progress line says.
    """
    workers = num_workers
    if workers is None:
        # As feature extraction: cores - 1, at most 8. On 2 cores that is in-process, which
        # measured faster there than a 2-process pool (pickling outweighs a 0.4 ms decode).
        cores = os.cpu_count() or 1
        workers = min(8, cores - 1) if len(paths) >= _MIN_FILES_FOR_POOL else 0
    out: list[ImageFacts] = []
    with Progress(len(paths), desc, unit="img", quiet=quiet) as progress:
        if workers <= 1 or len(paths) < 2:
            for path in paths:
                out.append(inspect_image(path))
                progress.update(1)
            return out
        # The platform's default start method, as DataLoader workers use: fork on Linux; spawn
        # elsewhere, which (as for DataLoader) needs the caller's script to guard its main code.
        chunk = max(1, min(256, len(paths) // (workers * 8)))
        with ProcessPoolExecutor(workers) as pool:
            for facts in pool.map(inspect_image, paths, chunksize=chunk):
                out.append(facts)
                progress.update(1)
    return out
