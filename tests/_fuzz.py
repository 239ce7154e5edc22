"""What the fuzz tests share: byte mutations of valid seeds, and the bounds every case runs under.

A case may end in only two ways: the input is used or skipped with a reason, or a
``HeadstartError`` says what is wrong. Anything else, a case that runs past :data:`CASE_SECONDS`
(a hang: hypothesis' deadline only measures cases that finish) or one whose peak memory grows by
more than :data:`CASE_MEMORY` is a bug the fuzzer found.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "CASE_MEMORY",
    "CASE_SECONDS",
    "Hang",
    "bounded",
    "mutated",
    "pack_safetensors",
    "split_safetensors",
]

CASE_SECONDS = 30.0
"""A case running longer hangs: a normal one takes milliseconds, even on a loaded machine."""

CASE_MEMORY = 1536 * 2**20
"""A case whose peak memory grows by more reads something unbounded. Pillow's own
decompression-bomb limit (89 million pixels, 4 bytes each as it decodes) sits below it."""


class Hang(Exception):
    """A fuzz case ran past :data:`CASE_SECONDS`."""


def _peak_rss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


@contextlib.contextmanager
def bounded(seconds: float = CASE_SECONDS, memory: int = CASE_MEMORY) -> Iterator[None]:
    """Run the body under a wall-clock alarm, and fail it if the process' peak memory grew by
    more than ``memory`` (the peak only ever rises: a case that raised it a lot is caught, even
    if it freed the memory again)."""

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"a fuzz case ran over {seconds:.0f} s")

    before = _peak_rss()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grown = _peak_rss() - before
    assert grown <= memory, f"a fuzz case raised peak memory by {grown / 2**20:.0f} MiB"


@dataclass(frozen=True)
class _Mutation:
    kind: str
    at: float  # where, as a fraction of the length (survives earlier mutations changing it)
    data: bytes

    def apply(self, blob: bytes) -> bytes:
        i = min(int(self.at * len(blob)), len(blob))
        if self.kind == "flip":
            if not blob:
                return blob
            i = min(i, len(blob) - 1)
            return blob[:i] + bytes([blob[i] ^ (self.data[0] or 1)]) + blob[i + 1 :]
        if self.kind == "truncate":
            return blob[:i]
        if self.kind == "insert":
            return blob[:i] + self.data + blob[i:]
        if self.kind == "overwrite":
            return blob[:i] + self.data + blob[i + len(self.data) :]
        if self.kind == "duplicate":  # a chunk repeated: a second header, a doubled segment
            return blob[:i] + blob[i : i + len(self.data) * 8] + blob[i:]
        raise ValueError(self.kind)


# Values that make a size field huge, negative, zero or off by one, whatever its width and order.
_HUGE = [
    b"\xff\xff",
    b"\x7f\xff",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x00\x00",
    b"\x80\x00\x00\x00",
    b"\x00\x01\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
]

_mutations = st.one_of(
    st.builds(_Mutation, st.just("flip"), st.floats(0, 1), st.binary(min_size=1, max_size=1)),
    st.builds(_Mutation, st.just("truncate"), st.floats(0, 1), st.just(b"")),
    st.builds(_Mutation, st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    # Size fields live in the first bytes of every format's header: aim huge values there.
    st.builds(_Mutation, st.just("overwrite"), st.floats(0, 0.25), st.sampled_from(_HUGE)),
    st.builds(_Mutation, st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.builds(_Mutation, st.just("duplicate"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
)


def mutated(seeds: dict[str, bytes]) -> st.SearchStrategy[tuple[str, bytes]]:
    """(seed name, its bytes after one to four mutations) for seeds of valid files."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, bytes]:
        name = draw(st.sampled_from(sorted(seeds)))
        blob = seeds[name]
        for mutation in draw(st.lists(_mutations, min_size=1, max_size=4)):
            blob = mutation.apply(blob)
        return name, blob

    return build()


def split_safetensors(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's (header, data bytes), for tests that lie in one and keep the other."""
    size = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def pack_safetensors(header: dict[str, Any], data: bytes) -> bytes:
    """A safetensors file from a header and data bytes, the header padded to 8 bytes as the
    format requires, whatever the header says."""
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data
