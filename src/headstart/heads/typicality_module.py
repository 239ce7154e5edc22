"""A fitted typicality score as a torch module, so an exported model can carry it.

:class:`~headstart.heads.typicality.Typicality` scores numpy arrays; an ONNX or TorchScript file
has no numpy, so ``headstart export`` puts this module in its graph, after the backbone and
beside the head. It computes the same numbers the same way: every constant it holds is computed
here by the code :mod:`headstart.heads.typicality` scores with, the Mahalanobis scores run in
float64 (as ``Typicality.raw`` does; a distance over 2,048 dimensions in float32 moves an image
past a few held-out scores and its typicality with them), kNN in float32 as it does. The scale,
``searchsorted(knowns, raw, side="left") / n``, becomes a comparison every exporter knows:
``(knowns < raw).mean()``, the share of held-out known images strictly less typical. A NaN raw
score is below no known one, so its typicality is 0, as ``Typicality.typicality`` says.

Every operation is in ONNX opset 17 and in ONNX Runtime's CPU kernels for float64 (MatMul,
ReduceMin, TopK, Less, ReduceMean, ReduceLogSumExp), and ``torch.jit.trace`` records it as is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.heads.typicality import LOGIT_SCORES, Typicality, _knn_k

__all__ = ["TypicalityModule"]

_MAHALANOBIS = ("mahalanobis", "relative_mahalanobis")


def _buffer(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


class TypicalityModule(nn.Module):
    """``forward(features, logits) -> typicality``: float32, one value in [0, 1] per image.

    ``features`` are the backbone's pooled features (float32 ``[N, D]``), ``logits`` the
    head's calibrated logits ``[N, C]``; each score reads the one it needs.
    """

    knowns: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    means: torch.Tensor
    precision: torch.Tensor
    mean_terms: torch.Tensor
    background_means: torch.Tensor
    background_precision: torch.Tensor
    background_mean_terms: torch.Tensor
    bank: torch.Tensor

    def __init__(self, typicality: Typicality) -> None:
        super().__init__()
        self.score = typicality.score
        params = typicality.params
        self.register_buffer("knowns", _buffer(typicality.knowns, torch.float64))
        if self.score in _MAHALANOBIS:
            self._register_gaussian("", params["means"], params["precision"])
            self.register_buffer("shift", _buffer(params["shift"], torch.float64))
            self.register_buffer("scale", _buffer(params["scale"], torch.float64))
            if self.score == "relative_mahalanobis":
                background = params["background_mean"][None, :]
                self._register_gaussian("background_", background, params["background_precision"])
        elif self.score == "knn":
            self.register_buffer("bank", _buffer(params["bank"], torch.float32))
            self.k = min(_knn_k(len(params["bank"])), len(params["bank"]))
        elif self.score not in LOGIT_SCORES:
            raise ValueError(f"No module for the typicality score {self.score!r}.")

    def _register_gaussian(self, prefix: str, means: np.ndarray, precision: np.ndarray) -> None:
        """Means, precision, and each mean's own term ``m P m``, computed as ``_distances``
        computes it (float32 parameters, a float32 product), so the sums match it."""
        mean_terms = np.einsum("ij,ij->i", means @ precision, means)
        self.register_buffer(prefix + "means", _buffer(means, torch.float64))
        self.register_buffer(prefix + "precision", _buffer(precision, torch.float64))
        self.register_buffer(prefix + "mean_terms", _buffer(mean_terms, torch.float64))

    @staticmethod
    def _distances(
        x: torch.Tensor, means: torch.Tensor, precision: torch.Tensor, mean_terms: torch.Tensor
    ) -> torch.Tensor:
        """Squared Mahalanobis distance of each row to each mean, never below 0."""
        xp = x @ precision
        own = (xp * x).sum(dim=1, keepdim=True)
        squared = own - 2.0 * (xp @ means.T) + mean_terms[None, :]
        return torch.clamp(squared, min=0.0)

    def raw(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The raw score of each image, float64 (higher: more typical)."""
        if self.score == "max_softmax":
            return torch.softmax(logits.double(), dim=1).max(dim=1).values
        if self.score == "max_logit":
            return logits.double().max(dim=1).values
        if self.score == "energy":
            return torch.logsumexp(logits.double(), dim=1)
        x = features.double()
        if self.score == "knn":
            norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
            unit = (x / torch.where(norms > 0, norms, torch.ones_like(norms))).float()
            sims = unit @ self.bank.T
            return sims.topk(self.k, dim=1).values[:, -1].double()
        xs = (x - self.shift) * self.scale
        nearest = self._distances(xs, self.means, self.precision, self.mean_terms)
        raw = -nearest.min(dim=1).values
        if self.score == "relative_mahalanobis":
            background = self._distances(
                xs, self.background_means, self.background_precision, self.background_mean_terms
            )
            raw = raw + background[:, 0]
        return raw

    def forward(self, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raw = self.raw(features, logits)
        # The count of held-out scores strictly below, as a share; NaN is below none: 0.
        below = (self.knowns[None, :] < raw[:, None]).to(torch.float64)
        return below.mean(dim=1).to(torch.float32)
