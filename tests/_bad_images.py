"""A named corpus of bad and odd image files, one writer a kind.

Each kind writes one entry into a class folder and says what a run must make of it:
``decoded`` (odd but valid: used, with the pixels it shows), ``skipped`` (listed with a reason
starting with ``reason``), or ``absent`` (not an image file at all, and not listed: a folder, a
hidden file). tests/test_bad_images.py puts every kind in one training folder, reads it once
as ``headstart data`` and trains on it once, and checks each kind's outcome.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageCms

from tests._images import (
    write_cmyk_jpeg,
    write_eps,
    write_exif_rotated_jpeg,
    write_gray16_png,
    write_image,
    write_palette_with_transparency,
)

__all__ = ["KINDS", "BadImage"]

Outcome = Literal["decoded", "skipped", "absent"]


@dataclass(frozen=True)
class BadImage:
    """One kind: its name, what it is, its writer, what a run makes of it.

    Attributes:
        size: For a decoded kind, the (width, height) the pixels must have, EXIF applied.
    """

    name: str
    description: str
    write: Callable[[Path], Path]
    expect: Outcome
    reason: str = ""
    size: tuple[int, int] | None = None


KINDS: dict[str, BadImage] = {}


def _kind(
    name: str,
    description: str,
    expect: Outcome,
    reason: str = "",
    size: tuple[int, int] | None = None,
) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def add(write: Callable[[Path], Path]) -> Callable[[Path], Path]:
        assert name not in KINDS, name
        KINDS[name] = BadImage(name, description, write, expect, reason, size)
        return write

    return add


def _noise(size: tuple[int, int] = (24, 18), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _bytes_kind(
    name: str,
    description: str,
    filename: str,
    content: Callable[[], bytes],
    expect: Outcome,
    reason: str = "",
    size: tuple[int, int] | None = None,
) -> None:
    def write(folder: Path) -> Path:
        path = folder / filename
        path.write_bytes(content())
        return path

    _kind(name, description, expect, reason, size)(write)


# ---------------------------------------------------------------------- truncated
_SEEDS = {
    "jpeg": lambda: _encoded(_noise((64, 48)), "JPEG", quality=90),
    "png": lambda: _encoded(_noise((64, 48)), "PNG"),
    "gif": lambda: _encoded(_noise((64, 48)), "GIF"),
    "webp": lambda: _encoded(_noise((64, 48)), "WEBP", quality=80),
    "tiff": lambda: _encoded(_noise((64, 48)), "TIFF"),
    "bmp": lambda: _encoded(_noise((64, 48)), "BMP"),
}
_FORMAT = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "tiff": "TIFF", "bmp": "BMP"}


def _cut(fmt: str, keep: float | int) -> Callable[[], bytes]:
    def content() -> bytes:
        data = _SEEDS[fmt]()
        at = keep if isinstance(keep, int) else int(len(data) * keep)
        return data[:at] if at >= 0 else data[:at]

    return content


for _fmt, _keep, _label in [
    ("jpeg", 0.1, "at 10%"),
    ("jpeg", 0.5, "at 50%"),
    ("jpeg", 0.9, "at 90%"),
    ("jpeg", 20, "after its first 20 bytes"),
    ("png", 0.1, "at 10%"),
    ("png", 0.5, "at 50%"),
    ("png", 0.9, "at 90%"),
    ("png", 16, "inside its header chunk"),
    ("gif", 0.5, "at 50%"),
    ("webp", 0.5, "at 50%"),
    ("tiff", 0.5, "at 50%"),
    ("bmp", 0.5, "at 50%"),
]:
    _suffix = f"{int(_keep * 100)}pct" if isinstance(_keep, float) else f"{_keep}-bytes"
    _bytes_kind(
        f"{_fmt}-truncated-{_suffix}",
        f"a {_FORMAT[_fmt]} cut {_label}",
        f"cut-{_fmt}-{_suffix}.{_fmt}",
        _cut(_fmt, _keep),
        "skipped",
        f"truncated or corrupt {_FORMAT[_fmt]}",
    )

_bytes_kind(
    "png-without-iend",
    "a PNG missing only its 12-byte IEND chunk (all pixels present)",
    "no-iend.png",
    _cut("png", -12),
    "decoded",
    size=(64, 48),
)
_bytes_kind(
    "jpeg-without-eoi",
    "a JPEG missing only its 2-byte end-of-image marker (Pillow: truncated)",
    "no-eoi.jpg",
    _cut("jpeg", -2),
    "skipped",
    "truncated or corrupt JPEG: image file is truncated",
)
_bytes_kind(
    "empty-file", "zero bytes named .jpg", "empty.jpg", lambda: b"", "skipped", "empty file"
)
_bytes_kind("one-byte", "a single 0xff byte", "one-byte.jpg", lambda: b"\xff", "skipped", "not an")


# ---------------------------------------------------------------------- names that lie
for _name, _filename, _fmt in [
    ("png-named-jpg", "png.jpg", "PNG"),
    ("jpeg-named-png", "jpeg.png", "JPEG"),
    ("gif-named-webp", "gif.webp", "GIF"),
    ("bmp-named-tif", "bmp.tif", "BMP"),
    ("webp-named-gif", "webp.gif", "WEBP"),
    ("jpeg-without-extension", "jpeg-no-extension", "JPEG"),
    ("jpeg-upper-case-extension", "UPPER.JPG", "JPEG"),
]:

    def _write_named(folder: Path, _filename: str = _filename, _fmt: str = _fmt) -> Path:
        return write_image(folder / _filename, fmt=_fmt, size=(10, 7))

    _kind(_name, f"a real {_fmt} named {_filename!r}", "decoded", size=(10, 7))(_write_named)


# ---------------------------------------------------------------------- sizes that lie
def _png_declaring(width: int, height: int) -> bytes:
    out = bytearray(_encoded(_noise((8, 6)), "PNG"))
    struct.pack_into(">II", out, 16, width, height)
    struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def _gif_declaring(width: int, height: int) -> bytes:
    out = bytearray(_encoded(_noise((8, 6)), "GIF"))
    struct.pack_into("<HH", out, 6, width, height)
    at = out.find(b"\x2c")  # the image descriptor's size too
    struct.pack_into("<HH", out, at + 5, width, height)
    return bytes(out)


def _jpeg_declaring(width: int, height: int) -> bytes:
    out = bytearray(_encoded(_noise((8, 6)), "JPEG"))
    at = out.find(b"\xff\xc0")
    struct.pack_into(">HH", out, at + 5, height, width)
    return bytes(out)


def _bmp_declaring(width: int, height: int) -> bytes:
    out = bytearray(_encoded(_noise((8, 6)), "BMP"))
    struct.pack_into("<ii", out, 18, width, height)
    return bytes(out)


_BOMB = "decompression bomb"
_bytes_kind(
    "png-declaring-100000-squared",
    "a PNG header claiming 100,000 x 100,000 pixels",
    "liar.png",
    lambda: _png_declaring(100_000, 100_000),
    "skipped",
    _BOMB,
)
_bytes_kind(
    "gif-declaring-65535-squared",
    "a GIF header claiming 65,535 x 65,535 pixels",
    "liar.gif",
    lambda: _gif_declaring(65_535, 65_535),
    "skipped",
    _BOMB,
)
_bytes_kind(
    "jpeg-declaring-65535-squared",
    "a JPEG frame header claiming 65,535 x 65,535 pixels",
    "liar.jpg",
    lambda: _jpeg_declaring(65_535, 65_535),
    "skipped",
    _BOMB,
)
_bytes_kind(
    "bmp-declaring-2-billion-wide",
    "a BMP header claiming 2**31-1 x 2**31-1 pixels",
    "liar.bmp",
    lambda: _bmp_declaring(2**31 - 1, 2**31 - 1),
    "skipped",
    _BOMB,
)
_bytes_kind(
    "png-declaring-zero-size",
    "a PNG header claiming 0 x 0 pixels",
    "zero.png",
    lambda: _png_declaring(0, 0),
    "skipped",
    "truncated or corrupt PNG",
)
_bytes_kind(
    "png-declaring-more-than-its-data",
    "a PNG header claiming 9,000 x 9,000 pixels over 8 x 6 of data (under the bomb limit)",
    "short.png",
    lambda: _png_declaring(9_000, 9_000),
    "skipped",
    "truncated or corrupt PNG",
)


def _real_bomb() -> bytes:
    """A real PNG of 14,000 x 14,000 one-bit pixels: 196 million, twice Pillow's limit, in a
    few tens of kilobytes."""
    return _encoded(Image.new("1", (14_000, 14_000), 0), "PNG", optimize=True)


_bytes_kind(
    "png-decompression-bomb",
    "a real 14,000 x 14,000 PNG of a few kilobytes",
    "bomb.png",
    _real_bomb,
    "skipped",
    _BOMB,
)


# ---------------------------------------------------------------------- colour modes
def _mode_kind(
    name: str, description: str, filename: str, image: Callable[[], Image.Image], fmt: str
) -> None:
    def content() -> bytes:
        return _encoded(image(), fmt)

    _bytes_kind(name, description, filename, content, "decoded", size=image().size)


_kind("cmyk-jpeg", "a CMYK JPEG", "decoded", size=(8, 8))(lambda f: write_cmyk_jpeg(f / "cmyk.jpg"))
_kind("gray16-png", "a 16-bit grayscale PNG", "decoded", size=(256, 4))(
    lambda f: write_gray16_png(f / "gray16.png")
)
_kind("palette-transparency-png", "a palette PNG with a transparent index", "decoded", size=(6, 6))(
    lambda f: write_palette_with_transparency(f / "palette.png")
)
_mode_kind("rgba-png", "an RGBA PNG", "rgba.png", lambda: _noise().convert("RGBA"), "PNG")
_mode_kind("la-png", "a grayscale + alpha PNG", "la.png", lambda: _noise().convert("LA"), "PNG")
_mode_kind("one-bit-png", "a 1-bit PNG", "bits.png", lambda: _noise().convert("1"), "PNG")
_mode_kind("gray-jpeg", "a grayscale JPEG", "gray.jpg", lambda: _noise().convert("L"), "JPEG")
_mode_kind("cmyk-tiff", "a CMYK TIFF", "cmyk.tif", lambda: _noise().convert("CMYK"), "TIFF")
_mode_kind("rgba-webp", "an RGBA WebP", "rgba.webp", lambda: _noise().convert("RGBA"), "WEBP")
_mode_kind(
    "gray16-tiff",
    "a 16-bit grayscale TIFF",
    "gray16.tif",
    lambda: Image.fromarray(np.arange(24 * 18, dtype=np.uint16).reshape(18, 24) * 100),
    "TIFF",
)
_mode_kind(
    "float32-tiff",
    "a 32-bit float TIFF with NaN and infinity",
    "float.tif",
    lambda: Image.fromarray(
        np.array([[0.0, np.nan, np.inf, -np.inf, 0.5, 1.0]] * 4, dtype=np.float32)
    ),
    "TIFF",
)
_mode_kind(
    "int32-tiff",
    "a 32-bit integer TIFF with negative values",
    "int32.tif",
    lambda: Image.fromarray(np.array([[-(2**31), 0, 2**31 - 1]] * 3, dtype=np.int32)),
    "TIFF",
)
_bytes_kind(
    "progressive-jpeg",
    "a progressive JPEG",
    "progressive.jpg",
    lambda: _encoded(_noise(), "JPEG", progressive=True),
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "jpeg-with-icc-profile",
    "a JPEG carrying an ICC profile (sRGB)",
    "icc.jpg",
    lambda: _encoded(
        _noise(),
        "JPEG",
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    ),
    "decoded",
    size=(24, 18),
)


# ---------------------------------------------------------------------- frames
def _frames() -> list[Image.Image]:
    return [_noise(seed=1), _noise(seed=2), _noise(seed=3)]


_bytes_kind(
    "animated-gif",
    "a three-frame GIF",
    "anim.gif",
    lambda: _encoded(_frames()[0], "GIF", save_all=True, append_images=_frames()[1:]),
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "animated-webp",
    "a three-frame WebP",
    "anim.webp",
    lambda: _encoded(_frames()[0], "WEBP", save_all=True, append_images=_frames()[1:]),
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "animated-png",
    "a three-frame APNG",
    "anim.png",
    lambda: _encoded(_frames()[0], "PNG", save_all=True, append_images=_frames()[1:]),
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "multi-page-tiff",
    "a three-page TIFF",
    "pages.tif",
    lambda: _encoded(_frames()[0], "TIFF", save_all=True, append_images=_frames()[1:]),
    "decoded",
    size=(24, 18),
)

# ---------------------------------------------------------------------- EXIF
for _orientation in range(2, 9):

    def _write_rotated(folder: Path, _o: int = _orientation) -> Path:
        return write_exif_rotated_jpeg(folder / f"exif-{_o}.jpg", orientation=_o)

    _kind(
        f"exif-orientation-{_orientation}",
        f"a 40 x 20 JPEG tagged with EXIF orientation {_orientation}",
        "decoded",
        size=(20, 40) if _orientation >= 5 else (40, 20),
    )(_write_rotated)


def _jpeg_with_exif(exif: Image.Exif | bytes) -> bytes:
    return _encoded(_noise(), "JPEG", exif=exif)


def _invalid_orientation() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 9
    return _jpeg_with_exif(exif)


def _huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription: near the 64 KiB a JPEG segment holds
    exif[0x0112] = 1
    return _jpeg_with_exif(exif)


_bytes_kind(
    "exif-orientation-9",
    "an EXIF orientation outside 1..8",
    "exif-9.jpg",
    _invalid_orientation,
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "exif-huge", "a 60 KB EXIF block", "exif-huge.jpg", _huge_exif, "decoded", size=(24, 18)
)
_bytes_kind(
    "exif-garbage",
    "an EXIF segment of random bytes",
    "exif-garbage.jpg",
    lambda: _jpeg_with_exif(b"Exif\x00\x00" + bytes(np.random.default_rng(0).bytes(300))),
    "decoded",
    size=(24, 18),
)


def _png_with_ztxt(size: int) -> bytes:
    """A PNG with a compressed text chunk that inflates to ``size`` bytes."""
    data = _encoded(_noise(), "PNG")
    body = b"Comment\x00\x00" + zlib.compress(b"a" * size, 9)
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + body))
    return data[:33] + chunk + data[33:]


_bytes_kind(
    "png-text-chunk-bomb",
    "a PNG with a zTXt chunk inflating to 64 MiB (over Pillow's text limit)",
    "ztxt.png",
    lambda: _png_with_ztxt(2**26),
    "skipped",
    "truncated or corrupt PNG: Decompressed data too large",
)


def _png_bad_crc() -> bytes:
    data = bytearray(_encoded(_noise(), "PNG"))
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    data[at + 4 + length] ^= 0xFF  # the IDAT chunk's CRC
    return bytes(data)


_bytes_kind(
    "png-bad-crc",
    "a PNG whose pixel chunk's CRC is wrong, its pixels intact (decoders do not check it)",
    "bad-crc.png",
    _png_bad_crc,
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "jpeg-garbage-after-eoi",
    "a JPEG followed by 10 KB of junk",
    "trailing.jpg",
    lambda: _encoded(_noise(), "JPEG") + os.urandom(10_000),
    "decoded",
    size=(24, 18),
)
_bytes_kind(
    "one-pixel",
    "a 1 x 1 PNG",
    "pixel.png",
    lambda: _encoded(_noise((1, 1)), "PNG"),
    "decoded",
    size=(1, 1),
)
_bytes_kind(
    "one-pixel-wide",
    "a 1 x 3000 PNG",
    "thin.png",
    lambda: _encoded(_noise((1, 3000)), "PNG"),
    "decoded",
    size=(1, 3000),
)
_bytes_kind(
    "one-pixel-high",
    "a 3000 x 1 PNG",
    "flat.png",
    lambda: _encoded(_noise((3000, 1)), "PNG"),
    "decoded",
    size=(3000, 1),
)


# ---------------------------------------------------------------------- not images
_unsupported = "unsupported image format"
_not_image = "not an image"
_bytes_kind(
    "svg-named-jpg",
    "an SVG document named .jpg",
    "vector.jpg",
    lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect/></svg>',
    "skipped",
    _not_image,
)
_bytes_kind(
    "heic-bytes",
    "an ISO-BMFF box of brand heic",
    "phone.heic",
    lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64,
    "skipped",
    f"{_unsupported} 'HEIC'",
)
_bytes_kind(
    "avif-bytes",
    "an ISO-BMFF box of brand avif",
    "photo.avif",
    lambda: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64,
    "skipped",
    f"{_unsupported} 'AVIF'",
)
_bytes_kind(
    "psd-bytes",
    "a Photoshop header named .png",
    "layers.png",
    lambda: b"8BPS\x00\x01" + b"\x00" * 6 + b"\x00\x03\x00\x00\x00\x08\x00\x00\x00\x08\x00\x08",
    "skipped",
    f"{_unsupported} 'PSD'",
)
_kind(
    "eps-named-jpg", "a real EPS (Ghostscript bait) named .jpg", "skipped", f"{_unsupported} 'EPS'"
)(lambda f: write_eps(f / "eps.jpg"))
_bytes_kind(
    "pdf-named-jpg",
    "a PDF named .jpg",
    "scan.jpg",
    lambda: b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n",
    "skipped",
    f"{_unsupported} 'PDF'",
)
_bytes_kind(
    "ico-file",
    "a Windows icon",
    "favicon.ico",
    lambda: _encoded(_noise((16, 16)), "ICO"),
    "skipped",
    f"{_unsupported} 'ICO'",
)
_bytes_kind(
    "ppm-file",
    "a PPM (a format Pillow reads, headstart does not)",
    "portable.ppm",
    lambda: _encoded(_noise(), "PPM"),
    "skipped",
    _not_image,
)
_bytes_kind(
    "tga-file",
    "a TGA (no signature to sniff)",
    "targa.tga",
    lambda: _encoded(_noise(), "TGA"),
    "skipped",
    _not_image,
)
_bytes_kind(
    "html-error-page",
    "a scraper's saved 404 page named .jpg",
    "404.jpg",
    lambda: b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n",
    "skipped",
    _not_image,
)
_bytes_kind(
    "text-named-jpg",
    "a text note named .jpg",
    "notes.jpg",
    lambda: b"remember to label more dogs\n",
    "skipped",
    _not_image,
)


def _zip_of_images() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.png", _encoded(_noise(), "PNG"))
    return buf.getvalue()


_bytes_kind(
    "zip-named-jpg",
    "a zip of images named .jpg",
    "album.jpg",
    _zip_of_images,
    "skipped",
    _not_image,
)
_bytes_kind(
    "gzipped-png",
    "a gzip-compressed PNG named .png",
    "packed.png",
    lambda: gzip.compress(_encoded(_noise(), "PNG")),
    "skipped",
    _not_image,
)
_bytes_kind(
    "shell-script-named-png",
    "an executable shell script named .png",
    "run.png",
    lambda: b"#!/bin/sh\ntouch /tmp/headstart-pwned\n",
    "skipped",
    _not_image,
)


# ---------------------------------------------------------------------- the file system
@_kind("directory-named-jpg", "an empty folder named like an image", "absent")
def _(folder: Path) -> Path:
    path = folder / "folder.jpg"
    path.mkdir()
    return path


@_kind("hidden-file", "a dotfile image (ignored, as are hidden folders)", "absent")
def _(folder: Path) -> Path:
    return write_image(folder / ".hidden.png")


@_kind("apple-double", "a macOS ._ resource fork beside an image", "absent")
def _(folder: Path) -> Path:
    path = folder / "._photo.jpg"
    path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 64)
    return path


@_kind("symlink-loop", "a link that points to itself", "skipped", "cannot read file")
def _(folder: Path) -> Path:
    path = folder / "loop.jpg"
    path.symlink_to(path)
    return path


@_kind("dangling-symlink", "a link to a file that does not exist", "skipped", "file not found")
def _(folder: Path) -> Path:
    path = folder / "dangling.jpg"
    path.symlink_to(folder / "nowhere.jpg")
    return path


@_kind("symlink-to-etc-passwd", "a link named .jpg to /etc/passwd", "skipped", _not_image)
def _(folder: Path) -> Path:
    path = folder / "passwd.jpg"
    path.symlink_to("/etc/passwd")
    return path


@_kind(
    "symlink-to-image-elsewhere", "a link to an image outside the dataset", "decoded", size=(9, 5)
)
def _(folder: Path) -> Path:
    target = write_image(folder.parent.parent / "elsewhere" / "target.png", size=(9, 5))
    path = folder / "linked.png"
    path.symlink_to(target)
    return path


@_kind("fifo-named-jpg", "a named pipe (reading it would block)", "skipped", "not a regular file")
def _(folder: Path) -> Path:
    path = folder / "pipe.jpg"
    os.mkfifo(path)
    return path


_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@_kind(
    "unreadable-permissions",
    "an image with mode 000 (readable to root only)",
    "decoded" if _ROOT else "skipped",
    "" if _ROOT else "cannot read file",
    size=(10, 7) if _ROOT else None,
)
def _(folder: Path) -> Path:
    path = write_image(folder / "locked.png", size=(10, 7))
    path.chmod(0)
    return path


@_kind("non-utf8-name-image", "an image whose name is not UTF-8", "decoded", size=(10, 7))
def _(folder: Path) -> Path:
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    with open(raw, "wb") as f:
        f.write(_encoded(_noise((10, 7)), "PNG"))
    return Path(os.fsdecode(raw))


@_kind("non-utf8-name-text", "a text file whose name is not UTF-8", "skipped", _not_image)
def _(folder: Path) -> Path:
    raw = os.fsencode(folder) + b"/na\xefve\xff.jpg"
    with open(raw, "wb") as f:
        f.write(b"not an image\n")
    return Path(os.fsdecode(raw))


@_kind(
    "newline-in-name", "an image whose name holds a newline and a comma", "decoded", size=(10, 7)
)
def _(folder: Path) -> Path:
    return write_image(folder / "two\nlines, one.png", size=(10, 7))


@_kind("newline-in-name-broken", "a text file whose name holds a newline", "skipped", _not_image)
def _(folder: Path) -> Path:
    path = folder / 'bad\n"name".jpg'
    path.write_bytes(b"text")
    return path


@_kind("long-name", "an image named with 250 characters", "decoded", size=(10, 7))
def _(folder: Path) -> Path:
    return write_image(folder / ("n" * 246 + ".png"), size=(10, 7))
