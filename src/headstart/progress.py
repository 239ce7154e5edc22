"""Progress for long steps: a bar on a terminal, plain periodic lines otherwise, nothing with quiet.

tqdm draws the bar (small, dependency-free, and it already computes rate and ETA well). When the
stream is not a terminal (CI logs, pipes, notebooks' captured output) a bar's carriage returns turn
into noise, so we print a plain line at most every ``interval`` seconds instead. A step that ends
within :data:`QUIET_SECONDS` shows nothing in either mode: a bar or a line for one file hashed in a
millisecond is noise, and an API user predicting image by image in a loop (or a notebook, whose
stream is no terminal) would get one such line per call. The clock is injectable so tests can
drive the plain mode without sleeping.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from headstart._text import format_clock

__all__ = ["QUIET_SECONDS", "Progress", "track"]

QUIET_SECONDS = 1.0
"""Steps shorter than this show no progress at all (tqdm's ``delay`` on a terminal)."""

T = TypeVar("T")


class Progress:
    """Counts work done on one step and reports it.

    Args:
        total: how many units the step has, or None when unknown.
        desc: what the step does, e.g. "extracting features".
        unit: the unit counted, e.g. "img".
        quiet: report nothing at all.
        stream: where to write (stderr by default, so stdout stays clean for --json).
        interval: seconds between plain lines when the stream is not a terminal.
        clock: returns seconds; injectable for tests.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "it",
        quiet: bool = False,
        stream: IO[str] | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.n = 0
        self._start = clock()
        self._last_line = self._start
        self._bar: Any = None
        self._closed = False
        if not quiet and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                delay=QUIET_SECONDS,
            )

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._write_line(now)

    def _write_line(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}"]
        if self.total:
            parts[0] += f"/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            parts[0] += f" {self.unit}"
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"ETA {format_clock((self.total - self.n) / rate)}")
        else:
            parts.append(f"elapsed {format_clock(elapsed)}")
        print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.close()
            return
        now = self.clock()
        if self.n and (self._last_line > self._start or now - self._start >= QUIET_SECONDS):
            self._write_line(now)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def track(
    iterable: Iterable[T],
    desc: str,
    *,
    total: int | None = None,
    unit: str = "it",
    quiet: bool = False,
) -> Iterator[T]:
    """Yield from ``iterable`` while reporting progress, like rich's ``track()``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, quiet=quiet) as progress:
        for item in iterable:
            yield item
            progress.update(1)
