"""Threads for torch's CPU work, chosen by the size of the work: one for small products.

torch runs its CPU kernels on an OpenMP team of one thread per core. That pays for large products
(a convolution, a 20,000 x 768 x 100 matrix product) and costs dearly for small ones: every
product ends at a barrier where the team's threads spin, then yield, waiting for each other, so a
product is as slow as its most descheduled thread. On an idle machine that is a few microseconds;
on a machine doing something else (a browser, a shared server, other jobs) it is a time slice. The
linear head's L-BFGS walk makes thousands of such products, and a user's default ``train`` on ~300
images took 260 s at load 3 on 2 cores against 20 s with ``OMP_NUM_THREADS=1`` (issue 22).

So small-matrix work (the linear head's solves, the MLP head's mini-batches) runs inside
:func:`work_threads`, which gives it one thread below :data:`SERIAL_WORK` multiply-adds per product
and the configured count above, and restores the count afterwards. The crossover, measured on the
development machine (2 cores, torch 2.14 with MKL and OpenMP) for one evaluation of the head's
objective (``x @ W``, softmax, ``G^T @ x``; ``benchmarks/load.py --crossover``), ms per evaluation
with 1 thread / 2 threads:

=====================  =============  ======================  =====================
n x d x k              idle (load 0)  2 busy processes        2 busy + load ~2
=====================  =============  ======================  =====================
300x192x10 (0.6M)      0.15 / 0.16    0.36 / 6.5
1000x192x10 (1.9M)     0.42 / 0.34    0.86 / 2.4
3000x192x10 (5.8M)     1.6 / 1.0      2.2 / 40
5000x384x10 (19M)                                             18 / 89
3000x768x10 (23M)      5.4 / 3.3      4.5 / 50
10000x768x10 (77M)     18 / 14        25 / 22                 80 / 151
20000x768x20 (307M)                                           156 / 294
10000x768x100 (768M)                                          409 / 383
20000x768x100 (1.5G)   134 / 79       403 / 147
=====================  =============  ======================  =====================

Idle, two threads win from about 1M multiply-adds, by at most 1.7x; loaded, they lose by up to
18x below 100M, and by about 2x up to 300M on a machine that is busier still, and win again from
about 1G. One thread below 250M therefore costs at most 1.7x on an idle machine and saves up to
18x on a busy one; above it, products are long enough for the team's barriers not to matter.
``torch.set_num_interop_threads`` plays no part: it sizes the pool for inter-op parallelism
(TorchScript forks), which none of this uses.

It also makes small fits the same whatever the machine's thread count: a product split across
threads sums in another order, and a linear head on 2,000 images fitted with two threads differed
from the one-thread head by up to 0.01 in a bias; now both are the one-thread head, bit for bit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

__all__ = ["SERIAL_WORK", "ThreadProbe", "threads_for", "torch_threads", "work_threads"]

SERIAL_WORK = 250_000_000
"""Multiply-adds per product (rows x dims x outputs) below which one thread is fastest under load,
and at most 1.7x slower idle (the measurements above)."""


def threads_for(work: int, available: int | None = None) -> int:
    """The thread count for products of ``work`` multiply-adds: 1 when small, else all.

    Args:
        work: Multiply-adds of the typical product (rows x dims x outputs).
        available: The count to use for large work (default: torch's current count, so a user's
            ``OMP_NUM_THREADS`` or ``torch.set_num_threads`` stays the upper bound).
    """
    available = torch.get_num_threads() if available is None else available
    return 1 if work < SERIAL_WORK else max(1, available)


@contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """Run the block with at most ``count`` torch threads; the previous count is restored.

    Never raises the count above the current one: that is the user's (or the environment's)
    ceiling. Yields the count in force.
    """
    before = torch.get_num_threads()
    count = max(1, min(count, before))
    if count != before:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def work_threads(work: int) -> AbstractContextManager[int]:
    """:func:`torch_threads` with the count :func:`threads_for` gives ``work``."""
    return torch_threads(threads_for(work))


class ThreadProbe:
    """The thread count of a long run of similar, large steps (a backbone's forward passes over
    batches of images), chosen by timing them: the team of one thread per core or one thread.

    A forward pass is large work, and idle the whole team is faster (up to 1.7x in the table
    above). On a busy machine it is not: at load 14,
    a batch took 4.3 s on two threads against 1.2 s on one, and extraction became most of a
    loaded ``advise``. No size rule can tell the two machines apart, so the steps themselves are
    timed: after a first step (warm-up, not timed), the next :attr:`PROBES` steps alternate the
    two counts, and the count with the lower median time per image runs the next
    :attr:`EVERY` steps, after which it is measured again (the load changes during a long run).
    Only the time of the step itself counts, never the wait for its input. The two counts give
    the same features for the backbones tested (convolutions split their output, not their
    sums, across threads), so the choice changes the time a run takes, not its result.
    """

    PROBES = 4
    EVERY = 64

    def __init__(self, enabled: bool = True, clock: Callable[[], float] = time.perf_counter):
        team = torch.get_num_threads()
        self.counts = (team, 1) if enabled and team > 1 else ()
        self.chosen = team
        self._clock = clock
        self._step = 0
        self._times: dict[int, list[float]] = {}

    def _count(self) -> int:
        phase = self._step % self.EVERY
        if self.counts and 1 <= phase <= self.PROBES:
            return self.counts[(phase - 1) % 2]
        return self.chosen

    @contextmanager
    def step(self, items: int) -> Iterator[int]:
        """Run one step of ``items`` items with the count this step is given; yields it."""
        count = self._count()
        with torch_threads(count):
            start = self._clock()
            yield count
            seconds = self._clock() - start
        phase = self._step % self.EVERY
        self._step += 1
        if not self.counts or not 1 <= phase <= self.PROBES:
            return
        self._times.setdefault(count, []).append(seconds / max(1, items))
        if phase == self.PROBES:
            medians = {c: statistics.median(t) for c, t in self._times.items()}
            self.chosen = min(medians, key=lambda c: (medians[c], -c))
            self._times = {}
