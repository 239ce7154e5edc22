"""Run the fuzz tests' properties for longer than CI does, with new cases each round.

CI runs a fixed, derandomized set of cases of each property (``tests/test_fuzz_*.py``, the "ci"
hypothesis profile in tests/conftest.py). This runs the same properties under the "fuzz" profile:
random cases, ``--examples`` per property per round, one round per seed from ``--seed`` on, until
``--minutes`` have passed. A failing case is printed with its reproduction blob
(``@reproduce_failure``) and kept in ``.hypothesis/``, so the next round tries it first; the fix
goes in with that input as a regression test.

    python scripts/fuzz.py --minutes 30                 # every fuzz test
    python scripts/fuzz.py --minutes 5 -k images --seed 7

Exit code: 0 when every round passed, 1 when a round failed (the rounds stop there).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="stop starting rounds after")
    parser.add_argument("--seed", type=int, default=0, help="the first round's hypothesis seed")
    parser.add_argument("--examples", type=int, default=2000, help="cases per property per round")
    parser.add_argument("--profile", default="fuzz", help="hypothesis profile (tests/conftest.py)")
    parser.add_argument("-k", default="", help="pytest -k expression: only these properties")
    args = parser.parse_args(argv)

    env = {
        **os.environ,
        "HEADSTART_FUZZ_PROFILE": args.profile,
        "HEADSTART_FUZZ_EXAMPLES": str(args.examples),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])
        ),
    }
    tests = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_fuzz_*.py"))
    end = time.monotonic() + args.minutes * 60
    seed, rounds = args.seed, 0
    started = time.monotonic()
    while time.monotonic() < end:
        command = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider"]
        command += [f"--hypothesis-seed={seed}", "--hypothesis-show-statistics"]
        if args.k:
            command += ["-k", args.k]
        print(f"round {rounds + 1}: seed {seed}", flush=True)
        result = subprocess.run(command, cwd=ROOT, env=env)
        rounds += 1
        if result.returncode != 0:
            print(f"round with seed {seed} failed; its case is printed above", flush=True)
            return 1
        seed += 1
    minutes = (time.monotonic() - started) / 60
    print(f"{rounds} round(s), seeds {args.seed}..{seed - 1}, {minutes:.1f} min: nothing unhandled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
