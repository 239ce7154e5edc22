"""Test-time augmentation: average the probabilities of a few deterministic views of each image.

- ``none``: the image as the weights' preprocessing makes it (one view).
- ``flip``: that view and its mirror image (two views): objects rarely have a handedness, and
  most training recipes flip, so the mirror is an image the model should read the same way.
- ``crops``: the centre crop and the four corner crops of the same resized image (five views,
  torchvision's ``FiveCrop``): what the centre crop cuts off is seen by a corner crop.

Each view is a :class:`~headstart.features.extract.FeatureView`, so its features are cached
apart from the plain ones: a second evaluation with the same views costs no forward pass. The
price of the first is one forward pass per view (``benchmarks/tta.py`` measures whether it pays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from headstart.errors import InvalidParameterError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from headstart.preprocess import Preprocess

__all__ = ["TTA_MODES", "TtaView", "tta_views"]

TtaMode = Literal["none", "flip", "crops"]
TTA_MODES: tuple[str, ...] = ("none", "flip", "crops")
_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


@dataclass(frozen=True)
class TtaView:
    """One deterministic view: mirrored, or cropped at a corner instead of the centre."""

    kind: Literal["flip", "corner"]
    corner: str = ""

    @property
    def name(self) -> str:
        return f"tta-{self.kind}{'-' + self.corner if self.corner else ''}"

    def transform(self, preprocess: Preprocess) -> _ViewTransform:
        return _ViewTransform(self, preprocess)


class _ViewTransform:
    """PIL image (and its digest, unused: the view is the same for every image) -> tensor."""

    def __init__(self, view: TtaView, preprocess: Preprocess) -> None:
        self.view = view
        self.preprocess = preprocess
        self.ops = preprocess._ops()
        self.thread_safe = True

    def __call__(self, img: Image.Image, digest: str = "") -> torch.Tensor:
        from PIL import Image as PILImage

        if img.mode != "RGB":
            img = img.convert("RGB")
        if self.view.kind == "flip":
            for op in self.ops:
                img = op(img)
            return self.preprocess._to_tensor(img.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT))
        resize = self.ops[0]
        img = resize(img)
        height, width = self.preprocess.input_size
        top = 0 if self.view.corner.startswith("top") else max(0, img.height - height)
        left = 0 if self.view.corner.endswith("left") else max(0, img.width - width)
        return self.preprocess._to_tensor(img.crop((left, top, left + width, top + height)))


def tta_views(mode: str, preprocess: Preprocess) -> list[TtaView | None]:
    """The views of a mode; ``None`` stands for the plain view (the features already cached).

    Raises:
        HeadstartError: An unknown mode, or ``crops`` with a preprocessing that does not crop
            (``squash`` or ``border``: there is nothing outside the centre to look at).
    """
    if mode not in TTA_MODES:
        raise InvalidParameterError(
            f"Unknown --tta {mode!r}; choose one of {', '.join(TTA_MODES)}."
        )
    if mode == "none":
        return [None]
    if mode == "flip":
        return [None, TtaView("flip")]
    if preprocess.crop_mode != "center":
        raise InvalidParameterError(
            f"--tta crops needs a center-crop preprocessing; this model's crop mode is "
            f"{preprocess.crop_mode!r}, which keeps the whole image. Use --tta flip."
        )
    views: list[Any] = [None, *(TtaView("corner", c) for c in _CORNERS)]
    return views
