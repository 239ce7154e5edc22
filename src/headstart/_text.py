"""How headstart writes durations and counts for people, in one place so every message reads
alike.

Before this module, the cost estimate, the training loop, the report and ``headstart doctor``
each rounded seconds their own way ("62.0 s" here, "1 min 02 s" there, "1 min" elsewhere).
"""

from __future__ import annotations

__all__ = ["count_noun", "format_clock", "format_duration"]


def format_duration(seconds: float) -> str:
    """Seconds as people say them: "4.2 s", "45 s", "12 min", "1.5 h".

    Two significant figures at most: a duration is either an estimate or a wall-clock
    measurement that varies from run to run by more than that, so more digits would be noise.
    Minutes run to 90 before hours take over, as "75 min" reads better than "1.2 h". Never
    "0.0 s": what was measured took some time, and an estimate that small is "0.1 s" at most.
    """
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        return f"{max(seconds, 0.1):.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_clock(seconds: float) -> str:
    """Seconds as a running clock, "0:15" or "1:02:03": tqdm's format, for progress lines.

    A progress line is rewritten every few seconds; a clock keeps its width and agrees with the
    bar tqdm draws on a terminal, where words would jump between units.
    """
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def count_noun(n: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``, ``"0 classes"``: a count with its noun, in the plural by
    English's regular rule (-es after a hiss: s, x, z, ch, sh; -s otherwise)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}" + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")
