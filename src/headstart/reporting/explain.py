"""Where the model looked: Grad-CAM class-activation maps for CNN and ViT backbones.

The report's gallery says *that* an image was misread; a class-activation map says *where* the
model looked for its answer: at the object, or at a watermark, a background, a border. Grad-CAM
(Selvaraju et al., 2017) weighs each channel of the last spatial activation by the mean gradient
of the class's logit, sums and keeps the positive part: cheap (one forward and one backward pass),
class-specific (the map for the wrong answer and for the true class differ), and defined for any
network with a spatial activation.

Which activation:

- CNNs (timm, torchvision, headstart-tiny): the last activation with a spatial grid, found by
  running the network once with hooks, i.e. the output of the last stage (``layer4`` of a
  ResNet, the last ConvNeXt stage), where the features are the most semantic and still spatial.
- ViTs (timm ``Block``, torchvision ``EncoderBlock``): the tokens *entering* the last block,
  reshaped to their patch grid (prefix tokens such as ``cls`` dropped). Not the last block's
  output: with ``cls``-token pooling only the ``cls`` token of that output reaches the logits, so
  every patch token's gradient there is zero; at the last block's input the patch tokens reach
  the ``cls`` token through attention (the choice pytorch-grad-cam documents for ViTs).

Implemented here (about a hundred lines of hooks) rather than through pytorch-grad-cam, which
would add OpenCV and ttach to the dependencies for the same computation, and which has no way to
find the layer of an arbitrary backbone by itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.errors import HeadstartError, InvalidParameterError, NotFittedError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from headstart.estimator import ImageClassifier

__all__ = ["Explanation", "explain_image", "overlay", "side_by_side"]

_MAX_PREFIX_TOKENS = 8  # cls + distillation + register tokens of the ViTs timm ships
_BLOCK_NAMES = ("Block", "EncoderBlock", "ResPostBlock", "ParallelScalingBlock")


@dataclass
class Explanation:
    """A class-activation map of one image for one class.

    Attributes:
        image: The image as the network saw it: resized and cropped (RGB).
        cam: ``[H, W]`` in 0..1 at the image's size; 1 is where the class's evidence is strongest.
        class_index, class_name: The class explained.
        probability: The model's probability of that class for this image.
        predicted: The predicted class name.
        layer: The activation the map was computed on, e.g. "layer4" or "blocks.11 (input)".
    """

    image: Image.Image
    cam: np.ndarray
    class_index: int
    class_name: str
    probability: float
    predicted: str
    layer: str


def explain_image(
    clf: ImageClassifier,
    path: str | Path | Image.Image,
    *,
    classes: Sequence[str | int] | None = None,
) -> list[Explanation]:
    """Grad-CAM maps of one image, for each of ``classes`` (default: the predicted class).

    Args:
        clf: A fitted classifier.
        path: The image file, or an image already decoded the way the run decodes (an upload
            to ``headstart serve``, through ``ImagePredictor.decode``).
        classes: Class names or indices to explain; one forward pass serves them all.

    Raises:
        ImageDecodeError: The image cannot be read.
        NotFittedError: ``clf`` is neither fitted nor loaded.
        HeadstartError: An unknown class, or a backbone without a spatial activation.
    """
    import torch

    from headstart.data import load_image

    if not hasattr(clf, "head_"):
        raise NotFittedError(
            "This ImageClassifier is not fitted yet; call fit(...) or "
            "ImageClassifier.load(RUN) first."
        )
    preprocess = clf.preprocess_
    img = (
        load_image(path, draft_size=preprocess.draft_size)
        if isinstance(path, (str, Path))
        else path
    )
    seen = preprocess.resize_and_crop(img)
    network = clf.backbone_.module.eval()
    head = clf.head_.eval()
    # Wherever extraction left the backbone (a GPU), and the head where predict runs it.
    device = next(network.parameters()).device
    x = preprocess(img).unsqueeze(0).to(device)
    head_device = next(head.parameters()).device
    layer, activation = _capture(network, x)
    with torch.enable_grad():
        act, features = activation()
        logits = head(features.to(head_device))
        proba = torch.softmax(logits.detach().cpu(), dim=1)[0]  # calibration is in the head
        predicted = int(proba.argmax())
        wanted = [_class_index(clf, c) for c in classes] if classes else [predicted]
        out = []
        for i, index in enumerate(wanted):
            (grad,) = torch.autograd.grad(logits[0, index], act, retain_graph=i + 1 < len(wanted))
            cam = _grad_cam(_as_grid(act.detach().cpu())[0], _as_grid(grad.cpu())[0], seen.size)
            out.append(
                Explanation(
                    image=seen,
                    cam=cam,
                    class_index=index,
                    class_name=clf.classes_[index],
                    probability=float(proba[index]),
                    predicted=clf.classes_[predicted],
                    layer=layer,
                )
            )
    return out


def overlay(explanation: Explanation, *, alpha: float = 0.45) -> Image.Image:
    """The image with its map laid over it in a perceptual colour map (viridis-like ``turbo``)."""
    from PIL import Image

    heat = turbo(explanation.cam)
    base = np.asarray(explanation.image.convert("RGB"), dtype=np.float64) / 255
    # More of the heat where the evidence is: weak regions keep the picture visible.
    weight = alpha * (0.35 + 0.65 * explanation.cam[..., None])
    mixed = (1 - weight) * base + weight * heat
    return Image.fromarray(np.clip(np.rint(mixed * 255), 0, 255).astype(np.uint8), mode="RGB")


# Turbo (Mikhailov, 2019) sampled at 33 evenly spaced values from matplotlib's 256-entry table and
# interpolated linearly: within 0.03 of the table everywhere. Importing matplotlib for the table
# cost every training run's report 0.4 s.
_TURBO = np.array(
    [
        [0.190, 0.072, 0.232],
        [0.225, 0.164, 0.451],
        [0.251, 0.252, 0.634],
        [0.268, 0.338, 0.780],
        [0.276, 0.421, 0.891],
        [0.275, 0.501, 0.966],
        [0.259, 0.580, 0.999],
        [0.214, 0.659, 0.980],
        [0.158, 0.736, 0.923],
        [0.112, 0.806, 0.845],
        [0.093, 0.866, 0.762],
        [0.120, 0.912, 0.687],
        [0.197, 0.949, 0.595],
        [0.305, 0.977, 0.490],
        [0.428, 0.994, 0.386],
        [0.547, 0.999, 0.296],
        [0.644, 0.990, 0.234],
        [0.726, 0.965, 0.206],
        [0.805, 0.925, 0.205],
        [0.875, 0.873, 0.216],
        [0.933, 0.812, 0.227],
        [0.973, 0.747, 0.225],
        [0.993, 0.674, 0.203],
        [0.996, 0.587, 0.169],
        [0.984, 0.493, 0.128],
        [0.958, 0.400, 0.088],
        [0.921, 0.315, 0.055],
        [0.874, 0.245, 0.033],
        [0.816, 0.185, 0.018],
        [0.746, 0.131, 0.009],
        [0.664, 0.084, 0.004],
        [0.571, 0.045, 0.005],
        [0.480, 0.016, 0.011],
    ]
)
_TURBO_AT = np.linspace(0.0, 1.0, len(_TURBO))


def turbo(values: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of the turbo colour map at ``values`` in [0, 1], in a new last axis."""
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.stack([np.interp(x, _TURBO_AT, _TURBO[:, c]) for c in range(3)], axis=-1)


def side_by_side(explanation: Explanation) -> bytes:
    """PNG bytes: the network's view of the image, and the same with the map over it."""
    import io

    from PIL import Image

    left, right = explanation.image.convert("RGB"), overlay(explanation)
    canvas = Image.new("RGB", (left.width * 2 + 4, left.height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + 4, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- internals
def _class_index(clf: ImageClassifier, value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(clf.classes_):
        return value
    if isinstance(value, str) and value in clf.classes_:
        return clf.classes_.index(value)
    raise InvalidParameterError(
        f"Unknown class {value!r}; the model's classes are {', '.join(clf.classes_)}."
    )


def _capture(network: torch.nn.Module, x: torch.Tensor) -> tuple[str, Any]:
    """Find the activation to explain with a probe pass; return its name and a runner.

    The runner repeats the forward pass with gradients and returns (activation, features),
    the activation as captured (``[1, C, h, w]``, or ``[1, T, C]`` tokens: see ``_as_grid``).
    """
    import torch

    events: list[tuple[str, str]] = []  # ("spatial" | "block", module name) in firing order
    handles = []
    names = dict(network.named_modules())

    def probe(name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4 and min(output.shape[-2:]) > 1:
                events.append(("spatial", name))
            if type(module).__name__ in _BLOCK_NAMES and args and _token_grid(args[0]):
                events.append(("block", name))

        return hook

    for name, module in names.items():
        if name:
            handles.append(module.register_forward_hook(probe(name)))
    try:
        with torch.no_grad():
            network(x)
    finally:
        for handle in handles:
            handle.remove()
    # The last one to fire: a ViT's patch embedding is spatial too, but its blocks come later.
    if events:
        kind, name = events[-1]
        if kind == "spatial":
            return name, _runner(network, names[name], x, tokens=False)
        return f"{name} (input)", _runner(network, names[name], x, tokens=True)
    raise HeadstartError(
        "This backbone has no spatial activation or transformer block to explain; class "
        "activation maps need a CNN or a ViT."
    )


def _runner(
    network: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor, *, tokens: bool
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    def run() -> tuple[torch.Tensor, torch.Tensor]:
        captured: dict[str, torch.Tensor] = {}
        if tokens:

            def pre(mod: torch.nn.Module, args: Any) -> None:
                captured["act"] = args[0]

            handle = module.register_forward_pre_hook(pre)
        else:

            def post(mod: torch.nn.Module, args: Any, output: Any) -> None:
                captured["act"] = output

            handle = module.register_forward_hook(post)
        try:
            features = network(x.clone().requires_grad_(True))
        finally:
            handle.remove()
        return captured["act"], features

    return run


def _as_grid(x: torch.Tensor) -> torch.Tensor:
    """``[1, C, h, w]`` as it is; ViT tokens ``[1, T, C]`` without prefix tokens, on their grid."""
    if x.ndim == 4:
        return x
    grid = _token_grid(x)
    assert grid is not None  # the probe pass chose this activation for having a grid
    prefix, side = grid
    return x[:, prefix:, :].reshape(1, side, side, -1).permute(0, 3, 1, 2)


def _token_grid(tokens: Any) -> tuple[int, int] | None:
    """(prefix tokens, grid side) when ``tokens`` is ``[1, T, C]`` with T - prefix square."""
    import torch

    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        return None
    count = int(tokens.shape[1])
    side = math.isqrt(count)
    prefix = count - side * side
    if side < 2 or prefix > _MAX_PREFIX_TOKENS:
        return None
    return prefix, side


def _grad_cam(act: torch.Tensor, grad: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM of one ``[C, h, w]`` activation, upsampled to ``size`` (width, height), 0..1."""
    import torch
    from torch.nn import functional as F

    weights = grad.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * act).sum(0))
    width, height = size
    cam = F.interpolate(cam[None, None], size=(height, width), mode="bilinear", align_corners=False)
    cam = cam[0, 0]
    top = float(cam.max())
    return (cam / top).numpy() if top > 0 else np.zeros((height, width), dtype=np.float32)
