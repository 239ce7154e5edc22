"""More than one process: the same commands under ``torchrun``, split across ranks.

``torchrun --nproc-per-node N -m headstart train ...`` starts N copies of the same command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. The commands that train or
extract (:func:`init_from_env`) then join one process group, and the library splits its work
wherever a process group is initialised, whoever initialised it (headstart's CLI, Accelerate, a
user's own script):

- extraction (:mod:`headstart.features.extract`): each rank computes a disjoint shard of whole
  batches and the vectors are gathered, so every rank ends with every feature;
- end-to-end training (:mod:`headstart.strategies._loop`): DistributedDataParallel, each global
  batch split across the ranks;
- everything that must happen once (reading and writing the feature cache, checkpoints and the run
  folder, fitting a head on cached features) happens on rank 0, and what the others need of it is
  broadcast (:func:`run_on_main`).

Objects travel between the ranks of one job with ``torch.distributed``'s object collectives,
which pickle them in memory. That is not the unpickling a run folder refuses: nothing read from
disk is ever unpickled, and the peers are copies of the same program started by the same user.
The object collectives run on a gloo group, so they work beside NCCL's GPU collectives too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from headstart.errors import HeadstartError, InvalidParameterError

__all__ = [
    "World",
    "all_gather",
    "barrier",
    "broadcast",
    "init_from_env",
    "is_main",
    "run_on_main",
    "shard",
    "shutdown",
    "sum_across",
    "world",
]

T = TypeVar("T")

# Rank 0 alone fits heads, evaluates and writes the report while the others wait in a collective;
# gloo's default of 30 minutes would turn a long evaluation into a crash.
_TIMEOUT = timedelta(hours=6)
_objects_group: Any = None


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job (rank 0 of 1 when alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The process group this process belongs to, or a world of one when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local)


def is_main() -> bool:
    """Rank 0, the one process that writes files and prints progress (alone: always)."""
    return world().main


def init_from_env(device: str = "auto") -> str:
    """Join the process group ``torchrun`` describes in the environment; return the device to use.

    Without ``WORLD_SIZE`` > 1 (a plain ``headstart`` command) nothing happens and ``device`` is
    returned as given. Under torchrun, a CUDA device ("auto" where CUDA exists, "cuda") becomes
    ``cuda:LOCAL_RANK`` and the group uses NCCL; otherwise each rank runs on the CPU with gloo.
    One GPU per process is what DistributedDataParallel expects; naming ``cuda:K`` explicitly
    under torchrun is refused because every rank would train on the same GPU.

    Raises:
        HeadstartError: An explicit ``cuda:K`` device under torchrun, or MPS (no collectives).
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = str(device or "auto")
    if wanted.startswith("cuda:"):
        raise InvalidParameterError(
            f"--device {wanted} under torchrun would put every rank on one GPU; use --device "
            "cuda (rank k of a machine then uses its GPU k) or auto."
        )
    if wanted == "mps":
        raise InvalidParameterError(
            "--device mps cannot run under torchrun (no collectives on MPS); use --device cpu."
        )
    use_cuda = wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", timeout=_TIMEOUT)
        return f"cuda:{local_rank}"
    dist.init_process_group("gloo", timeout=_TIMEOUT)
    return "cpu"


def shutdown() -> None:
    """Wait for every rank, then leave the process group (nothing happens when alone).

    Rank 0 goes on alone afterwards (saving, the report), so anything it runs after this call is
    single-process again.
    """
    global _objects_group
    if not (dist.is_available() and dist.is_initialized()):
        return
    barrier()
    dist.destroy_process_group()
    _objects_group = None


def _group() -> Any:
    """The gloo group for object collectives: the default group when it is gloo already."""
    global _objects_group
    if _objects_group is None:
        if dist.get_backend() == "gloo":
            _objects_group = dist.group.WORLD
        else:
            _objects_group = dist.new_group(backend="gloo", timeout=_TIMEOUT)
    return _objects_group


def barrier() -> None:
    """Wait for every rank (a no-op in a single process): rank 0 writes, the others read after."""
    if world().size > 1:
        dist.barrier(group=_group())


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (alone: ``value``)."""
    if world().size <= 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_group())
    return box[0]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (alone: ``[value]``)."""
    size = world().size
    if size <= 1:
        return [value]
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, value, group=_group())
    return gathered


def sum_across(values: Sequence[float]) -> list[float]:
    """Element-wise sums over the ranks, in float64 so counts and loss sums stay exact enough."""
    if world().size <= 1:
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(tensor, group=_group())
    return [float(v) for v in tensor]


def run_on_main(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0 alone, its result broadcast to every rank; the others wait for it.

    A :class:`HeadstartError` raised on rank 0 is raised on every rank, so a user's mistake found
    by rank 0 (a damaged checkpoint, a finished run) ends every process with the same one-line
    message instead of leaving the others waiting for a result that never comes.
    """
    if world().size <= 1:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, fn())
        except HeadstartError as exc:
            outcome = (False, exc)
            broadcast(outcome)
            raise
    ok, value = broadcast(outcome)
    if not ok:
        raise value
    return value


def shard(items: Sequence[T], batch_size: int) -> list[T]:
    """This rank's share of ``items``: whole batches of ``batch_size``, dealt round-robin.

    Dealing whole batches, rather than single items, keeps every batch exactly as one process
    would have formed it, so a result that depends on which images share a batch (nothing should,
    but float reductions may) is the same with any number of ranks.
    """
    w = world()
    if w.size <= 1:
        return list(items)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    return [item for batch in batches[w.rank :: w.size] for item in batch]
