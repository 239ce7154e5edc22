"""One pass over every image: content hash, full decode, header facts and perceptual hash.

Each file is read once for its SHA-256 and decoded once through
:func:`headstart.data.decode_image`, the decoder training uses, so "truncated" here means exactly
what would fail during a run. JPEGs decode at a reduced (DCT-scaled) size: every byte of the
compressed data is still read and checked, at a fraction of the cost, and a 32 px thumbnail is all
the hashes need.

With the feature cache, facts already stored there (by feature extraction, which computes them in
its own decoding pass, or by an earlier check) are read, not recomputed, and the facts computed
here are stored for next time: a dataset checked or trained on before costs no decode at all
(:func:`cached_facts`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from headstart.data import decode_image, sniff_format
from headstart.data.facts import THUMB_SIDE, ImageContent, content_problem, image_content, phash
from headstart.errors import ImageDecodeError
from headstart.progress import Progress

__all__ = [
    "ImageFacts",
    "THUMB_SIDE",
    "cached_facts",
    "inspect_image",
    "inspect_images",
    "phash",
]

# JPEGs are draft-decoded no smaller than this; enough detail for a 32 px hash thumbnail.
_DRAFT = 64
# A process pool (start-up, pickling every result back) only pays off beyond this many files.
_MIN_FILES_FOR_POOL = 2000


# Not frozen: a run makes one per image, and a frozen dataclass takes 5x as long to create
# (0.3 s at 100,000 images). Nothing changes one after it is made.
@dataclass(slots=True)
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

    @classmethod
    def of(cls, path: Path, sha256: str, content: ImageContent) -> ImageFacts:
        """The facts of ``path`` from those of its content (stored under its digest)."""
        # Field by field: ``dataclasses.asdict`` deep-copies, 90 us a call, 9 s at 100k images.
        c = content
        return cls(
            path,
            sha256,
            c.problem,
            c.format,
            c.width,
            c.height,
            c.mode,
            c.grayscale,
            c.phash,
            c.thumb,
        )

    @property
    def content(self) -> ImageContent:
        """The part that depends on the bytes alone, as the feature cache stores it."""
        return ImageContent(
            problem=self.problem,
            format=self.format,
            width=self.width,
            height=self.height,
            mode=self.mode,
            grayscale=self.grayscale,
            phash=self.phash,
            thumb=self.thumb,
        )


def inspect_image(path: Path) -> ImageFacts:
    """Read, hash and decode one file; never raises for a bad file, says why in ``problem``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageFacts(path, None, f"cannot read file ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        image, header = decode_image(path, draft_size=(_DRAFT, _DRAFT))
    except ImageDecodeError as exc:
        return ImageFacts(path, digest, exc.reason, sniff_format(data[:32]))
    return ImageFacts.of(path, digest, image_content(image, header))


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


def cached_facts(
    paths: Sequence[Path],
    *,
    cache_dir: Path | None,
    num_workers: int | None = None,
    quiet: bool = False,
    desc: str = "checking images",
    digests: Mapping[Path, str] | None = None,
) -> list[ImageFacts]:
    """:func:`inspect_images`, reading the facts the feature cache holds and storing the rest.

    A file the cache has seen (same size and modification time) costs a ``stat``; its facts cost
    a lookup by content digest. Only images whose content no run has decoded yet are decoded.

    Args:
        cache_dir: The feature cache folder; None inspects every file, as without a cache.
        digests: Content digests of (some of) ``paths`` found a moment ago by the same run's
            feature extraction: those files are not looked at again.
    """
    if cache_dir is None:
        return inspect_images(paths, num_workers=num_workers, quiet=quiet, desc=desc)
    from headstart.features.cache import FeatureCache

    with FeatureCache(cache_dir) as cache:
        digests, failures = cache.digests(paths, quiet=quiet, known=digests)
        stored = cache.get_facts(digests.values())
        missing = [p for p in paths if p in digests and digests[p] not in stored]
        fresh = inspect_images(missing, num_workers=num_workers, quiet=quiet, desc=desc)
        computed = {f.path: f for f in fresh}
        cache.put_facts(
            {
                f.sha256: f.content
                for f in fresh
                if f.sha256 is not None and (f.ok or content_problem(f.problem or "") is not None)
            }
        )
    out: list[ImageFacts] = []
    for path in paths:
        if path in computed:
            out.append(computed[path])
        elif path in digests:
            out.append(ImageFacts.of(path, digests[path], stored[digests[path]]))
        else:
            out.append(ImageFacts(path, None, failures.get(path, "cannot read file")))
    return out
