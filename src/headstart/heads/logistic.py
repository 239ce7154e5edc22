"""The linear head as a regularised multinomial logistic regression: chosen, then refitted.

This is the linear-probe protocol of the representation-learning literature, made the default
(docs/why.md, story 10): on standardised features, full-batch multinomial cross-entropy plus an
L2 penalty is solved to convergence (L-BFGS in torch, float32); the penalty's strength is picked
on a log grid by held-out log-loss, walking the grid from strong to weak regularisation with each
solve warm-started from the previous one; then the chosen setting is refitted on every labelled
image the run may use (train + val). A mini-batch fit stopped early on a tiny validation split
leaves accuracy on the table; this does not, and it is deterministic: no sampling anywhere, so
the same features give the same head, bit for bit on a CPU.

The strength is expressed as scikit-learn's ``C`` (inverse strength on the summed loss), so the
objective is ``mean cross-entropy + ||W||^2 / (2 C n)``. The bias is not penalised. A chosen ``C``
is refitted as it is, as ``LogisticRegressionCV`` refits. Scaling it to keep the penalty per image
of the fits that scored it (``C * n_sel / n``, ``n_sel`` their images) was chosen on the demo and
digits test splits; on tasks and seeds that never chose it, it raised the test log-loss on 47 fits
of 80 (BENCHMARKS.md, "The head's rules on tasks that never chose them"), and was removed.

The grid point with the lowest held-out loss is refined (for cheap fits) by a quarter step either
side and then the vertex of a parabola in ``log C`` through the best point and its neighbours: a
point of the smooth held-out curve, not of the grid's quantisation.

Past ``WALK_MAX_IMAGES`` labelled images the walk fits a stratified, seeded sample of them (the
held-out images are all scored) and its ``C`` stands in for the train split's (in scikit-learn's
form, a penalty on the summed loss, the best ``C`` of a fixed-dimension model moves little with
the number of images). On 100,000 images this choice matched the full walk's test log-loss on
three seeds (within 0.0002) in 55-60% of its time (``benchmarks/walk_sample.py``). Solves on many
images per dimension are preconditioned by the features' covariance
(:meth:`_Solver.precondition`).

Held-out score: with a validation split of its own that is large enough (see
:func:`choose_protocol`) the grid is scored on it; otherwise by stratified k-fold cross-validation
over train + val, where a class with a single labelled image always stays in training (it cannot
be held out and still be learnt). The held-out logits of the chosen setting are kept: they are the
only logits calibration may use, since no model that produced them saw those images.

Class weights (``class_weight``, :mod:`headstart.heads.weights`) weight each image's term of the
objective, ``sum_i w_i CE_i / n + ||W||^2 / (2 C n)``: scikit-learn's weighted problem, the same
minimiser. One weight vector (``"balanced"``: counted on the images of the final fit, as
``LogisticRegressionCV`` counts them once on all it is given) serves every solve, and the held-out
log-loss that chooses ``C`` is weighted the same way: ``C`` is chosen for the objective the head
is fitted on, the balanced risk. The held-out logits kept for calibration are the model's own;
calibration scores them unweighted (:mod:`headstart.heads.weights` says why).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from headstart.errors import HeadstartError
from headstart.heads.modules import fold_standardization, standardization
from headstart.heads.weights import ClassWeight, class_weights, weighted_cross_entropy
from headstart.progress import Progress
from headstart.threads import work_threads

__all__ = [
    "C_GRID",
    "CV_MAX_IMAGES",
    "LinearFit",
    "Protocol",
    "choose_protocol",
    "fit_linear",
    "score_linear",
    "standardization",
]

# Inverse L2 strengths tried, strong to weak: half a decade apart where solves are cheap, a
# decade apart (LogisticRegressionCV's default resolution) where the features are large.
C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 2, 13))
C_GRID_COARSE: tuple[float, ...] = C_GRID[::2]
# Below this many feature values (images x dimensions) in a fit, solves take milliseconds: the
# walk uses the fine grid, patience 3 and settles each point's held-out loss far more tightly.
CHEAP_VALUES = 4_000_000
# The walk along the grid stops once the held-out loss has not improved for this many steps:
# held-out loss along an L2 path is, in practice, unimodal, and weak penalties are the slow solves.
PATH_PATIENCE = 1
CHEAP_PATIENCE = 3
# A validation split smaller than this many images in all, or this many per class, is too noisy to
# pick a strength on: cross-validation over train + val is used instead ...
MIN_VAL_IMAGES = 200
MIN_VAL_PER_CLASS = 20
# ... unless train + val is larger than this, where even a small per-class count adds up to a
# validation split that ranks one hyper-parameter well, and k fits would cost k times as much.
CV_MAX_IMAGES = 20_000
# The walk that chooses C fits at most this many labelled images (a stratified, seeded sample;
# the held-out images are all scored), so choosing costs the same at 100k images as at 20k; the
# final fit alone sees every image. Past this size the held-out curve is flat near its minimum:
# BENCHMARKS.md, "The head at 100,000 images".
WALK_MAX_IMAGES = 20_000
MAX_FOLDS = 5
# L-BFGS stopping: the largest gradient entry of the mean-loss objective (scikit-learn's ``tol``
# on the same objective; of the preconditioned gradient ``P g`` where the solve is
# preconditioned, which bounds the gap to the minimum instead), and iterations per solve. Points
# of the walk only need to be ranked, not solved to the last digit: they also stop once their
# held-out loss has settled. (Solving every point of a cheap walk to convergence instead took 3x
# as long on the demo data and moved the test log-loss by 0.0002, within its noise.)
GRAD_TOL = 1e-4
# With this many training images per feature dimension or more, the solves are preconditioned
# (:meth:`_Solver.precondition`): the covariance costs one pass over at most
# PRECONDITION_MAX_ROWS rows and an eigendecomposition, repaid several times over by solves that
# take 2-5x fewer iterations (BENCHMARKS.md, "The head at 100,000 images").
PRECONDITION_MIN_ROWS_PER_DIM = 8
PRECONDITION_MAX_ROWS = 20_000
# The curvature of the cross-entropy along a feature direction of variance e is at most e / 4
# (p (1 - p) <= 1/4); the preconditioner takes that bound as its model of the Hessian.
_CURVATURE = 0.25
SETTLE_RTOL = 2e-3
SETTLE_RTOL_CHEAP = 1e-4
SETTLE_EVERY = 5
CLEAR_GAIN = 0.01
PATH_MAX_ITER = 40
FINAL_MAX_ITER = 300
DEFAULT_C = 1.0

ProtocolKind = Literal["validation", "cv", "none"]
# The walk's measured rules (the parabola vertex, the clear-gain shortcut of large fits), each
# switchable off only so that ``benchmarks/head_rules.py`` can measure what it is worth on tasks
# that never chose it.
_Rule = Literal["vertex", "clear_gain"]


@dataclass(frozen=True)
class Protocol:
    """How held-out scores are obtained: a validation split, k folds, or not at all."""

    kind: ProtocolKind
    folds: int = 0
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "validation":
            return "the validation split"
        if self.kind == "cv":
            return f"{self.folds}-fold cross-validation over train + val"
        return "nothing (no held-out images)"


@dataclass
class LinearFit:
    """The fitted linear head (taking raw features) and how its setting was chosen.

    Attributes:
        head: ``nn.Linear`` with the standardisation folded in.
        C: The chosen inverse L2 strength (of the fits that scored it).
        final_C: The strength of the final fit: ``C`` (kept in the record, where runs of earlier
            versions, which scaled it, show what they were refitted with).
        protocol: How it was chosen.
        path: One row per grid point walked: ``C``, held-out ``log_loss`` and ``accuracy``.
        val_loss, val_accuracy: The held-out figures of the chosen setting (of models that did
            not see the held-out images), or None without a protocol.
        heldout_logits, heldout_y: Those held-out logits and labels (for calibration).
        fit_counts: Images of each split in the final fit, e.g. ``{"train": 60, "val": 15}``.
        iterations: L-BFGS iterations of every solve together.
    """

    head: nn.Linear
    C: float
    protocol: Protocol
    final_C: float | None = None
    path: list[dict[str, float]] = field(default_factory=list)
    val_loss: float | None = None
    val_accuracy: float | None = None
    heldout_logits: np.ndarray | None = None
    heldout_y: np.ndarray | None = None
    fit_counts: dict[str, int] = field(default_factory=dict)
    iterations: int = 0
    class_weight: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record kept in the run's config: what was chosen, on what, and what it scored."""
        return {
            "solver": "lbfgs",
            "C": self.C,
            "final_C": self.final_C,
            "protocol": self.protocol.kind,
            "protocol_text": self.protocol.describe(),
            "protocol_reason": self.protocol.reason,
            "folds": self.protocol.folds,
            "path": self.path,
            "val_loss": self.val_loss,
            "val_accuracy": self.val_accuracy,
            "fit_images": dict(self.fit_counts),
            "iterations": self.iterations,
            "class_weight": self.class_weight,
        }


def choose_protocol(
    train_y: np.ndarray, val_y: np.ndarray | None, num_classes: int, *, cv_max: int = CV_MAX_IMAGES
) -> Protocol:
    """Score on the validation split when it can rank settings, else k-fold CV, else nothing."""
    n_val = 0 if val_y is None else len(val_y)
    labelled = np.concatenate([train_y, val_y]) if val_y is not None and n_val else train_y
    classes = max(1, len(np.unique(labelled)))
    val_ok = n_val >= MIN_VAL_IMAGES and n_val >= MIN_VAL_PER_CLASS * classes
    if val_ok or (n_val and len(labelled) > cv_max):
        return Protocol("validation", reason=f"{n_val} validation images")
    counts = np.bincount(labelled, minlength=num_classes)
    held = counts[counts >= 2]
    if len(held) < 2:
        if n_val:
            return Protocol(
                "validation",
                reason=f"too few images per class for cross-validation; the {n_val} "
                "validation images are all there is to score on",
            )
        return Protocol(
            "none",
            reason="fewer than two classes with two or more labelled images: nothing can be "
            f"held out, so C={DEFAULT_C:g} is used unchosen",
        )
    folds = int(min(MAX_FOLDS, held.min()))
    small = (
        f"{n_val} validation images (< {MIN_VAL_IMAGES} in all or < {MIN_VAL_PER_CLASS} a class)"
        if n_val
        else "no validation split"
    )
    return Protocol("cv", folds=folds, reason=small)


def score_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    *,
    seed: int = 0,
    train_extra: Sequence[np.ndarray] = (),
    protocol: Protocol | None = None,
    class_weight: ClassWeight = None,
    quiet: bool = True,
    desc: str = "scoring the linear head",
) -> LinearFit:
    """The choice of :func:`fit_linear` and its held-out figures, without the final fit.

    What ``auto`` compares options by: each gets the same protocol and the same folds. The
    result's ``head`` is not fitted (nor initialised): only the choice and its scores count.
    """
    return fit_linear(
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes,
        seed=seed,
        train_extra=train_extra,
        protocol=protocol,
        class_weight=class_weight,
        quiet=quiet,
        desc=desc,
        _final=False,
    )


def fit_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    *,
    C: float | None = None,
    refit: bool = True,
    seed: int = 0,
    train_extra: Sequence[np.ndarray] = (),
    grid: Sequence[float] | None = None,
    protocol: Protocol | None = None,
    class_weight: ClassWeight = None,
    quiet: bool = True,
    desc: str = "fitting the linear head",
    _final: bool = True,
    _without: Collection[_Rule] = (),
) -> LinearFit:
    """Choose ``C`` on held-out data (unless given), then fit on every image the run may use.

    Args:
        train_x, train_y: Training features and labels.
        val_x, val_y: Validation features and labels (may be None or empty).
        C: A fixed inverse strength; None chooses it on the grid.
        refit: Refit the chosen setting on train + val; False keeps the final fit on train only.
        seed: Seeds the fold assignment of cross-validation (the only random choice).
        train_extra: Extra training rows for the same images as ``train_x``, in the same order
            (features of augmented views): they join the fits wherever their image trains, and
            are never held out.
        grid: The inverse strengths tried, strong to weak (default: :data:`C_GRID` for small
            fits, :data:`C_GRID_COARSE` for large ones).
        protocol: Force a protocol (default: :func:`choose_protocol`).
        class_weight: Weight each image's loss by its class: ``"balanced"`` or one weight per
            class index (:mod:`headstart.heads.weights`); None: unweighted.
        quiet: Report no progress (the count of solves, their rate and the time elapsed).
        desc: What the progress line calls this fit.
        _without: Rules of the walk to switch off (``"vertex"``, ``"clear_gain"``): for
            ``benchmarks/head_rules.py`` alone, which measures each rule against the head
            without it; a run never passes it.

    The solves run with the thread count their size is fastest with (:mod:`headstart.threads`):
    one thread for all but the largest fits, since on a busy machine two threads made each of
    the walk's thousands of small products 2-50x slower. The count is restored afterwards.
    """
    n_rows = len(train_x) + (0 if val_y is None else len(val_y))
    work = n_rows * (1 + len(train_extra)) * (train_x.shape[1] if train_x.ndim == 2 else 0)
    with (
        work_threads(work * num_classes),
        Progress(None, desc, unit="solves", quiet=quiet) as progress,
    ):
        return _fit_linear(
            train_x,
            train_y,
            val_x,
            val_y,
            num_classes,
            C=C,
            refit=refit,
            seed=seed,
            train_extra=train_extra,
            grid=grid,
            protocol=protocol,
            class_weight=class_weight,
            progress=progress,
            final=_final,
            without=frozenset(_without),
        )


def _fit_linear(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray | None,
    val_y: np.ndarray | None,
    num_classes: int,
    *,
    C: float | None,
    refit: bool,
    seed: int,
    train_extra: Sequence[np.ndarray],
    grid: Sequence[float] | None,
    protocol: Protocol | None,
    class_weight: ClassWeight,
    progress: Progress,
    final: bool,
    without: frozenset[_Rule],
) -> LinearFit:
    if len(train_x) == 0:
        raise HeadstartError("No training features: the train split is empty.")
    for extra in train_extra:
        if extra.shape != train_x.shape:
            raise HeadstartError(
                f"Augmented view features have shape {extra.shape}, the plain ones "
                f"{train_x.shape}; they must be the same images in the same order."
            )
    has_val = val_x is not None and val_y is not None and len(val_y) > 0
    vx = np.asarray(val_x, np.float32) if has_val else np.zeros((0, train_x.shape[1]), np.float32)
    vy = np.asarray(val_y, np.int64) if has_val else np.zeros(0, np.int64)
    ty = np.asarray(train_y, np.int64)
    proto = protocol or choose_protocol(ty, vy if has_val else None, num_classes)
    final_val = refit and has_val
    # Standardise with the statistics of the images the final fit uses (labels play no part).
    # Train and val rows share one buffer, standardised in place: the features are held twice
    # at most (the caller's array and this), never concatenated again, at any size.
    nt = len(train_x)
    rows_all = _rows(train_x, vx)
    shift, scale = standardization(rows_all if final_val else rows_all[:nt])
    rows_all.sub_(shift).mul_(scale)
    xs_train, xs_val = rows_all[:nt], rows_all[nt:]
    extras = [_standardize(e, shift, scale) for e in train_extra]
    yt, yv = torch.from_numpy(ty), torch.from_numpy(vy)
    d = xs_train.shape[1]
    # The rows the walk fits: all of them, or a stratified sample of at most WALK_MAX_IMAGES. The
    # grid and patience follow the whole fit's size: the final fit is the one on every image.
    labelled = ty if proto.kind == "validation" else np.concatenate([ty, vy])
    walk = _sample(labelled, WALK_MAX_IMAGES, seed)
    cheap = (len(ty) + len(vy)) * (1 + len(extras)) * d <= CHEAP_VALUES
    weights = class_weights(
        class_weight, np.concatenate([ty, vy]) if final_val else ty, num_classes
    )
    solver = _Solver(d, num_classes, settle=not cheap, class_weight=weights, progress=progress)
    solver.vertex = "vertex" not in without
    if "clear_gain" in without:
        solver.clear = None
    if len(ty) >= PRECONDITION_MIN_ROWS_PER_DIM * d:
        solver.precondition(xs_train)
    grid = grid if grid is not None else (C_GRID if cheap else C_GRID_COARSE)
    patience = CHEAP_PATIENCE if cheap else PATH_PATIENCE

    # The head is built once its weights are known: skip_init draws nothing from torch's RNG.
    result = LinearFit(
        head=nn.utils.skip_init(nn.Linear, d, num_classes),
        C=DEFAULT_C if C is None else C,
        protocol=proto,
        class_weight=None if weights is None else weights.tolist(),
    )
    state: tuple[torch.Tensor, torch.Tensor] | None = None
    if proto.kind == "validation" and has_val:
        if walk is None:
            fit_rows = torch.cat([xs_train, *extras]) if extras else xs_train
            fit_y = yt.repeat(1 + len(extras))
        else:
            picked = torch.from_numpy(walk)
            fit_rows = torch.cat([xs_train[picked], *(e[picked] for e in extras)])
            fit_y = yt[picked].repeat(1 + len(extras))
        chosen, state, logits = _walk_validation(
            solver, fit_rows, fit_y, xs_val, yv, grid if C is None else [C], patience, result
        )
        # A sample stands in for the train split: its C is taken as the train split's.
        result.C = chosen
        result.heldout_logits, result.heldout_y = logits.numpy(), vy
    elif proto.kind == "cv":
        all_x = rows_all
        all_y = torch.cat([yt, yv]) if has_val else yt
        cv_extras, cv_train = extras, len(ty)
        if walk is not None:  # sorted: the sampled train rows come first, as in rows_all
            picked = torch.from_numpy(walk)
            all_x, all_y = all_x[picked], all_y[picked]
            sampled_train = picked[picked < len(ty)]
            cv_extras, cv_train = [e[sampled_train] for e in extras], len(sampled_train)
        chosen, logits, heldout = _walk_cv(
            solver,
            all_x,
            all_y,
            cv_extras,
            cv_train,
            proto.folds,
            seed,
            grid if C is None else [C],
            patience,
            result,
        )
        result.C = chosen
        result.heldout_logits, result.heldout_y = logits.numpy(), all_y[heldout].numpy()

    result.iterations = solver.iterations
    if not final:
        return result
    if extras:
        rows = [xs_train, *extras] + ([xs_val] if final_val else [])
        x_fit = torch.cat(rows)
    else:
        x_fit = rows_all if final_val else xs_train  # views of the buffer: no copy
    labels = [yt] * (1 + len(extras)) + ([yv] if final_val else [])
    y_fit = torch.cat(labels)
    result.final_C = result.C
    weight, bias, _ = solver.solve(x_fit, y_fit, result.final_C, state, FINAL_MAX_ITER)
    result.iterations = solver.iterations
    result.fit_counts = {"train": len(ty), **({"val": len(vy)} if final_val else {})}
    if extras:
        result.fit_counts["augmented_views"] = len(extras) * len(ty)
    head = result.head
    with torch.no_grad():
        head.weight.copy_(weight.T)
        head.bias.copy_(bias)
    fold_standardization(head, shift, scale)
    result.head = head.eval()
    return result


def _sample(y: np.ndarray, cap: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a stratified, seeded sample of at most about ``cap`` of ``y``, or None
    when ``y`` is no larger than ``cap``. Every class keeps its share, and at least two images
    (or all it has), so folds and small classes are still represented."""
    n = len(y)
    if n <= cap:
        return None
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    by_class = y[order]
    picked = []
    for label in np.unique(y):
        members = order[by_class == label]
        take = max(min(2, len(members)), round(len(members) * cap / n))
        picked.append(members[:take])
    return np.sort(np.concatenate(picked))


def _rows(train_x: np.ndarray, val_x: np.ndarray) -> torch.Tensor:
    """Train then val rows in one new float32 tensor (the caller's arrays are never changed)."""
    out = torch.empty((len(train_x) + len(val_x), train_x.shape[1]), dtype=torch.float32)
    out[: len(train_x)] = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    out[len(train_x) :] = torch.from_numpy(np.ascontiguousarray(val_x, dtype=np.float32))
    return out


def _standardize(x: np.ndarray, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - shift) * scale


class _Solver:
    """Full-batch L-BFGS on mean (class-weighted) cross-entropy + ||W||^2 / (2 C n),
    warm-startable."""

    def __init__(
        self,
        dim: int,
        num_classes: int,
        *,
        settle: bool = True,
        class_weight: torch.Tensor | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.dim, self.num_classes = dim, num_classes
        self.class_weight = class_weight
        self.progress = progress
        self.settle = settle
        # What the held-out loss of a settled solve is known to: a smaller gain is not one.
        self.margin = SETTLE_RTOL if settle else SETTLE_RTOL_CHEAP
        # A settled gain this large is taken without a second, converged solve (large fits
        # only: on the demo data's small cross-validated walks it cost 0.001 of test log-loss).
        self.clear = CLEAR_GAIN if settle else None
        # The walk ends on the vertex of the parabola through its best point and neighbours.
        self.vertex = True
        self.iterations = 0
        self.evaluations = 0
        self._basis: tuple[torch.Tensor, torch.Tensor] | None = None
        self._scales: dict[tuple[float, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def precondition(self, x: torch.Tensor) -> None:
        """Solve in coordinates where the objective is round: ``W = P V``, ``P = (S/4 + lam)^-1/2``.

        ``S`` is the covariance of the (standardised) features, ``lam = 1 / (C n)`` the penalty's
        curvature: ``S/4 + lam`` bounds the Hessian of each class's weights, so in ``V`` every
        direction has about unit curvature. The features of a pretrained backbone are strongly
        correlated; without this, weak penalties on many images took L-BFGS 400-600 iterations
        (at 90,000 images, 20 s of a warm run). The objective, and so the solution, is the same;
        L-BFGS's gradient test then applies to ``P g``, which bounds the objective's gap to its
        minimum (``|P g|^2 / 2``) rather than its steepest slope.
        """
        step = max(1, -(-len(x) // PRECONDITION_MAX_ROWS))
        rows = x[::step].double()
        cov = rows.T @ rows / max(1, len(rows))
        eigenvalues, vectors = torch.linalg.eigh(cov)
        self._basis = (eigenvalues.clamp_min(0.0), vectors)

    def _scale(self, C: float, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``P`` and its inverse for a solve at ``C`` on ``n`` images (None without a
        preconditioner): both from the eigendecomposition, so no solve is ever needed."""
        if self._basis is None:
            return None
        key = (C, n)
        if key not in self._scales:
            eigenvalues, vectors = self._basis
            lam = 1.0 / (C * max(1, n))
            root = torch.sqrt(_CURVATURE * eigenvalues + lam)
            self._scales[key] = (
                ((vectors / root) @ vectors.T).float(),
                ((vectors * root) @ vectors.T).float(),
            )
        return self._scales[key]

    def point(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        C: float,
        start: tuple[torch.Tensor, torch.Tensor] | None,
        heldout: tuple[torch.Tensor, torch.Tensor],
        *,
        exact: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A point of the walk: solved until its ``heldout`` loss settles, or to convergence."""
        if exact:
            weight, bias, _ = self.solve(x, y, C, start, FINAL_MAX_ITER)
        else:
            weight, bias, _ = self.solve(x, y, C, start, PATH_MAX_ITER, heldout)
        return weight, bias

    def solve(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        C: float,
        start: tuple[torch.Tensor, torch.Tensor] | None,
        max_iter: int,
        heldout: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Weights ``[dim, classes]`` and bias minimising the objective, from ``start`` or 0.

        With ``heldout`` (features, labels), the solve also stops once the held-out loss has
        settled (changes by less than ``SETTLE_RTOL`` over ``SETTLE_EVERY`` iterations): a point of
        the walk is there to be ranked, and its last digits do not change the ranking.
        """
        rtol = SETTLE_RTOL
        if not self.settle:  # cheap solves: settle far more tightly, allow far more iterations
            rtol = SETTLE_RTOL_CHEAP
            max_iter = max(max_iter, FINAL_MAX_ITER)
        scales = self._scale(C, len(y))
        P = None if scales is None else scales[0]
        sample_weight = None if self.class_weight is None else self.class_weight[y].unsqueeze(1)
        if start is None:
            counts = torch.bincount(
                y, None if sample_weight is None else sample_weight[:, 0], self.num_classes
            ).float()
            counts += 1.0
            weight = torch.zeros(self.dim, self.num_classes)
            bias = torch.log(counts / counts.sum())
        elif scales is None:
            weight, bias = start[0].clone(), start[1].clone()
        else:  # into the solve's coordinates: P^-1 W
            weight = scales[1] @ start[0]
            bias = start[1].clone()
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        penalty = 1.0 / (2.0 * C * max(1, len(y)))
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1,
            max_iter=max_iter if heldout is None else SETTLE_EVERY,
            history_size=10,
            tolerance_grad=GRAD_TOL,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        n = max(1, len(y))
        target = y.unsqueeze(1)
        minus_one = torch.full(target.shape, -1.0)
        # torch's L-BFGS evaluates the objective again at the start of every ``step`` call, at
        # the point its last line search already evaluated; a settled solve calls ``step`` every
        # SETTLE_EVERY iterations. That evaluation is answered from ``memo``: 48 of the 625
        # evaluations of a 3,500-image walk, with the same iterates bit for bit.
        memo: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

        def closure() -> torch.Tensor:
            # The gradient by hand, not autograd: softmax - one-hot is all it takes, and both
            # products keep the features as the long side (x @ W^T-contiguous, G^T @ x), which
            # the CPU's BLAS runs 1.5-2x faster here than the transposes autograd would use.
            with torch.no_grad():
                if memo and torch.equal(memo[0][0], weight) and torch.equal(memo[0][1], bias):
                    _, _, loss, weight.grad, bias.grad = memo[0]
                    return loss
                self.evaluations += 1
                if self.progress is not None:  # a solve may take minutes: keep the line alive
                    self.progress.update(0)
                w = weight.detach() if P is None else P @ weight.detach()
                log_p = torch.log_softmax(F.linear(x, w.T.contiguous(), bias.detach()), 1)
                picked = log_p.gather(1, target)
                if sample_weight is None:
                    loss = -picked.mean() + penalty * w.pow(2).sum()
                else:
                    loss = -(picked * sample_weight).sum() / n + penalty * w.pow(2).sum()
                residual = log_p.exp_().scatter_add_(1, target, minus_one)
                if sample_weight is not None:
                    residual *= sample_weight
                residual /= n
                grad = torch.mm(residual.T, x).T.contiguous().add_(w, alpha=2.0 * penalty)
                weight.grad = grad if P is None else P @ grad  # P is symmetric
                bias.grad = residual.sum(0)
                memo[:] = [(weight.clone(), bias.clone(), loss, weight.grad, bias.grad)]
            return loss

        def real() -> torch.Tensor:
            """The weights in the features' own coordinates."""
            return weight.detach() if P is None else P @ weight.detach()

        def iterations() -> int:
            return int(optimizer.state[weight].get("n_iter", 0))

        with torch.enable_grad():
            optimizer.step(closure)
            if heldout is not None:
                last = math.inf
                while iterations() < max_iter:
                    with torch.no_grad():
                        logits = heldout[0] @ real() + bias
                        loss = float(weighted_cross_entropy(logits, heldout[1], self.class_weight))
                    if abs(last - loss) <= rtol * abs(loss):
                        break
                    last, before = loss, iterations()
                    optimizer.step(closure)
                    if iterations() - before < SETTLE_EVERY:
                        break  # converged within the chunk
        n_iter = iterations()
        self.iterations += n_iter
        if self.progress is not None:
            self.progress.update(1)
        return real(), bias.detach(), n_iter


def _score(
    logits: torch.Tensor, y: torch.Tensor, class_weight: torch.Tensor | None
) -> tuple[float, float]:
    loss = float(weighted_cross_entropy(logits, y, class_weight))
    accuracy = float((logits.argmax(1) == y).float().mean())
    return loss, accuracy


Payload = Any
Evaluate = Callable[[float, Payload | None, bool], tuple[float, float, Payload]]


def _walk(
    grid: Sequence[float],
    evaluate: Evaluate,
    patience: int,
    result: LinearFit,
    margin: float = 0.0,
    clear: float | None = None,
    vertex: bool = True,
) -> tuple[float, Payload]:
    """Walk ``grid`` strong to weak until the held-out loss stops improving (then, for cheap
    fits, refine: a quarter step either side of the best point, then the vertex of a parabola in
    ``log C`` through the best point and its two neighbours).

    ``evaluate(C, start, exact)`` solves at ``C`` warm-started from ``start`` (the payload of an
    earlier point, or None), to convergence when ``exact``, and returns the held-out log-loss,
    accuracy and its payload. Returns the best C and its payload; every point tried is recorded
    in ``result.path``, sorted by C.

    Points are solved until their held-out loss settles, which is enough to rank them but not to
    trust them: a warm-started solve stopped early stays near the stronger point it started from,
    and its loss crept down along the weak end of the grid (on 3,500 images a walk went on to
    C = 100, where the converged refit's test log-loss was 0.92 against 0.66). So a point that
    beats the best is continued to convergence and must beat it again, by more than ``margin``
    (relative, the settle tolerance): the best point's figures are always those of a solved
    model. On large fits (``clear`` given) that second solve is skipped where the settled point
    beats the best by more than ``clear`` (relative): along the steep strong end of the grid every
    point does, and solving each to convergence there cost half of a 90,000-image walk. Whichever
    point ends best is solved to convergence all the same. ``vertex`` False skips the parabola
    vertex (to measure what it is worth).
    """
    tried: dict[float, tuple[float, float, Payload]] = {}
    solved: set[float] = set()
    best_c: float | None = None

    def consider(C: float, start: Payload | None) -> bool:
        """Solve at C (settled); if it beats the best, continue it to convergence and ask again
        (unless it beats the best by more than ``clear``: creep is never that large)."""
        tried[C] = evaluate(C, start, False)
        if best_c is not None and not tried[C][0] < tried[best_c][0] * (1 - margin):
            return False
        if best_c is not None and clear is not None:
            if tried[C][0] < tried[best_c][0] * (1 - clear):
                return True
        tried[C] = evaluate(C, tried[C][2], True)  # continued from where it settled
        solved.add(C)
        return best_c is None or tried[C][0] < tried[best_c][0] * (1 - margin)

    previous: Payload | None = None
    waited = 0
    for C in grid:
        improved = consider(float(C), previous)
        previous = tried[float(C)][2]
        if improved:
            best_c, waited = float(C), 0
        else:
            waited += 1
            if waited >= patience:
                break
    assert best_c is not None  # the grid is never empty
    if patience > PATH_PATIENCE and len(grid) > 1:
        # Cheap fits: a quarter step either side of the best point, warm-started from it.
        step = (max(grid) / min(grid)) ** (1 / (2 * (len(grid) - 1)))
        center = best_c
        for C in (center / step, center * step):
            if C not in tried and consider(C, tried[center][2]):
                best_c = C
    if vertex and len(grid) > 1:
        top = _parabola_vertex({c: v[0] for c, v in tried.items()}, best_c)
        if top is not None and top not in tried and consider(top, tried[best_c][2]):
            best_c = top
    if best_c not in solved:  # taken on a clear gain: its figures must be a solved model's too
        tried[best_c] = evaluate(best_c, tried[best_c][2], True)
    for C in sorted(tried):
        loss, accuracy, _ = tried[C]
        result.path.append({"C": C, "log_loss": loss, "accuracy": accuracy})
    loss, accuracy, payload = tried[best_c]
    if not math.isfinite(loss):
        raise HeadstartError("Choosing the linear head's L2 strength produced no finite loss.")
    result.val_loss, result.val_accuracy = loss, accuracy
    return best_c, payload


def _parabola_vertex(losses: dict[float, float], best: float) -> float | None:
    """The minimum of the parabola in ``log C`` through ``best`` and its neighbours in ``losses``
    (None at an end of the tried range, or where the three points do not curve upwards)."""
    cs = sorted(losses)
    i = cs.index(best)
    if i == 0 or i == len(cs) - 1:
        return None
    x = np.log(cs[i - 1 : i + 2])
    y = np.array([losses[c] for c in cs[i - 1 : i + 2]])
    a, b, _ = np.polyfit(x, y, 2)
    if not (a > 0 and np.isfinite(a) and np.isfinite(b)):
        return None
    vertex = float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))
    # A vertex within 1% of a tried point adds nothing but a solve.
    return None if min(abs(vertex / c - 1) for c in cs) < 0.01 else vertex


def _walk_validation(
    solver: _Solver,
    x: torch.Tensor,
    y: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    grid: Sequence[float],
    patience: int,
    result: LinearFit,
) -> tuple[float, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Choose C on the validation split; the best C, its solution and its val logits."""

    def evaluate(C: float, start: Payload | None, exact: bool) -> tuple[float, float, Payload]:
        warm = None if start is None else start[0]
        weight, bias = solver.point(x, y, C, warm, (xv, yv), exact=exact)
        logits = xv @ weight + bias
        loss, accuracy = _score(logits, yv, solver.class_weight)
        return loss, accuracy, ((weight, bias), logits)

    C, (state, logits) = _walk(
        grid, evaluate, patience, result, solver.margin, solver.clear, solver.vertex
    )
    return C, state, logits


def _folds(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out index sets: stratified, seeded; singleton classes are never held out.

    Each class's images are shuffled with ``seed`` and dealt to the folds in turn (as
    scikit-learn's ``StratifiedKFold`` does, without importing it into every run).
    """
    counts = np.bincount(y)
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(y), -1)
    offset = 0
    for label in np.flatnonzero(counts >= 2):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return [np.flatnonzero(fold_of == k) for k in range(folds)]


def _walk_cv(
    solver: _Solver,
    x: torch.Tensor,
    y: torch.Tensor,
    extras: Sequence[torch.Tensor],
    n_train: int,
    folds: int,
    seed: int,
    grid: Sequence[float],
    patience: int,
    result: LinearFit,
) -> tuple[float, torch.Tensor, np.ndarray]:
    """Choose C by k-fold CV; the best C, its out-of-fold logits and the rows they belong to.

    Folds mix train and val images freely (both are labelled, neither is test); augmented views
    exist for training images only (the first ``n_train`` rows) and join a fold's fit with them.
    """
    held_sets = _folds(y.numpy(), folds, seed)
    n = len(y)
    fold_data = []
    for held in held_sets:
        keep = np.ones(n, bool)
        keep[held] = False
        rows = np.flatnonzero(keep)
        view_rows = rows[rows < n_train]
        parts = [x[rows], *(e[view_rows] for e in extras)]
        labels = [y[rows], *(y[view_rows] for _ in extras)]
        fold_data.append((torch.cat(parts), torch.cat(labels), held))
    heldout = np.concatenate(held_sets)

    def evaluate(C: float, start: Payload | None, exact: bool) -> tuple[float, float, Payload]:
        states, pieces = [], []
        for i, (fx, fy, held) in enumerate(fold_data):
            warm = None if start is None else start[0][i]
            weight, bias = solver.point(fx, fy, C, warm, (x[held], y[held]), exact=exact)
            states.append((weight, bias))
            pieces.append(x[held] @ weight + bias)
        logits = torch.cat(pieces)
        loss, accuracy = _score(logits, y[heldout], solver.class_weight)
        return loss, accuracy, (states, logits)

    C, (_, logits) = _walk(
        grid, evaluate, patience, result, solver.margin, solver.clear, solver.vertex
    )
    return C, logits, heldout
