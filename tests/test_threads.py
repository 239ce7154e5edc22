"""Small-matrix work runs on one thread (fast on a busy machine); the caller's count comes back."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from headstart.heads import fit_head, fit_linear
from headstart.heads.training import HeadTrainingConfig, train_head
from headstart.threads import SERIAL_WORK, ThreadProbe, threads_for, torch_threads


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch with two threads, as on an ordinary 2-core machine (the tests run with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _blobs(n_per_class: int, classes: int = 3, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 2
    y = np.repeat(np.arange(classes), n_per_class)
    x = (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32)
    order = rng.permutation(len(y))
    return x[order], y[order]


def _record_threads(monkeypatch: pytest.MonkeyPatch, optimizer: type) -> list[int]:
    seen: list[int] = []
    original = optimizer.step

    def step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optimizer, "step", step)
    return seen


def test_small_work_gets_one_thread_and_large_work_every_thread() -> None:
    assert threads_for(300 * 192 * 10, available=8) == 1
    assert threads_for(SERIAL_WORK - 1, available=8) == 1
    assert threads_for(SERIAL_WORK, available=8) == 8


def test_the_thread_count_is_restored_after_the_block_even_on_error(two_threads: None) -> None:
    with pytest.raises(RuntimeError), torch_threads(1) as count:
        assert count == 1 and torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_the_callers_thread_count_is_a_ceiling_never_raised(two_threads: None) -> None:
    with torch_threads(16) as count:
        assert count == 2 and torch.get_num_threads() == 2


def test_the_linear_head_solves_a_small_fit_on_one_thread_and_gives_the_count_back(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_threads(monkeypatch, torch.optim.LBFGS)
    x, y = _blobs(30)
    fit_linear(x[:60], y[:60], x[60:], y[60:], 3)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_the_mlp_head_trains_small_batches_on_one_thread(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _record_threads(monkeypatch, torch.optim.AdamW)
    x, y = _blobs(20)
    train_head("mlp", x[:40], y[:40], x[40:], y[40:], 3, HeadTrainingConfig(epochs=2), quiet=True)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_a_head_fitted_with_two_threads_available_is_the_one_thread_head_bit_for_bit() -> None:
    x, y = _blobs(40)
    before = torch.get_num_threads()
    heads = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            heads.append(fit_linear(x[:80], y[:80], x[80:], y[80:], 3).head)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(heads[0].weight, heads[1].weight)
    assert torch.equal(heads[0].bias, heads[1].bias)


def test_fitting_the_linear_head_reports_its_progress_unless_quiet(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 0.0)  # a fit within a second shows none
    x, y = _blobs(30)
    fit_head("linear", x[:60], y[:60], x[60:], y[60:], 3, quiet=False)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fitting the linear head: ")
    assert "solves" in lines[0] and "elapsed" in lines[0]
    fit_head("linear", x[:60], y[:60], x[60:], y[60:], 3, quiet=True)
    assert capsys.readouterr().err == ""


class _Clock:
    """A clock whose steps take as long as the thread count in force says."""

    def __init__(self, per_item: dict[int, float]) -> None:
        self.per_item, self.now = per_item, 0.0

    def __call__(self) -> float:
        return self.now

    def run(self, probe: ThreadProbe, items: int) -> int:
        with probe.step(items) as count:
            assert torch.get_num_threads() == count
            self.now += self.per_item[count] * items
        return count


@pytest.mark.parametrize(("per_item", "best"), [({2: 1.0, 1: 3.0}, 2), ({2: 4.0, 1: 1.0}, 1)])
def test_the_thread_probe_keeps_the_count_its_timed_steps_ran_fastest_with(
    two_threads: None, per_item: dict[int, float], best: int
) -> None:
    clock = _Clock(per_item)
    probe = ThreadProbe(clock=clock)

    counts = [clock.run(probe, 32) for _ in range(ThreadProbe.EVERY)]

    assert counts[1 : 1 + ThreadProbe.PROBES] == [2, 1] * (ThreadProbe.PROBES // 2)
    assert set(counts[1 + ThreadProbe.PROBES :]) == {best}
    assert torch.get_num_threads() == 2


def test_the_thread_probe_measures_again_when_the_machine_changes(two_threads: None) -> None:
    clock = _Clock({2: 1.0, 1: 3.0})
    probe = ThreadProbe(clock=clock)
    for _ in range(ThreadProbe.EVERY):
        clock.run(probe, 8)
    clock.per_item = {2: 5.0, 1: 1.0}  # the machine got busy

    counts = [clock.run(probe, 8) for _ in range(ThreadProbe.EVERY)]

    assert counts[0] == 2 and set(counts[1 + ThreadProbe.PROBES :]) == {1}


def test_a_disabled_thread_probe_leaves_the_count_alone(two_threads: None) -> None:
    clock = _Clock({2: 1.0, 1: 0.1})
    probe = ThreadProbe(enabled=False, clock=clock)

    assert {clock.run(probe, 4) for _ in range(10)} == {2}
