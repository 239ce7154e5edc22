"""What a dataset check needs to know about one image, computed from pixels already decoded.

Feature extraction decodes every image anyway, so it computes these facts in the same pass and
the feature cache keeps them beside the features, keyed by the image's content digest: a later
run's duplicate and leakage checks, and ``headstart doctor``, then read them instead of decoding
every image again (a warm run decodes nothing).

Why our own perceptual hash rather than ``imagehash``: it is twenty lines of NumPy (a 32x32 DCT
done as two matrix products), it adds no dependency (``imagehash`` pulls in SciPy and PyWavelets),
and the pair search needs the hashes as integers anyway.

The facts come from whatever decode produced the pixels: the doctor's, which DCT-downscales
JPEGs to at least 64 px, or extraction's, at twice the backbone's resize target (or every pixel
with ``decode="exact"``). The 32 px thumbnail they are computed from is an area average either
way, so the two differ by rounding only: a hash bit or two, far inside the near-duplicate
threshold (``headstart.doctor.DEFAULT_NEAR_THRESHOLD``, 12 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from headstart.data.decoding import ImageHeader

__all__ = [
    "FACTS_VERSION",
    "THUMB_SIDE",
    "ImageContent",
    "content_problem",
    "image_content",
    "phash",
]

FACTS_VERSION = 1
"""Bump when the meaning of a stored fact changes: facts stored under another version are
recomputed, never trusted."""

THUMB_SIDE = 8
"""Side of the colour thumbnail that confirms a near-duplicate (8x8x3 = 192 bytes per image)."""

_HASH_SIDE = 32
# A grey image stored as RGB (or as a JPEG, whose chroma rounding adds a little colour) has mean
# |R-G| + |G-B| near 0; even a dull photo is well above 2 grey levels.
_GRAY_SPREAD = 2.0
# Below this standard deviation (grey levels) an image is blank: its DCT is rounding noise, so it
# gets hash 0 and blank images are compared by their thumbnails alone.
_FLAT_STD = 2.0

_k = np.arange(_HASH_SIDE)
_DCT = np.sqrt(2.0 / _HASH_SIDE) * np.cos(np.pi * (2 * _k[None, :] + 1) * _k[:, None] / 64)
_DCT[0] /= np.sqrt(2.0)


# Not frozen: a run makes one per image, and a frozen dataclass takes 5x as long to create
# (0.3 s at 100,000 images). Nothing changes one after it is made.
@dataclass(slots=True)
class ImageContent:
    """What an image's bytes say, whatever the file is called: the same for every copy.

    Attributes:
        problem: Why the content cannot be used as an image (the decoder's reason), or None.
        format: The format of the content, or None when it could not be decoded.
        width: Width in pixels as displayed (EXIF rotation applied); 0 when not decoded.
        height: Height in pixels as displayed; 0 when not decoded.
        mode: Colour mode stored in the file ("RGB", "L", "P", "CMYK", "I;16", ...).
        grayscale: The content has no colour, whatever the mode (a grey photo saved as RGB).
        phash: 64-bit DCT perceptual hash (0 for a blank image).
        thumb: ``THUMB_SIDE`` x ``THUMB_SIDE`` RGB thumbnail bytes.
    """

    problem: str | None = None
    format: str | None = None
    width: int = 0
    height: int = 0
    mode: str = ""
    grayscale: bool = False
    phash: int = 0
    thumb: bytes = b""


# Decoder reasons that are about the path, not the bytes: never stored under a content digest.
_PATH_REASONS = ("file not found", "cannot read file", "not a regular file")


def content_problem(reason: str) -> ImageContent | None:
    """The facts of content that failed to decode for ``reason``, or None when the reason is
    about the file rather than its bytes (missing, unreadable), which another copy may not share.
    """
    if reason.startswith(_PATH_REASONS):
        return None
    return ImageContent(problem=reason)


def phash(gray: np.ndarray) -> int:
    """The 64-bit perceptual hash of a 32x32 grey image (Zauner's pHash, as ``imagehash``).

    The 8x8 lowest DCT frequencies, each compared with their median: resizing, recompression and
    small edits barely move them, while different pictures differ in about half the bits.
    """
    coeffs = _DCT @ gray @ _DCT.T
    low = coeffs[:8, :8].ravel()
    bits = np.packbits(low > np.median(low))
    return int.from_bytes(bits.tobytes(), "big")


def image_content(image: Image.Image, header: ImageHeader) -> ImageContent:
    """The facts of one decoded RGB image (from :func:`headstart.data.decode_image`).

    About 0.1 ms beyond the decode: one area-average resize to 32 px, a 32x32 DCT and an 8x8
    thumbnail.
    """
    small = image.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    rgb = np.asarray(small, dtype=np.int16)
    spread = np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()
    gray = np.asarray(small.convert("L"), dtype=np.float64)
    return ImageContent(
        format=header.format,
        width=header.width,
        height=header.height,
        mode=header.mode,
        grayscale=bool(spread < _GRAY_SPREAD),
        phash=0 if gray.std() < _FLAT_STD else phash(gray),
        thumb=small.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX).tobytes(),
    )
