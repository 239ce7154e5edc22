"""Predicting images held in memory, in batches the caller forms: what a server needs.

``ImageClassifier.predict_files`` reads files and batches them itself. A server has neither: its
images arrive as bytes, one or a few per request, and the throughput is in running the images of
requests that arrive together through the backbone as one batch (a forward pass over 16 images
costs far less than 16 passes over one). So the work is split where a server must split it:

- :meth:`ImagePredictor.prepare` decodes and preprocesses one image, with the run's own decoding
  (:func:`headstart.data.decode_image_bytes`: the same formats, limits and conversions as a file)
  and preprocessing. It is thread-safe, so each request does it in a thread of its own.
- :meth:`ImagePredictor.predict` runs a batch of prepared images through the backbone once and
  answers through ``ImageClassifier.predict_features``, the code ``predict_files`` answers
  through, so a served prediction holds the same fields and numbers as ``headstart predict``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from headstart.data import decode_image_bytes
from headstart.device import prepare_device
from headstart.errors import NotFittedError
from headstart.features.batches import stack_images
from headstart.predictions import Prediction
from headstart.threads import ThreadProbe

if TYPE_CHECKING:
    from PIL import Image

    from headstart.estimator import ImageClassifier

__all__ = ["ImagePredictor"]


class ImagePredictor:
    """A fitted classifier ready to predict images given as bytes, batch by batch.

    The backbone is moved to the classifier's ``device`` and put in inference mode once, here,
    rather than per call as ``predict_files`` does per run: a server calls :meth:`predict` many
    times a second.

    Attributes:
        classifier: The fitted classifier.
        lock: Held while the backbone runs. Anything else that runs it from another thread (a
            Grad-CAM map, which hooks into its layers) takes it too, so hooks never see another
            request's batch.
    """

    def __init__(self, classifier: ImageClassifier) -> None:
        if not hasattr(classifier, "head_"):
            raise NotFittedError(
                "This ImageClassifier is not fitted yet; call fit(...) or "
                "ImageClassifier.load(RUN) first."
            )
        self.classifier = classifier
        self.lock = threading.Lock()
        backbone = classifier.backbone_
        self._device = prepare_device(classifier.device)
        self._channels_last = self._device.type != "mps"
        module = backbone.module.eval().to(self._device)
        if self._channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._preprocess = backbone.preprocess
        # On a CPU, the whole OpenMP team or one thread, whichever runs batches faster now: on a
        # busy machine a team's barriers cost more than a second core gains (issue 22).
        self._probe = ThreadProbe(enabled=self._device.type == "cpu")

    def decode(self, data: bytes, name: str) -> Image.Image:
        """The image in ``data`` as the run decodes files (JPEGs draft-decoded as it does).

        Raises:
            ImageDecodeError: ``data`` is not an image headstart reads, is truncated or corrupt,
                or is a decompression bomb; the error's ``path`` is ``name``.
        """
        return decode_image_bytes(data, name=name, draft_size=self._preprocess.draft_size)[0]

    def prepare(self, data: bytes, name: str) -> torch.Tensor:
        """The image in ``data`` decoded and preprocessed: one input of :meth:`predict`.

        Raises:
            ImageDecodeError: as :meth:`decode`.
        """
        return self._preprocess(self.decode(data, name))

    def features(self, images: Sequence[torch.Tensor]) -> np.ndarray:
        """Pooled backbone features of prepared images, one forward pass, a row per image:
        what ``ImageClassifier.predict_features`` answers from."""
        batch = stack_images(images)
        with self.lock, torch.inference_mode():
            x = batch.to(self._device, non_blocking=True)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._probe.step(len(x)):
                return np.asarray(self._module(x).float().cpu().numpy())

    def predict(
        self,
        images: Sequence[torch.Tensor],
        names: Sequence[str],
        *,
        top_k: int = 5,
        unknown_threshold: float | None = None,
    ) -> list[Prediction]:
        """Predictions of prepared images, run through the backbone as one batch.

        Args:
            images: Outputs of :meth:`prepare`.
            names: What each answer's ``path`` says (an uploaded file's name).
            top_k: How many classes each answer lists.
            unknown_threshold: As for ``predict_files`` (default: the run's).
        """
        if not images:
            return []
        return self.classifier.predict_features(
            self.features(images), names, top_k=top_k, unknown_threshold=unknown_threshold
        )
