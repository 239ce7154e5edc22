"""The micro-batching queue of `headstart serve`, on its own (no model, no HTTP)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from headstart.serve.batching import MicroBatcher


class Recorder:
    """A batch function that answers each item doubled and records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        self.batches.append(list(items))
        return [2 * i for i in items]


def _run(batcher: MicroBatcher[int, int], scenario) -> object:
    async def main() -> object:
        await batcher.start()
        try:
            return await scenario()
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_items_submitted_together_run_as_one_batch_in_order() -> None:
    record = Recorder()
    batcher = MicroBatcher(record, max_batch=8, max_wait=30.0)

    async def scenario() -> object:
        return await asyncio.gather(*(batcher.submit_many([i]) for i in range(4)))

    assert _run(batcher, scenario) == [[0], [2], [4], [6]]
    assert record.batches == [[0, 1, 2, 3]]


def test_batches_hold_at_most_max_batch_items() -> None:
    record = Recorder()
    batcher = MicroBatcher(record, max_batch=3, max_wait=30.0)

    async def scenario() -> object:
        return await batcher.submit_many(list(range(7)))

    assert _run(batcher, scenario) == [0, 2, 4, 6, 8, 10, 12]
    assert record.batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_a_batch_waits_for_a_request_that_announced_itself() -> None:
    record = Recorder()
    batcher = MicroBatcher(record, max_batch=8, max_wait=30.0)

    async def late() -> list[int]:
        with batcher.coming():
            await asyncio.sleep(0.05)  # its images are still being decoded
        return await batcher.submit_many([2])

    async def scenario() -> object:
        waiting = asyncio.create_task(late())
        await asyncio.sleep(0)  # it announces itself first
        return await asyncio.gather(batcher.submit_many([1]), waiting)

    assert _run(batcher, scenario) == [[2], [4]]
    assert record.batches == [[1, 2]]


def test_a_lone_request_does_not_wait_for_others() -> None:
    record = Recorder()
    batcher = MicroBatcher(record, max_batch=8, max_wait=3600.0)

    async def scenario() -> object:
        # Nothing else is coming: it must not wait out the hour (the bound fails the test).
        return await asyncio.wait_for(batcher.submit_many([5]), timeout=60)

    assert _run(batcher, scenario) == [10]


def test_a_failing_batch_fails_its_askers_and_the_next_batch_is_answered() -> None:
    batcher = MicroBatcher(Recorder(), max_batch=8, max_wait=0.0)

    async def scenario() -> object:
        with pytest.raises(ValueError, match="bad item"):
            await batcher.submit_many([-1])
        return await batcher.submit_many([3])

    assert _run(batcher, scenario) == [6]
