"""The end-to-end training loop shared by ``augment``, ``finetune`` and ``scratch``.

AdamW with per-group learning rates, a warm-up + cosine or one-cycle schedule computed from the
step count, label smoothing, gradient clipping, mixed precision on CUDA (bf16 where supported,
else fp16 with a GradScaler), early stopping on validation loss keeping the best weights, and a
checkpoint at the end of every epoch (:mod:`headstart.checkpoint`).

Determinism is by construction rather than by carrying RNG streams along: epoch ``e`` reseeds
torch's generator from (seed, e) (dropout), the data order and every augmentation are seeded by
(seed, e[, sample]) (:mod:`._data`), and the schedule is a function of the step. A run resumed
from the checkpoint of epoch ``e`` therefore continues exactly as the uninterrupted run did, and
on a CPU ends with the same weights, bit for bit. The loop runs inside forked RNG state, so the
caller's random streams are untouched.

Under torchrun (:mod:`headstart.distributed`) the network is wrapped in DistributedDataParallel
and each global batch of ``batch_size`` images is split across the ranks
(:class:`~._data.TrainImages`). The loss of a step is the sum over every rank's images divided by
the global count, so the gradients DDP averages are those of the whole batch, however unevenly it
splits (unreadable images, a short last batch): the run follows the one-process run to float
rounding. Dropout draws from a per-rank seed derived from (seed, epoch, rank). BatchNorm layers
in training mode (``--bn train``, ``scratch``) normalise with each rank's share of the batch, as
DDP does by default, so those runs do not match one process exactly. Validation is sharded and
summed. Rank 0 alone reads and writes checkpoints; the others receive what it read.

Class weights (``class_weight``, :mod:`headstart.heads.weights`) weight each image's term of the
training loss and of the validation loss that chooses the epoch. A weighted loss rather than
balanced sampling: sampling the small classes more often would show their few images many times
an epoch (memorised, however augmented), change what an epoch is (and the cost estimate, the
schedule and the checkpoints' resumable order with it), and mean something other than the
weighted loss the heads on cached features minimise; weights keep one objective for every
strategy and leave the data order, and so determinism and resuming, as they are.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from headstart import distributed
from headstart._text import format_duration
from headstart.augment import sample_seed
from headstart.checkpoint import (
    CHECKPOINT_INDEX,
    Checkpoint,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from headstart.errors import HeadstartError, InvalidParameterError, RunFolderError
from headstart.features.batches import iter_batches
from headstart.heads.training import lr_factor
from headstart.heads.weights import correct, weighted_cross_entropy
from headstart.preprocess import Preprocess
from headstart.progress import Progress
from headstart.strategies._data import TrainImages
from headstart.strategies._network import Network
from headstart.strategies._settings import TrainSettings

__all__ = [
    "LoopOutcome",
    "LoopStart",
    "Validator",
    "clear_checkpoint",
    "clone_state",
    "features_validator",
    "images_validator",
    "resolve_amp",
    "train_network",
]

Validator = Callable[[Network], tuple[float, float]]


@dataclass
class LoopStart:
    """Where the loop starts: earlier history (e.g. the head phase) and a best-so-far."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None


@dataclass
class LoopOutcome:
    """What a run of the loop gave; ``fingerprint`` is the one its checkpoints carry: the run's
    own, or an older headstart's when it resumed a checkpoint of one (kept for its later saves,
    so that the run stays what it began as over any number of resumes)."""

    history: list[dict[str, Any]]
    best_epoch: int
    monitor: str
    interrupted: bool = False
    epoch_seconds: list[float] = field(default_factory=list)
    fingerprint: str = ""


def resolve_amp(amp: bool | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where CUDA supports it, else fp16; None for full precision.

    Raises:
        HeadstartError: Mixed precision asked for off CUDA, where it is slower or unsupported.
    """
    if device.type != "cuda":
        if amp:
            raise InvalidParameterError(
                f"Mixed precision (amp) runs on CUDA only; this run uses {device.type}. "
                "Leave amp unset."
            )
        return None
    if amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def clear_checkpoint(folder: Path) -> None:
    """Remove a previous run's checkpoint files from ``folder`` (a fresh, non-resumed run), and
    those of its stages in sub-folders (a refit's), which a resumed run would otherwise read."""
    if not folder.is_dir():
        return
    for sub in folder.iterdir():
        if sub.is_dir():
            clear_checkpoint(sub)
    for path in [
        folder / CHECKPOINT_INDEX,
        *folder.glob("state-*.safetensors"),
        *folder.glob("best-*.safetensors"),
    ]:
        path.unlink(missing_ok=True)


@contextmanager
def _forked_rngs(device: torch.device) -> Iterator[None]:
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _channels_last(device: torch.device) -> bool:
    return device.type != "mps"


def features_validator(
    x: np.ndarray, y: np.ndarray, device: torch.device, weights: torch.Tensor | None = None
) -> Validator:
    """Validation on cached features: for a frozen backbone they are what it would compute.

    ``weights``: class weights of the loss (None: unweighted), as in training.
    """
    xv = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
    yv = torch.from_numpy(np.asarray(y, np.int64)).to(device)

    def validate(network: Network) -> tuple[float, float]:
        network.eval()
        with torch.inference_mode():
            logits = network.head(xv).float()
            return float(weighted_cross_entropy(logits, yv, weights)), float(
                correct(logits, yv) / max(1, len(yv))
            )

    return validate


def images_validator(
    paths: Sequence[Path],
    labels: Sequence[int],
    preprocess: Preprocess,
    *,
    batch_size: int,
    num_workers: int | None,
    device: torch.device,
    amp: torch.dtype | None,
    weights: torch.Tensor | None = None,
) -> Validator:
    """Validation through the whole network, on plain (never augmented) images.

    ``weights``: class weights of the loss (None: unweighted), as in training.
    """
    label_of = list(labels)

    # Under torchrun each rank validates its shard of whole batches; the sums are added up.
    mine = distributed.shard(range(len(label_of)), batch_size)
    my_paths = [paths[i] for i in mine]

    def validate(network: Network) -> tuple[float, float]:
        network.eval()
        total_loss, right, n = 0.0, 0.0, 0.0
        loader = iter_batches(
            my_paths,
            preprocess,
            draft_size=preprocess.draft_size,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        with torch.inference_mode():
            for batch, indices, _ in loader:
                if batch is None:
                    continue
                x = _to_device(batch, device)
                y = torch.tensor([label_of[mine[i]] for i in indices], device=device)
                with torch.autocast(
                    device.type, dtype=amp or torch.float32, enabled=amp is not None
                ):
                    logits = network(x)
                logits = logits.float()
                total_loss += float(weighted_cross_entropy(logits, y, weights, reduction="sum"))
                right += float(correct(logits, y))
                n += len(y)
        total_loss, right, n = distributed.sum_across([total_loss, right, n])
        if n == 0:
            raise HeadstartError("No validation image could be read.")
        return total_loss / n, right / n

    return validate


def _to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = batch.to(device, non_blocking=True)
    if _channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def clone_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train_network(
    network: Network,
    groups: list[dict[str, Any]],
    train: TrainImages,
    validate: Validator | None,
    settings: TrainSettings,
    *,
    device: torch.device,
    label: str,
    fingerprint: str,
    earlier_fingerprints: Sequence[str] = (),
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    start: LoopStart | None = None,
    quiet: bool = False,
    stream: IO[str] | None = None,
    class_weight: torch.Tensor | None = None,
    keep_last: bool = False,
) -> LoopOutcome:
    """Train ``network`` end to end; on return it holds the best weights.

    Args:
        network: Backbone + head with its trainable parts set.
        groups: Optimizer parameter groups, each with an ``lr_scale``.
        train: The training images (augmented as configured).
        validate: Gives (loss, accuracy) on the validation data; None monitors training loss.
        settings: epochs, lr, schedule, patience... (:class:`TrainSettings`).
        device: Where to train.
        label: Names the phase in progress output and history ("augment", "finetune"...).
        fingerprint: Identifies settings and data; resuming a checkpoint with another is refused.
        earlier_fingerprints: What an older headstart wrote for the same settings and data
            (:meth:`._common.Job.earlier_fingerprints`): its checkpoints resume too.
        checkpoint_dir: Write a checkpoint there after every epoch (None: no checkpoints).
        resume: Continue from the checkpoint in ``checkpoint_dir`` if there is one.
        start: Earlier history and a best-so-far to beat (the head phase of fine-tuning).
        quiet: No progress output.
        stream: Where the per-epoch lines go (stderr by default).
        class_weight: One loss weight per class index (None: unweighted).
        keep_last: Run every epoch and keep the last weights, with no early stopping: a refit
            for a number of epochs already chosen (:mod:`._refit`). Ctrl-C then re-raises, as
            no weights of this run are worth keeping before its last epoch.

    Returns:
        History (one row per epoch, after ``start.history``), best epoch, monitor, and whether
        Ctrl-C ended training early (the best weights so far are loaded either way).

    Raises:
        RunFolderError: The checkpoint is damaged or belongs to other settings or data.
        KeyboardInterrupt: Ctrl-C before any weights worth keeping existed.
    """
    with _forked_rngs(device):
        return _train(
            network,
            groups,
            train,
            validate,
            settings,
            device=device,
            label=label,
            fingerprint=fingerprint,
            earlier_fingerprints=earlier_fingerprints,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            start=start or LoopStart(),
            quiet=quiet,
            stream=stream if stream is not None else sys.stderr,
            class_weight=class_weight,
            keep_last=keep_last,
        )


def _train(
    network: Network,
    groups: list[dict[str, Any]],
    train: TrainImages,
    validate: Validator | None,
    settings: TrainSettings,
    *,
    device: torch.device,
    label: str,
    fingerprint: str,
    earlier_fingerprints: Sequence[str],
    checkpoint_dir: Path | None,
    resume: bool,
    start: LoopStart,
    quiet: bool,
    stream: IO[str],
    class_weight: torch.Tensor | None = None,
    keep_last: bool = False,
) -> LoopOutcome:
    network.to(device)
    if _channels_last(device):
        network.to(memory_format=torch.channels_last)
    world = distributed.world()
    model: nn.Module = network
    if world.size > 1:
        model = DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    amp = resolve_amp(settings.amp, device)
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    trainable = [p for g in groups for p in g["params"]]
    steps_per_epoch = max(1, train.num_batches)
    total_steps = settings.epochs * steps_per_epoch
    warmup = round(settings.warmup_epochs * steps_per_epoch)
    monitor = "val_loss" if validate is not None else "loss"

    history = list(start.history)
    best_loss, best_epoch = start.best_loss, start.best_epoch
    best_state = start.best_state
    best_dirty = best_state is not None
    waited, step, first_epoch = 0, 0, 1
    # Epochs are numbered once for the whole run, 1-based across its stages: the head phase's
    # epochs come first, so this loop's first epoch is ``before + 1`` of ``before + epochs``, in
    # progress, history, checkpoint names and best_epoch alike.
    before = len(start.history)
    last = before + settings.epochs
    seconds: list[float] = []
    if checkpoint_dir is not None and not resume and world.main:
        clear_checkpoint(checkpoint_dir)
    if checkpoint_dir is not None and resume:
        ckpt = distributed.run_on_main(
            lambda: _load_checkpoint(checkpoint_dir, fingerprint, earlier_fingerprints)
        )
        if ckpt is not None:
            fingerprint = ckpt.fingerprint  # an older headstart's, where it wrote the checkpoint
            history = ckpt.history
            best_loss, best_epoch, waited = ckpt.best_loss, ckpt.best_epoch, ckpt.waited
            best_state, best_dirty = ckpt.best_model, False
            seconds = list(ckpt.extra.get("epoch_seconds", []))
            if ckpt.finished:
                if best_state is not None:
                    network.load_state_dict(best_state)
                network.eval()
                return LoopOutcome(history, best_epoch, monitor, False, seconds, fingerprint)
            network.load_state_dict(ckpt.model)
            if ckpt.optimizer is not None:
                optimizer.load_state_dict(ckpt.optimizer)
            if scaler is not None and ckpt.scaler:
                scaler.load_state_dict(ckpt.scaler)
            if ckpt.rng is not None:
                restore_rng(ckpt.rng)
            # The epochs this loop completed, from the history (run numbering), so that
            # checkpoints written when ``ckpt.epoch`` counted this loop's epochs alone resume too.
            step, first_epoch = ckpt.step, len(history) - before + 1
            if not quiet:
                print(f"{label}: resuming after epoch {len(history)}", file=stream, flush=True)
    if not quiet and start.history and first_epoch == 1:  # the head phase's last epoch
        _report(stream, start.history[-1].get("phase", "head"), before, last, start.history[-1], [])

    def save(epoch: int, *, finished: bool = False) -> None:
        nonlocal best_dirty
        if checkpoint_dir is None or not world.main:
            return
        save_checkpoint(
            checkpoint_dir,
            Checkpoint(
                epoch=epoch,
                step=step,
                history=history,
                best_loss=best_loss,
                best_epoch=best_epoch,
                waited=waited,
                fingerprint=fingerprint,
                finished=finished,
                model={} if finished else network.state_dict(),
                optimizer=None if finished else optimizer.state_dict(),
                scaler=scaler.state_dict() if scaler is not None and not finished else None,
                rng=None if finished else capture_rng(),
                best_model=best_state if best_dirty else None,
                extra={"epoch_seconds": seconds},
            ),
        )
        best_dirty = False

    interrupted = False
    epoch = first_epoch - 1
    try:
        for epoch in range(first_epoch, settings.epochs + 1):
            if waited >= settings.patience and not keep_last:
                break
            began = time.monotonic()
            rank = () if world.size == 1 else ("rank", world.rank)
            torch.manual_seed(sample_seed("epoch", settings.seed, epoch, *rank))
            network.train()
            total_loss, right, n = 0.0, 0.0, 0.0
            batch_n: float
            desc = f"{label} epoch {before + epoch}/{last}"
            with Progress(len(train), desc, unit="img", quiet=quiet) as progress:
                for images, labels in train.epoch(epoch):
                    factor = lr_factor(settings.schedule, step, total_steps, warmup)
                    for group in optimizer.param_groups:
                        group["lr"] = settings.lr * group["lr_scale"] * factor
                    if images is None:  # under torchrun: none of this rank's share was readable
                        images = torch.zeros(0, 3, *train.input_size)
                    x, y = _to_device(images, device), labels.to(device)
                    with torch.autocast(
                        device.type, dtype=amp or torch.float32, enabled=amp is not None
                    ):
                        logits = model(x)
                    if world.size == 1:
                        loss = weighted_cross_entropy(
                            logits.float(),
                            y,
                            class_weight,
                            label_smoothing=settings.label_smoothing,
                        )
                        batch_loss, batch_n = float(loss.detach()) * len(y), len(y)
                    else:
                        summed = weighted_cross_entropy(
                            logits.float(),
                            y,
                            class_weight,
                            label_smoothing=settings.label_smoothing,
                            reduction="sum",
                        )
                        (batch_n,) = distributed.sum_across([len(y)])
                        if batch_n == 0:
                            raise HeadstartError("No image of a training batch could be read.")
                        # DDP averages over ranks: scaling by size / n gives the global mean.
                        loss = summed * (world.size / batch_n)
                        batch_loss = float(summed.detach())
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        if settings.grad_clip is not None:
                            scaler.unscale_(optimizer)
                            nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        if settings.grad_clip is not None:
                            nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
                        optimizer.step()
                    step += 1
                    total_loss += batch_loss
                    right += float(correct(logits.detach(), y))
                    n += len(y)
                    progress.update(int(batch_n))
            if world.size > 1:
                total_loss, right, n = distributed.sum_across([total_loss, right, n])
            if n == 0:
                raise HeadstartError("No training image could be read in this epoch.")
            train_loss, train_acc = total_loss / n, right / n
            val_loss, val_acc = validate(network) if validate else (train_loss, train_acc)
            history.append(
                {
                    "epoch": len(history) + 1,
                    "loss": train_loss,
                    "accuracy": train_acc,
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "lr": settings.lr * factor,
                    "phase": label,
                }
            )
            if keep_last:  # the weights kept are the last ones, in the network itself
                best_loss, best_epoch = val_loss, len(history)
            elif val_loss < best_loss:
                best_loss, best_epoch, waited = val_loss, len(history), 0
                best_state, best_dirty = clone_state(network), True
            else:
                waited += 1
            seconds.append(time.monotonic() - began)
            save(len(history))
            if not quiet:
                shown = history[-1] if validate else {**history[-1], "val_loss": None}
                _report(stream, label, len(history), last, shown, seconds)
    except KeyboardInterrupt:
        if best_state is None:
            raise
        interrupted = True
        if not quiet:
            print(
                f"{label}: interrupted; keeping the best weights so far (epoch {best_epoch})",
                file=stream,
                flush=True,
            )
    finally:
        train.close()
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    if not interrupted:
        if keep_last:  # a finished checkpoint keeps only the weights kept: the last ones
            best_state, best_dirty = clone_state(network), True
        save(len(history), finished=True)
    return LoopOutcome(history, best_epoch, monitor, interrupted, seconds, fingerprint)


def _load_checkpoint(
    folder: Path, fingerprint: str, earlier: Sequence[str] = ()
) -> Checkpoint | None:
    """The checkpoint in ``folder``, if any, refused when other settings or data wrote it."""
    ckpt = load_checkpoint(folder)
    if ckpt is not None and ckpt.fingerprint != fingerprint and ckpt.fingerprint not in earlier:
        raise RunFolderError(
            f"The checkpoint in {folder} was written by a run with other settings or data; "
            f"resume with the run's own train_args.json, or delete {folder} to start over."
        )
    return ckpt


def _report(
    stream: IO[str], label: str, epoch: int, epochs: int, row: dict[str, Any], seconds: list[float]
) -> None:
    """One line per epoch, numbered in the run's epochs; ``seconds`` empty for an epoch this loop
    did not run (the head phase's, on cached features)."""
    figures = f"loss {row['loss']:.4f} acc {row['accuracy']:.3f}"
    if row.get("val_loss") is not None:
        figures += f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f}"
    if seconds:
        left = sum(seconds) / len(seconds) * (epochs - epoch)
        timing = f"{seconds[-1]:.1f} s; at most ~{format_duration(left)} left"
    else:
        timing = "on cached features"
    print(f"{label} epoch {epoch}/{epochs}: {figures} ({timing})", file=stream, flush=True)
