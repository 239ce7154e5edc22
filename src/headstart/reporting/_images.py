"""The report's pictures: thumbnails, the preprocessing preview and the curves, as ``data:`` URIs.

Every picture is embedded in the page, so a report opens offline, years later, from one file.
"""

from __future__ import annotations

import base64
import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from headstart.errors import ImageDecodeError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from headstart.preprocess import Preprocess

__all__ = [
    "PREVIEW_SIDE",
    "THUMB_SIDE",
    "Preview",
    "curves_uri",
    "data_uri",
    "jpeg_uri",
    "png_uri",
    "preprocess_preview",
    "tensor_to_image",
    "thumbnail",
    "typicality_uri",
]

THUMB_SIDE = 128
PREVIEW_SIDE = 256


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def jpeg_uri(img: Image.Image, quality: int = 85) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return data_uri(buf.getvalue(), "image/jpeg")


def png_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return data_uri(buf.getvalue(), "image/png")


def thumbnail(path: Path, side: int) -> Image.Image | None:
    """The image as headstart decodes it (EXIF orientation applied), fitted in side x side."""
    from headstart.data import load_image

    try:
        img = load_image(path, draft_size=(2 * side, 2 * side))
    except ImageDecodeError:
        return None  # changed on disk since it was evaluated: the grid shows the others
    img.thumbnail((side, side))
    return img


def tensor_to_image(tensor: torch.Tensor, preprocess: Preprocess) -> Image.Image:
    """The tensor a backbone receives, turned back into pixels a person can look at.

    Undoes exactly what :class:`~headstart.preprocess.Preprocess` did after the crop (std, mean,
    pixel scale, channel order), so the picture shows what the network's input *contains*: the
    resize, the crop or the padding. A wrong undo would show wrong colours, which is the point:
    if this picture looks right, the saved preprocessing and the tensor agree.
    """
    from PIL import Image

    x = tensor.detach().to("cpu").float().numpy().astype(np.float64)
    mean = np.asarray(preprocess.mean, dtype=np.float64).reshape(3, 1, 1)
    std = np.asarray(preprocess.std, dtype=np.float64).reshape(3, 1, 1)
    pixels = (x * std + mean) / preprocess.scale
    if preprocess.channel_order == "BGR":
        pixels = pixels[::-1]
    rgb = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")


@dataclass
class Preview:
    original: str
    original_size: tuple[int, int]
    received: str
    shape: tuple[int, ...]
    low: float
    high: float
    name: str


def preprocess_preview(path: Path, preprocess: Preprocess) -> Preview | None:
    from headstart.data import load_image

    try:
        img = load_image(path)
    except ImageDecodeError:
        return None
    tensor = preprocess(img)
    received = tensor_to_image(tensor, preprocess)
    size = img.size
    shown = img.copy()
    shown.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return Preview(
        original=jpeg_uri(shown, 90),
        original_size=size,
        received=png_uri(received),
        shape=tuple(tensor.shape),
        low=float(tensor.min()),
        high=float(tensor.max()),
        name=path.name,
    )


def curves_uri(
    history: Sequence[dict[str, float]], best_epoch: int, saved: Path | None = None
) -> str | None:
    """The same figure as the run's curves.png (one look everywhere): that file when the run
    folder has it (drawing it again would cost a second of matplotlib per report), else drawn
    from history.csv."""
    if not history:
        return None
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if any(key not in row for row in history):
            return None
    if saved is not None and saved.is_file():
        return data_uri(saved.read_bytes(), "image/png")
    from headstart.evaluation.plots import plot_curves

    epochs = {int(row["epoch"]) for row in history}
    with tempfile.TemporaryDirectory(prefix="headstart-report-") as tmp:
        out = plot_curves(history, best_epoch if best_epoch in epochs else 0, Path(tmp) / "c.png")
        return data_uri(out.read_bytes(), "image/png")


def typicality_uri(typicality: Sequence[float], threshold: float) -> str:
    """The histogram of typicality with the threshold marked
    (:func:`~headstart.evaluation.plots.plot_typicality`), as a PNG ``data:`` URI."""
    from headstart.evaluation.plots import plot_typicality

    with tempfile.TemporaryDirectory(prefix="headstart-report-") as tmp:
        out = plot_typicality(typicality, threshold, Path(tmp) / "t.png")
        return data_uri(out.read_bytes(), "image/png")
