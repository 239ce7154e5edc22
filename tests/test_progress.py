"""Progress: plain lines off a terminal, nothing when quiet."""

from __future__ import annotations

import io

from headstart.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_report_count_rate_and_eta_when_not_a_terminal() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with Progress(100, "extracting", unit="img", stream=stream, interval=5, clock=clock) as p:
        for _ in range(50):
            clock.now += 0.2
            p.update(1)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "extracting: 25/100 img (25%), 5.0 img/s, ETA 0:15"
    assert lines[-1].startswith("extracting: 50/100 img (50%)")


def test_no_output_if_quiet() -> None:
    stream = io.StringIO()
    with Progress(10, "x", stream=stream, quiet=True, interval=0) as p:
        p.update(10)
    assert stream.getvalue() == ""


def test_a_step_that_ends_within_a_second_shows_no_line_off_a_terminal() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with Progress(1, "hashing files", unit="file", stream=stream, clock=clock) as p:
        clock.now += 0.01
        p.update(1)
    assert stream.getvalue() == ""


def test_a_step_longer_than_a_second_ends_with_its_summary_line() -> None:
    stream, clock = io.StringIO(), FakeClock()
    with Progress(3, "hashing files", unit="file", stream=stream, clock=clock) as p:
        for _ in range(3):
            clock.now += 0.5
            p.update(1)
    assert stream.getvalue() == "hashing files: 3/3 file (100%), 2.0 file/s, elapsed 0:02\n"
