"""Bulk per-file bookkeeping runs with the cyclic garbage collector paused, and only then."""

from __future__ import annotations

import gc

import pytest

from headstart.bulk import bulk


@bulk
def _collector_on() -> bool:
    return gc.isenabled()


@bulk
def _nested() -> tuple[bool, bool]:
    inner = _collector_on()
    return inner, gc.isenabled()


@bulk
def _fails() -> None:
    raise ValueError("boom")


def test_the_collector_is_paused_inside_and_back_on_after():
    assert gc.isenabled()
    assert _collector_on() is False
    assert gc.isenabled()


def test_a_nested_call_does_not_turn_it_back_on_early():
    assert _nested() == (False, False)
    assert gc.isenabled()


def test_an_error_still_turns_it_back_on():
    with pytest.raises(ValueError):
        _fails()
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off():
    gc.disable()
    try:
        assert _collector_on() is False
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_listing_a_dataset_makes_no_cycles_for_a_paused_collector_to_miss(colour_data):
    from headstart.data import load_dataset

    gc.collect()
    load_dataset(colour_data)
    assert gc.isenabled()
    assert gc.collect() == 0  # nothing it allocated waits for the collector
