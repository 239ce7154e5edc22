"""The cost estimate's model of an epoch, on given timings (no timed test)."""

from __future__ import annotations

import pytest

from headstart.strategies._cost import StepTimings, epoch_seconds

TIMINGS = StepTimings(decode=0.02, train=0.01, optimizer=0.05, forward=0.003, checkpoint=0.4)


def test_an_epoch_counts_the_optimizer_the_validation_pass_and_the_checkpoint() -> None:
    seconds = epoch_seconds(TIMINGS, train_images=100, batches=7, val_images=50, workers=2, cores=2)
    # Each image: the network's time plus its decoding spread over the two cores.
    expected = 100 * (0.01 + 0.01) + 7 * 0.05 + 50 * (0.003 + 0.01) + 0.4
    assert seconds == pytest.approx(expected)


def test_decoding_threads_share_the_cores_with_the_network_instead_of_hiding_behind_it() -> None:
    # The first model took max(network, decode / workers) = 0.01 s an image: free overlap.
    one_core = epoch_seconds(TIMINGS, train_images=100, batches=0, val_images=0, workers=4, cores=1)
    assert one_core == pytest.approx(100 * (0.01 + 0.02) + 0.4)


def test_decoding_in_turn_adds_all_of_it_and_too_few_threads_bound_the_epoch() -> None:
    in_turn = epoch_seconds(TIMINGS, train_images=10, batches=0, val_images=0, workers=0, cores=8)
    assert in_turn == pytest.approx(10 * (0.01 + 0.02) + 0.4)
    slow = StepTimings(decode=0.1, train=0.01, optimizer=0.0, forward=0.0)
    bound = epoch_seconds(slow, train_images=10, batches=0, val_images=0, workers=1, cores=8)
    assert bound == pytest.approx(10 * 0.1)
