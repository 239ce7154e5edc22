"""Reading image files safely and consistently.

Every image headstart sees, in training, evaluation or prediction, comes through
:func:`load_image`, so a file decodes to the same RGB pixels everywhere (requirement 9: no
drift between training and prediction). Files are recognised by their content, never their
extension, and Pillow is only ever allowed to open :data:`IMAGE_FORMATS`: its other plugins (EPS
runs Ghostscript, PSD/FITS/etc. are rarely exercised parsers) are attack surface for files
downloaded from strangers and are never reached.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from headstart.errors import ImageDecodeError

__all__ = [
    "IMAGE_FORMATS",
    "ImageHeader",
    "decode_image",
    "decode_image_bytes",
    "image_problem",
    "load_image",
    "sniff_format",
]

IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
"""The only Pillow formats ever opened: the ones photos and datasets actually use."""

# Enough bytes for every signature below (the longest check reads offset 8..12 of WebP, and the
# BMP header-size field at 14..18).
_HEAD_BYTES = 32

# Sizes of the BMP info header that real BMP writers use; checking one makes "BM" (two bytes, also
# the start of ordinary text such as "BMW...") a trustworthy signature.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

# Formats we recognise only to name them when refusing them: "unsupported image format 'EPS'"
# tells the user more than "not an image".
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"DDS ", "DDS"),
    (b"qoif", "QOI"),
    (b"gimp xcf", "XCF"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"#?RADIANCE", "HDR"),
)
_ISO_BMFF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"avif": "AVIF"}

_PILLOW_BOMB_MESSAGE = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+)")


def sniff_format(head: bytes) -> str | None:
    """Name the image format from a file's first bytes.

    Discovery calls this on every file of a dataset, so it must be cheap: it reads magic bytes
    only, and a million images cost a million 32-byte reads, not a million decodes.

    Args:
        head: The first bytes of the file (32 are enough; fewer may miss some formats).

    Returns:
        One of :data:`IMAGE_FORMATS`, or None when the content is none of them (whatever the
        file's name says).
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
            return "BMP"
    return None


def _unrecognised_reason(head: bytes) -> str:
    """Say why content that :func:`sniff_format` rejected is skipped, naming known formats."""
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if head.startswith(signature):
            return f"unsupported image format {name!r}"
    if head[4:8] == b"ftyp" and head[8:12] in _ISO_BMFF_BRANDS:
        return f"unsupported image format {_ISO_BMFF_BRANDS[head[8:12]]!r}"
    return "not an image (unrecognised content)"


# Opening without blocking: a FIFO opens at once (and is then refused as not a regular file);
# a regular file ignores the flag.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def _open_descriptor(path: Path) -> int:
    """A descriptor open for reading a regular file, OS errors turned into a readable reason.

    Raw descriptor calls (open, fstat), not ``Path.stat`` and then ``open``: discovery pays this
    per file, and it costs a fifth as much (2 s of 2.5 at 100k images).
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise ImageDecodeError(path, "file not found") from None
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    except ValueError:  # a NUL byte (a CSV cell can hold one): no file has such a name
        raise ImageDecodeError(path, "file not found (its name holds a NUL byte)") from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError as exc:
        os.close(fd)
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not regular:
        # Reading a FIFO or a device would block or read forever.
        os.close(fd)
        raise ImageDecodeError(path, "not a regular file")
    return fd


def _open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, turning OS errors into a readable reason."""
    return os.fdopen(_open_descriptor(path), "rb")


def _read_head(path: Path) -> bytes:
    """The first bytes of a regular file, with the reasons of :func:`_open_regular`, unbuffered."""
    fd = _open_descriptor(path)
    try:
        return os.read(fd, _HEAD_BYTES)
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _check_head(path: Path, head: bytes) -> str:
    """Return the sniffed format, or raise the reason the file is not a usable image."""
    if not head:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageDecodeError(path, _unrecognised_reason(head))
    return fmt


def image_problem(path: Path, *, verify: bool = False) -> str | None:
    """Say why a file cannot be used as an image, or return None when it can.

    Discovery uses this to sort files into samples and skipped files without ever raising for
    one bad file.

    Args:
        path: The file to check.
        verify: Decode the whole file (slow) instead of only sniffing its header, so truncated
            or corrupt files are found before a long run rather than during it.

    Returns:
        None for a usable image, else a short human reason such as "empty file (0 bytes)".
    """
    try:
        if verify:
            # JPEGs decode at 1/8 scale: every byte of the entropy-coded data is still read and
            # checked (truncation and corruption surface), at a fraction of the full decode cost.
            load_image(path, draft_size=(1, 1))
        else:
            _check_head(path, _read_head(path))
    except ImageDecodeError as exc:
        return exc.reason
    return None


@dataclass(frozen=True)
class ImageHeader:
    """What a file says about its image before any scaling: the facts a dataset check reports.

    Attributes:
        format: The format of its content (one of :data:`IMAGE_FORMATS`), whatever its name.
        width: Width in pixels as displayed (EXIF rotation applied), at full size even when the
            pixels were draft-decoded smaller.
        height: Height in pixels as displayed.
        mode: Colour mode stored in the file ("RGB", "L", "P", "CMYK", "I;16", ...).
    """

    format: str
    width: int
    height: int
    mode: str


def load_image(path: str | Path, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file to an RGB image, the one way headstart reads pixels.

    :func:`decode_image` without the header.
    """
    return decode_image(path, draft_size=draft_size)[0]


def decode_image(
    path: str | Path, *, draft_size: tuple[int, int] | None = None
) -> tuple[Image.Image, ImageHeader]:
    """Decode an image file to an RGB image, and say what its header stored.

    The header comes with the pixels so that one decoding pass serves both feature extraction
    and the per-image facts the dataset checks need (size, mode, hashes): nothing reads a file
    twice.

    The conversions follow what ImageNet-trained weights saw in training (torchvision's
    ``ImageFolder`` loader does ``convert("RGB")``): alpha is dropped rather than composited on a
    colour of our choosing, so the input matches the weights' training distribution. Grayscale
    and palette images become three equal channels; 16-bit and float images are *scaled* to
    0..255 (Pillow's own conversion clips them, which turns most of a 16-bit image white). The
    EXIF orientation is applied, because phones store portrait photos sideways and a person
    labelled the picture as they saw it. Multi-frame GIF/TIFF files give their first frame.

    Args:
        path: The image file. Its format is read from its content, not its extension.
        draft_size: For JPEG files, the smallest (width, height) the caller needs. The decoder
            then scales by 1/2, 1/4 or 1/8 while decoding (DCT scaling), never below this size,
            which makes large photos several times faster to read. Pass a size with margin
            (e.g. twice the resize target) so the final resize still has detail to work with.
            Ignored for other formats.

    Returns:
        A loaded image in mode "RGB", independent of the file (which is closed), and the
        file's :class:`ImageHeader`.

    Raises:
        ImageDecodeError: The file is missing, empty, not an image, in a format outside
            :data:`IMAGE_FORMATS`, truncated or corrupt, or a decompression bomb (more pixels
            than ``PIL.Image.MAX_IMAGE_PIXELS``). Callers skip and list such files.
    """
    path = Path(path)
    _check_draft_size(draft_size)
    with _open_regular(path) as fh:
        return _decode(fh, path, draft_size)


def decode_image_bytes(
    data: bytes, *, name: str = "<bytes>", draft_size: tuple[int, int] | None = None
) -> tuple[Image.Image, ImageHeader]:
    """:func:`decode_image` for an image that never was a file: an upload to ``headstart serve``.

    The same checks and conversions as a file gets (format by content, the same formats only,
    the decompression-bomb limit, EXIF rotation, RGB), so a served model sees the pixels
    ``predict`` would see for the same bytes on disk.

    Args:
        data: The encoded image.
        name: What errors call it (an uploaded file's name).
        draft_size: As for :func:`decode_image`.

    Raises:
        ImageDecodeError: As for :func:`decode_image`; its ``path`` is ``name``.
    """
    _check_draft_size(draft_size)
    return _decode(io.BytesIO(data), Path(name), draft_size)


def _check_draft_size(draft_size: tuple[int, int] | None) -> None:
    if draft_size is not None and (draft_size[0] < 1 or draft_size[1] < 1):
        raise ValueError(f"draft_size must be two positive integers, got {draft_size!r}")


def _decode(
    fh: BinaryIO, path: Path, draft_size: tuple[int, int] | None
) -> tuple[Image.Image, ImageHeader]:
    """Decode the open image ``fh`` (named ``path`` in errors): :func:`decode_image`'s work."""
    fmt = _check_head(path, fh.read(_HEAD_BYTES))
    fh.seek(0)
    try:
        img = Image.open(fh, formats=list(IMAGE_FORMATS))
        # A decompression bomb is refused, not merely warned about as Pillow does below
        # twice its limit. Checked here rather than by turning Pillow's warning into an
        # error: warning filters are process-wide, and images decode in threads.
        _refuse_bomb(path, img.size)
        (width, height), mode = img.size, img.mode
        if draft_size is not None and img.format in ("JPEG", "MPO"):  # MPO: camera JPEGs
            img.draft("RGB", draft_size)
        img.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(path, _bomb_reason(exc)) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(path, f"truncated or corrupt {fmt}: cannot identify") from None
    except Exception as exc:  # Pillow's plugins raise many types on bad data
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageDecodeError(path, f"truncated or corrupt {fmt}: {message}") from None
    orientation = _orientation(img)
    if orientation in (5, 6, 7, 8):  # a quarter turn: displayed sideways from how stored
        width, height = height, width
    header = ImageHeader(fmt, width, height, mode)
    return _to_rgb(_apply_orientation(img, orientation), path), header


def _refuse_bomb(path: Path, size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    pixels = max(1, size[0]) * max(1, size[1])
    if limit is not None and pixels > limit:
        raise ImageDecodeError(path, _bomb_text(pixels, limit))


def _bomb_text(pixels: int, limit: int) -> str:
    return (
        f"decompression bomb: {pixels:,} pixels exceeds the limit of {limit:,} "
        "(PIL.Image.MAX_IMAGE_PIXELS); raise that limit only for images you trust"
    )


def _bomb_reason(exc: Warning | Exception) -> str:
    match = _PILLOW_BOMB_MESSAGE.search(str(exc))
    if match is None:
        return f"decompression bomb: {exc}"
    pixels, limit = match.groups()
    return _bomb_text(int(pixels), int(limit))


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 = as stored); a broken EXIF block counts as 1."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # corrupt EXIF must not cost the user a good image
        return 1


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    """Rotate/flip per EXIF orientation; a broken EXIF block leaves the pixels as stored.

    Only transposes when needed: ``exif_transpose`` copies the image even when there is nothing
    to do, which would double the memory of every decode.
    """
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


def _to_rgb(img: Image.Image, path: Path) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16"):
        # 16-bit samples: keep the top byte, so 0..65535 maps onto 0..255 without clipping.
        gray16 = np.asarray(img).astype(np.uint16)
        return Image.fromarray((gray16 >> 8).astype(np.uint8), "L").convert("RGB")
    if mode == "I":
        return Image.fromarray(_int_to_uint8(np.asarray(img)), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(img)), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        # Via RGBA: a direct P->RGB conversion with transparency makes Pillow warn.
        img = img.convert("RGBA")
    if mode in ("La", "RGBa"):
        img = img.convert("RGBA")  # premultiplied alpha: undo it before dropping alpha
    try:
        return img.convert("RGB")
    except ValueError:
        raise ImageDecodeError(path, f"unsupported colour mode {mode!r}") from None


def _int_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 32-bit integer samples to 8 bits.

    Pillow reads 16-bit data from some files as mode "I"; values within 0..65535 are treated as
    16-bit, like "I;16", so a dark image stays dark. Anything outside that range is genuinely
    wider data, and its actual min..max is stretched to 0..255.
    """
    if values.size == 0:
        return values.astype(np.uint8)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high <= 65535:
        return (values >> 8).astype(np.uint8)
    return _stretch(values.astype(np.float64), low, high)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map float samples to 8 bits: 0..1 data scales by 255, 0..255 data is kept, else stretched."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size == 0:
        return values.astype(np.uint8)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    if low >= 0.0 and high <= 255.0:
        return np.rint(values).astype(np.uint8)
    return _stretch(values, low, high)


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - low) * (255.0 / (high - low))
    return np.rint(scaled).astype(np.uint8)
