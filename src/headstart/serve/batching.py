"""Requests that arrive together go through the model together: a micro-batching queue.

A forward pass over 16 images costs far less than 16 passes over one (on this project's 2-core
machine, ``headstart-tiny`` answers 29 images/s one a call and 111 images/s in one call), so a
server that runs each request's image alone leaves most of its throughput unused. Each request
puts its items on a queue and awaits their answers; one worker per model takes the first item,
waits at most ``max_wait`` seconds for more (never past ``max_batch``), and runs them in a thread
as one call. While a batch runs, the next one fills up, so under load the batches grow by
themselves.

The worker waits only for images it knows are coming: a request announces itself
(:meth:`MicroBatcher.coming`) while its body is read and its images decoded, and a batch waits
for others only while some request is so announced. A lone client's request therefore runs at
once: on a busy machine a 5 ms timer is a wake-up that can take tens of milliseconds.

The worker is an asyncio task of the server's event loop (started and stopped with the app), and
the batch function runs in a thread, so the event loop goes on accepting and reading requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Batches items submitted from concurrent requests into calls of ``run``.

    Args:
        run: Answers a batch of items, one result per item in order. Runs in a worker thread.
            An exception fails every item of that batch, not the batcher.
        max_batch: At most this many items per call (1: no batching, each item alone).
        max_wait: Seconds the first item of a batch waits for others to join it.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 32,
        max_wait: float = 0.005,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._coming = 0  # requests on their way to submit_many

    async def start(self) -> None:
        """Start the worker on the running event loop (the app's startup)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._serve(self._queue))

    async def stop(self) -> None:
        """Stop the worker; items still queued fail with ``CancelledError``."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._queue is not None:
            while not self._queue.empty():
                _, future = self._queue.get_nowait()
                future.cancel()
        self._worker = self._queue = None

    @contextlib.contextmanager
    def coming(self) -> Iterator[None]:
        """Announce a request that will submit items when the block ends (its images read and
        decoded): until then, a forming batch waits for them (at most ``max_wait``)."""
        self._coming += 1
        try:
            yield
        finally:
            self._coming -= 1

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """The answers to ``items``, which may be run in batches with other requests' items."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called (the app's lifespan)")
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait((item, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _serve(self, queue: asyncio.Queue[tuple[T, asyncio.Future[R]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():  # already waiting: no timer needed
                    batch.append(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0 or not self._coming:  # nothing is on its way: run what is here
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]
            if not live:  # every asker went away (a client disconnected)
                continue
            try:
                results = await anyio.to_thread.run_sync(self._run, [item for item, _ in live])
            except Exception as exc:  # the askers get it; the batcher serves on
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
