"""Every benchmark and the demo run, in seconds, so none rots between the runs that measure.

Each script with a ``--smoke`` mode (tiny sizes, every code path) runs in one child process, one
after another, so torch and timm are imported once: the smoke of a script that no longer matches
the library (a renamed attribute, a metric that moved) fails here instead of on the day someone
re-measures. A new script must either gain ``--smoke`` or be listed, with the reason, below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMOKED = [
    "scripts/demo.py",
    "benchmarks/preprocessing.py",
    "benchmarks/tta.py",
    "benchmarks/extract.py",
    "benchmarks/doctor.py",
    "benchmarks/decode.py",
    "benchmarks/warm.py",
    "benchmarks/typicality_fit.py",
    "benchmarks/walk_sample.py",
    "benchmarks/imbalance.py",
    "benchmarks/multilabel.py",
    "benchmarks/noise.py",
    "benchmarks/openset.py",
]
# Scripts without a smoke mode yet (issue 28 left them): their options already allow small runs,
# but not yet a seconds-long one that reaches every code path.
NOT_YET = {
    "benchmarks/compare.py",
    "benchmarks/engines.py",
    "benchmarks/heads.py",
    "benchmarks/keras_story.py",
    "benchmarks/load.py",
    "benchmarks/scale.py",
    "benchmarks/serve.py",
    "benchmarks/strategies.py",
}
# Trains the shipped backbone for ten minutes or checks it, or stresses the CLI (fuzzing, kills
# mid-run) for minutes: not benchmarks, and no figure of the docs comes from them.
NOT_BENCHMARKS = {
    "scripts/train_embedded_backbone.py",
    "scripts/check_embedded_transfer.py",
    "scripts/fuzz.py",
    "scripts/kill_resume.py",
}

# Each script runs as `python SCRIPT --smoke` would run it: its own folder first on sys.path (the
# benchmarks import their shared ``_tiny_data``), as __main__.
RUNNER = """
import os, runpy, sys
for path in sys.argv[1:]:
    sys.argv = [path, "--smoke"]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        sys.path.remove(os.path.dirname(path))
    print(f"smoke ok: {path}", flush=True)
"""


def test_every_script_is_smoked_or_listed_with_its_reason() -> None:
    scripts = {
        str(p.relative_to(ROOT))
        for folder in ("benchmarks", "scripts")
        for p in (ROOT / folder).glob("[!_]*.py")
    }
    assert scripts == set(SMOKED) | NOT_YET | NOT_BENCHMARKS


def test_every_smoke_mode_runs_to_the_end(tmp_path) -> None:
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, *(str(ROOT / path) for path in SMOKED)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    done = [line for line in result.stdout.splitlines() if line.startswith("smoke ok: ")]
    assert done == [f"smoke ok: {ROOT / path}" for path in SMOKED]
