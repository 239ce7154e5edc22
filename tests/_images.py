"""Write tiny test images of every kind (good, odd and broken) under a test's tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "write_class_folders",
    "write_cmyk_jpeg",
    "write_eps",
    "write_exif_rotated_jpeg",
    "write_gray16_png",
    "write_image",
    "write_large_photo_jpeg",
    "write_palette_with_transparency",
    "write_sample_photo_jpeg",
    "write_truncated",
]


def write_image(
    path: Path,
    fmt: str = "PNG",
    size: tuple[int, int] = (8, 6),
    color: tuple[int, int, int] = (200, 30, 40),
    mode: str = "RGB",
) -> Path:
    """Write a solid image; ``fmt`` is the real format, whatever the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def write_class_folders(
    root: Path, counts: dict[str, int], fmt: str = "PNG", ext: str = ".png"
) -> Path:
    """``root/<class>/img_NNN<ext>`` with ``counts[class]`` small images each."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(root / name / f"img_{i:03d}{ext}", fmt=fmt, color=(i * 7 % 256, 10, 20))
    return root


def write_truncated(path: Path, fmt: str, size: tuple[int, int] = (64, 48)) -> Path:
    """A valid header followed by only part of the pixel data."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) // 2])
    return path


def write_eps(path: Path) -> Path:
    """A real EPS file (Pillow would hand it to Ghostscript), whatever ``path`` is named."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(path, format="EPS")
    return path


def write_gray16_png(path: Path, width: int = 256) -> Path:
    """A 16-bit grayscale horizontal gradient spanning 0..65535."""
    row = np.linspace(0, 65535, width).round().astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.tile(row, (4, 1))).save(path, format="PNG")
    return path


def write_palette_with_transparency(path: Path) -> Path:
    """A palette PNG whose index 0 is transparent (Pillow warns on a direct P->RGB convert)."""
    img = Image.new("P", (6, 6), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", transparency=0)
    return path


def write_cmyk_jpeg(path: Path) -> Path:
    """A CMYK JPEG of pure cyan (C=255), which is (0, 255, 255) in RGB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path, format="JPEG", quality=95)
    return path


def write_exif_rotated_jpeg(path: Path, orientation: int = 6) -> Path:
    """A 40x20 JPEG, red left half, tagged with an EXIF orientation (6: rotate 90 clockwise)."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", exif=exif, quality=95)
    return path


def write_large_photo_jpeg(
    path: Path, size: tuple[int, int] = (2000, 1500), *, noise: float = 25.0, seed: int = 0
) -> Path:
    """A camera-sized JPEG with photo-like content: smooth colour waves, a checker of shading
    and grain (``noise``: its std in grey levels), the detail DCT-downscaled decoding loses."""
    width, height = size
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [127 + 80 * np.sin(x / (40 + 30 * c) + y / (90 + 20 * c) + c) for c in range(3)], -1
    )
    img += rng.normal(0.0, noise, (height, width, 3))
    img[(x // 37 + y // 29) % 2 == 0] += 30
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, format="JPEG", quality=90)
    return path


# PIL's JPEG chroma subsampling codes: what cameras and phones write varies (phones 4:2:0, many
# cameras 4:2:2), and DCT-scaled decoding upsamples chroma differently for each.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def write_sample_photo_jpeg(
    path: Path,
    photo: str,
    size: tuple[int, int],
    *,
    quality: int = 90,
    subsampling: str = "4:2:0",
    grain: float = 0.0,
    seed: int = 0,
) -> Path:
    """A real photograph (scikit-learn's bundled ``china.jpg`` or ``flower.jpg``, 640x427)
    resized to a camera size, with optional sensor-like grain, re-encoded as a JPEG at the
    given quality and chroma subsampling: real content, where generated waves may be kinder."""
    from sklearn.datasets import load_sample_image

    pixels = np.asarray(
        Image.fromarray(load_sample_image(photo)).resize(size, Image.Resampling.BICUBIC),
        dtype=np.float32,
    )
    if grain:
        pixels = pixels + np.random.default_rng(seed).normal(0.0, grain, pixels.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        path, format="JPEG", quality=quality, subsampling=SUBSAMPLING[subsampling]
    )
    return path
