from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.data import (
    IMAGE_FORMATS,
    decode_image,
    decode_image_bytes,
    load_image,
    sniff_format,
)
from headstart.data.decoding import image_problem
from headstart.errors import DataError, ImageDecodeError
from tests._images import (
    write_cmyk_jpeg,
    write_eps,
    write_exif_rotated_jpeg,
    write_gray16_png,
    write_image,
    write_palette_with_transparency,
    write_truncated,
)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF"])
def test_sniff_format_names_every_supported_format_from_content(tmp_path: Path, fmt: str) -> None:
    path = write_image(tmp_path / "x.bin", fmt=fmt)
    assert sniff_format(path.read_bytes()[:32]) == fmt
    assert fmt in IMAGE_FORMATS


@pytest.mark.parametrize(
    "head",
    [b"", b"hello world, not an image", b"BMW is a car brand and not a bitmap", b"%!PS-Adobe-3.0"],
)
def test_sniff_format_returns_none_for_non_images(head: bytes) -> None:
    assert sniff_format(head) is None


def test_png_named_jpg_is_read_by_content(tmp_path: Path) -> None:
    path = write_image(tmp_path / "photo.jpg", fmt="PNG", color=(1, 2, 3))
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (1, 2, 3)


def test_load_image_accepts_str_path(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png")
    assert load_image(str(path)).size == (8, 6)


def test_missing_file_raises_decode_error_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.reason == "file not found"
    assert isinstance(info.value, DataError)


def test_zero_byte_file_raises_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty file \(0 bytes\)"):
        load_image(path)


def test_text_file_raises_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("just some notes\n")
    with pytest.raises(ImageDecodeError, match=r"not an image \(unrecognised content\)"):
        load_image(path)


def test_eps_renamed_jpg_is_refused_without_running_ghostscript(tmp_path: Path) -> None:
    path = write_eps(tmp_path / "evil.jpg")
    with pytest.raises(ImageDecodeError, match="unsupported image format 'EPS'"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_raises_truncated_or_corrupt(tmp_path: Path, fmt: str) -> None:
    path = write_truncated(tmp_path / f"cut.{fmt.lower()}", fmt)
    with pytest.raises(ImageDecodeError, match=f"truncated or corrupt {fmt}"):
        load_image(path)


def test_decompression_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_image(tmp_path / "big.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1200 pixels: over, but under 2x
    with pytest.raises(ImageDecodeError, match="decompression bomb: 1,200 pixels exceeds"):
        load_image(path)


def test_image_over_twice_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # over twice the limit: Pillow's error
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(path)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = write_image(tmp_path / "g.png", mode="L", color=(90, 90, 90))
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (90, 90, 90)


def test_one_bit_image_becomes_rgb(tmp_path: Path) -> None:
    path = write_image(tmp_path / "b.png", mode="1", color=(255, 255, 255))
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_converts_without_warning(tmp_path: Path) -> None:
    # pytest turns warnings into errors, so a Pillow warning would fail this test.
    img = load_image(write_palette_with_transparency(tmp_path / "p.png"))
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (0, 0, 255)
    assert img.getpixel((1, 1)) == (255, 0, 0)


def test_rgba_drops_alpha_like_imagenet_loaders(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(path)
    assert load_image(path).getpixel((0, 0)) == (10, 20, 30)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    img = load_image(write_cmyk_jpeg(tmp_path / "c.jpg"))
    assert img.mode == "RGB"
    r, g, b = img.getpixel((4, 4))
    assert r < 30 and g > 225 and b > 225


def test_16bit_png_gradient_maps_to_full_range_not_clipped(tmp_path: Path) -> None:
    img = load_image(write_gray16_png(tmp_path / "g16.png"))
    pixels = np.asarray(img)
    assert img.mode == "RGB"
    row = pixels[0, :, 0]
    assert row.min() == 0 and row.max() == 255
    assert np.all(np.diff(row.astype(int)) >= 0)  # still a gradient
    assert (row == 255).sum() <= 2  # Pillow's own convert would clip ~all of it to 255
    assert abs(int(row[128]) - 128) <= 1


def test_16bit_tiff_maps_to_full_range(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (2, 1))
    path = tmp_path / "g16.tif"
    Image.fromarray(gradient).save(path)
    row = np.asarray(load_image(path))[0, :, 0]
    assert row.min() == 0 and row.max() == 255


def test_float_image_in_unit_range_scales_to_255(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.full((3, 3), 0.5, dtype=np.float32)).save(path)
    assert load_image(path).getpixel((0, 0)) == (128, 128, 128)


def test_32bit_integer_image_with_wide_range_is_stretched(tmp_path: Path) -> None:
    path = tmp_path / "i.tif"
    Image.fromarray(np.array([[-1000, 1_000_000]], dtype=np.int32)).save(path)
    row = np.asarray(load_image(path))[0, :, 0]
    assert row.tolist() == [0, 255]


def test_exif_rotated_jpeg_comes_out_rotated(tmp_path: Path) -> None:
    img = load_image(write_exif_rotated_jpeg(tmp_path / "r.jpg", orientation=6))
    assert img.size == (20, 40)  # stored 40x20 landscape, shown portrait
    # Orientation 6 rotates 90 degrees clockwise: the stored left (red) half ends up on top.
    top = img.getpixel((10, 5))
    bottom = img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_multi_frame_gif_gives_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load_image(path).getpixel((0, 0)) == (255, 0, 0)


def test_draft_size_decodes_large_jpeg_at_reduced_scale(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", fmt="JPEG", size=(2000, 1500))
    img = load_image(path, draft_size=(400, 300))
    assert img.mode == "RGB"
    assert img.width >= 400 and img.height >= 300
    assert img.size < (2000, 1500)
    assert img.size == (500, 375)  # 1/4 scale: the smallest DCT scale not below the request


def test_draft_size_never_goes_below_the_request(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.jpg", fmt="JPEG", size=(2000, 1500))
    img = load_image(path, draft_size=(1100, 300))
    assert img.width >= 1100 and img.height >= 300


def test_draft_size_is_ignored_for_png(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", size=(800, 600))
    assert load_image(path, draft_size=(100, 100)).size == (800, 600)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_discovery_names_a_pipe_a_folder_and_a_dangling_link_without_blocking(
    tmp_path: Path,
) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would wait for a writer
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "link.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert image_problem(tmp_path / "pipe.jpg") == "not a regular file"
    assert image_problem(tmp_path / "folder.jpg") == "not a regular file"
    assert image_problem(tmp_path / "link.jpg") == "file not found"


def test_bytes_decode_to_the_pixels_and_header_of_the_same_file(tmp_path: Path) -> None:
    photo = write_exif_rotated_jpeg(tmp_path / "rotated.jpg")
    image, header = decode_image(photo, draft_size=(8, 8))
    from_bytes, header_of_bytes = decode_image_bytes(photo.read_bytes(), draft_size=(8, 8))
    assert header_of_bytes == header
    assert np.array_equal(np.asarray(from_bytes), np.asarray(image))


def test_bad_bytes_raise_the_reason_a_file_would_get_under_the_given_name(tmp_path) -> None:
    cut = write_truncated(tmp_path / "cut.png", "PNG")
    with pytest.raises(ImageDecodeError) as raised:
        decode_image_bytes(cut.read_bytes(), name="upload.png")
    assert raised.value.path == Path("upload.png")
    assert raised.value.reason == image_problem(cut, verify=True)
    with pytest.raises(ImageDecodeError, match="not an image"):
        decode_image_bytes(b"hello")
