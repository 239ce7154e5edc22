"""Fuzzed image bytes: every mutation of a valid JPEG/PNG/GIF/WebP/TIFF/BMP is used or skipped.

Seeds are small valid files of each format (and of the odd corners: progressive JPEG, EXIF
rotation, palette with transparency, 16-bit, animation), mutated by byte flips, truncations,
inserted and duplicated chunks and huge size fields (tests/_fuzz.py). Each case goes the ways a
run reads an image: the header sniff of discovery, the full check of ``verify``, both decodes
(``fast``, JPEG draft-scaled, and ``exact``), the preprocessing, and the extraction's batches with
their per-image facts. The only allowed outcomes are pixels or a skip with its reason
(``ImageDecodeError``); never another exception, a hang, or unbounded memory.
``scripts/fuzz.py`` runs the same properties for longer.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from PIL import Image

from headstart.data import decode_image, load_dataset, load_image, verify_dataset
from headstart.data.decoding import image_problem
from headstart.errors import ImageDecodeError
from headstart.features.batches import iter_batches
from headstart.preprocess import Preprocess
from tests._fuzz import bounded, mutated
from tests._images import write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (18, 24, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated a quarter turn, as phones store portraits
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gray16 = Image.fromarray(rng.integers(0, 65536, (18, 24), dtype=np.uint16))
    return {
        "jpeg": _encode(rgb, "JPEG", quality=80),
        "jpeg-progressive": _encode(rgb, "JPEG", progressive=True),
        "jpeg-exif": _encode(rgb, "JPEG", exif=exif),
        "jpeg-gray": _encode(rgb.convert("L"), "JPEG"),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG"),
        "png": _encode(rgb, "PNG"),
        "png-palette": _encode(palette, "PNG"),
        "png-16bit": _encode(gray16, "PNG"),
        "png-rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp": _encode(rgb, "WEBP", quality=80),
        "webp-lossless": _encode(rgb, "WEBP", lossless=True),
        "tiff": _encode(rgb, "TIFF"),
        "tiff-lzw": _encode(rgb, "TIFF", compression="tiff_lzw"),
        "bmp": _encode(rgb, "BMP"),
    }


def _declare_size(fmt: str, blob: bytes, width: int, height: int) -> bytes:
    """``blob`` with its header declaring ``width`` x ``height``, the pixel data left as it is.

    Random overwrites rarely hit a size field, and a checksum guards some (PNG's IHDR), so these
    lies are made on purpose: beyond the decompression-bomb limit, just under it (hundreds of
    megabytes to allocate for a few bytes of data), one pixel wide, and zero.
    """
    out = bytearray(blob)
    if fmt == "jpeg":
        at = max(blob.find(b"\xff\xc0"), blob.find(b"\xff\xc2"))
        struct.pack_into(">HH", out, at + 5, min(height, 65535), min(width, 65535))
    elif fmt == "png":
        struct.pack_into(">II", out, 16, width, height)
        struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))
    elif fmt == "gif":
        struct.pack_into("<HH", out, 6, min(width, 65535), min(height, 65535))
    elif fmt == "bmp":
        struct.pack_into("<ii", out, 18, min(width, 2**31 - 1), min(height, 2**31 - 1))
    elif fmt == "webp":  # VP8: 14-bit sizes after the start code 9d 01 2a
        struct.pack_into("<HH", out, 26, min(width, 16383), min(height, 16383))
    elif fmt == "webp-lossless":  # VP8L: 14 bits each of width-1 and height-1 after 0x2f
        w, h = min(max(width, 1), 16384) - 1, min(max(height, 1), 16384) - 1
        struct.pack_into("<I", out, 21, w | h << 14)
    elif fmt == "tiff":  # the first IFD's ImageWidth (256) and ImageLength (257) entries
        ifd = struct.unpack_from("<I", out, 4)[0]
        for i in range(struct.unpack_from("<H", out, ifd)[0]):
            entry = ifd + 2 + 12 * i
            tag, kind = struct.unpack_from("<HH", out, entry)
            if tag in (256, 257):
                value = width if tag == 256 else height
                if kind == 3:
                    struct.pack_into("<H", out, entry + 8, min(value, 65535))
                else:
                    struct.pack_into("<I", out, entry + 8, value)
    return bytes(out)


_LIES = {
    "bomb": (100_000, 100_000),
    "near-limit": (9_000, 9_000),
    "thin": (1, 65_535),
    "zero": (0, 0),
}
_BASES = ["jpeg", "png", "gif", "bmp", "webp", "webp-lossless", "tiff"]
BASE_SEEDS = _seeds()
LIARS = {
    f"{fmt}-{lie}": _declare_size(fmt, BASE_SEEDS[fmt], *size)
    for fmt in _BASES
    for lie, size in _LIES.items()
}
SEEDS = {**BASE_SEEDS, **LIARS}
# Small enough to keep a case fast; "fast" draft-decodes JPEGs over twice 16 px on each side.
FAST = Preprocess(input_size=(12, 12), resize=16, decode="fast")
EXACT = Preprocess(input_size=(12, 12), resize=16, decode="exact")


def _check_pixels(image: Image.Image) -> None:
    assert image.mode == "RGB"
    assert image.width >= 1 and image.height >= 1


def _check_tensor(tensor: torch.Tensor) -> None:
    assert tensor.shape == (3, 12, 12)
    assert torch.isfinite(tensor).all()


def test_every_seed_is_a_valid_image(tmp_path: Path) -> None:
    """The mutations start from images that decode, so what breaks is what was mutated."""
    for name, blob in BASE_SEEDS.items():
        path = tmp_path / name
        path.write_bytes(blob)
        _check_pixels(load_image(path))


def _decodes_or_is_skipped(path: Path) -> None:
    """The property every image file has: each way of reading it gives pixels or a reason."""
    with bounded():
        sniffed = image_problem(path)
        verified = image_problem(path, verify=True)
        assert sniffed is None or isinstance(sniffed, str) and sniffed
        assert verified is None or isinstance(verified, str) and verified
        if sniffed is not None:
            assert verified is not None, "a file the header check refuses cannot fully decode"
        for preprocess in (FAST, EXACT):
            try:
                image, header = decode_image(path, draft_size=preprocess.draft_size)
            except ImageDecodeError as exc:
                assert exc.reason
                continue
            _check_pixels(image)
            assert header.width >= 1 and header.height >= 1
            _check_tensor(preprocess(image))


@pytest.mark.parametrize("name", sorted(LIARS))
def test_image_lying_about_its_size_is_decoded_or_skipped_with_a_reason(
    name: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    path.write_bytes(LIARS[name])
    _decodes_or_is_skipped(path)


@given(case=mutated(SEEDS))
def test_mutated_image_is_decoded_or_skipped_with_a_reason(
    case: tuple[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "image.jpg"  # extensions are not trusted; a fixed one shows that
    path.write_bytes(case[1])
    _decodes_or_is_skipped(path)


@given(case=mutated(SEEDS))
def test_mutated_image_in_extraction_batches_is_a_tensor_or_a_counted_failure(
    case: tuple[str, bytes], tmp_path: Path
) -> None:
    _, blob = case
    good = write_image(tmp_path / "good.png", size=(20, 14))
    bad = tmp_path / "fuzzed.png"
    bad.write_bytes(blob)
    facts: dict[int, object] = {}
    with bounded():
        for preprocess in (FAST, EXACT):
            (images, indices, failures), *rest = iter_batches(
                [good, bad, good],
                preprocess,
                draft_size=preprocess.draft_size,
                batch_size=3,
                num_workers=0,
                on_content=facts.__setitem__,
            )
            assert rest == []
            assert images is not None and 0 in indices and 2 in indices
            assert sorted(indices + [i for i, _ in failures]) == [0, 1, 2]
            assert all(reason for _, reason in failures)
            assert images.shape == (len(indices), 3, 12, 12)


@given(case=mutated(SEEDS))
def test_mutated_image_in_a_dataset_is_a_sample_or_skipped_with_its_reason(
    case: tuple[str, bytes], tmp_path: Path
) -> None:
    _, blob = case
    data = tmp_path / "data"
    for name in ("cat", "dog"):
        write_image(data / name / "good.png", size=(10, 8))
    fuzzed = data / "cat" / "fuzzed.jpg"
    fuzzed.write_bytes(blob)
    with bounded():
        dataset = load_dataset(data, val_fraction=0.0, test_fraction=0.0)
        samples = {s.path for s in dataset.splits["train"]}
        skipped = {s.path: s.reason for s in dataset.skipped}
        assert (fuzzed in samples) != (fuzzed in skipped)
        verified = verify_dataset(dataset, workers=0)
        if fuzzed not in {s.path for s in verified.splits["train"]}:
            assert {s.path: s.reason for s in verified.skipped}[fuzzed]
