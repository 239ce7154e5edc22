"""Durations for people: one way to write them, wherever headstart prints one."""

from __future__ import annotations

import pytest

from headstart._text import count_noun, format_clock, format_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(4.24, "4.2 s"), (45.4, "45 s"), (89.4, "89 s"), (725, "12 min"), (5399, "90 min")],
)
def test_durations_read_in_the_unit_people_use_with_two_figures_at_most(seconds, shown):
    assert format_duration(seconds) == shown


def test_long_durations_are_given_in_hours():
    assert format_duration(5400) == "1.5 h"
    assert format_duration(36_000) == "10.0 h"


@pytest.mark.parametrize("seconds", [0.0, 0.01, -3.0])
def test_a_duration_is_never_written_as_zero(seconds):
    assert format_duration(seconds) == "0.1 s"


@pytest.mark.parametrize(("seconds", "shown"), [(15, "0:15"), (75.6, "1:16"), (3723, "1:02:03")])
def test_a_clock_shows_hours_only_when_there_are_some(seconds, shown):
    assert format_clock(seconds) == shown


@pytest.mark.parametrize(
    ("n", "noun", "shown"),
    [(1, "file", "1 file"), (2, "other file", "2 other files"), (0, "class", "0 classes")],
)
def test_a_count_takes_its_noun_in_the_plural_unless_it_is_one(n, noun, shown):
    assert count_noun(n, noun) == shown
