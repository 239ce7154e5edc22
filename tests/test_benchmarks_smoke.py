"""Every benchmark and the demo run, in seconds, so none rots between the runs that measure.

Each script with a ``--smoke`` mode (tiny sizes, every code path) runs in a child process that runs
one script after another, so torch and timm are imported once per child: the smoke of a script
that no longer matches the library (a renamed attribute, a metric that moved) fails here instead
of on the day someone re-measures. A new script must either gain ``--smoke`` or be listed, with
the reason, below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Heaviest first (wall seconds of each smoke in a runner beside the other, on a 2-core machine at
# load 2.5): the runners take them in this order, so the long ones start early and the short ones
# fill in at the end.
SMOKED = [
    "benchmarks/load.py",  # 24: commands in fresh processes, one busy process spinning
    "benchmarks/strategies.py",  # 18: the refit row in a process of its own
    "benchmarks/warm.py",  # 18: three commands in fresh processes
    "benchmarks/heads.py",  # 15
    "benchmarks/openset.py",  # 11: both sides, one seed each (the report side adds 3)
    "benchmarks/preprocessing.py",  # 11
    "benchmarks/serve.py",  # 10: two servers in processes of their own
    "benchmarks/compare.py",  # 7
    "benchmarks/keras_story.py",  # 6
    "benchmarks/scale.py",  # 5: each stage in a process of its own
    "benchmarks/imbalance.py",  # 5
    "benchmarks/noise.py",  # 5
    "benchmarks/multilabel.py",  # 5
    "benchmarks/extract.py",  # 3
    "benchmarks/walk_sample.py",  # 3
    "benchmarks/head_rules.py",  # 2
    "benchmarks/tta.py",  # 2
    "benchmarks/engines.py",  # 2
    "benchmarks/decode.py",  # 2
    "benchmarks/doctor.py",  # 0
    "benchmarks/typicality_fit.py",  # 0
]
# Trains the shipped backbone for ten minutes or checks it, or stresses the CLI (fuzzing, kills
# mid-run) for minutes: not benchmarks, and no figure of the docs comes from them; and the demo,
# which tests/test_demo.py runs whole (its smoke would only repeat a smaller part of that).
NOT_BENCHMARKS = {
    "scripts/demo.py",  # run at its full size by tests/test_demo.py, which pins its figures
    "scripts/train_embedded_backbone.py",
    "scripts/check_embedded_transfer.py",
    "scripts/fuzz.py",
    "scripts/kill_resume.py",
}

# Each script runs as `python SCRIPT --smoke` would run it: its own folder first on sys.path (the
# benchmarks import their shared ``_tiny_data``), as __main__. Several runners share the list: each
# takes the next script no runner has claimed yet (an exclusive create in CLAIMS claims it).
RUNNER = """
import os, runpy, sys
claims = sys.argv[1]
for path in sys.argv[2:]:
    try:
        os.close(os.open(os.path.join(claims, path.replace(os.sep, "_")), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        continue
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
    assert scripts == set(SMOKED) | NOT_BENCHMARKS


def test_every_smoke_mode_runs_to_the_end(tmp_path) -> None:
    """Every smoke run ends well and writes nothing into its working folder (only into temp
    folders and the feature cache it is given). One runner per core, up to two: each imports
    torch once, and CI's two cores run the list in about half the time one would."""
    work, claims = tmp_path / "cwd", tmp_path / "claims"
    work.mkdir()
    claims.mkdir()
    env = {**os.environ, "HEADSTART_CACHE_DIR": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    logs = [
        (tmp_path / f"runner{i}.out", tmp_path / f"runner{i}.err") for i in range(min(2, cpus or 1))
    ]
    # Tiny work: a thread team per runner on every core would only make the runners wait on each
    # other's threads.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (cpus or 1) // len(logs))))
    runners = []
    for out, err in logs:  # files, not pipes: a runner never waits for the test to read it
        with out.open("w") as stdout, err.open("w") as stderr:
            runners.append(
                subprocess.Popen(
                    [sys.executable, "-c", RUNNER, str(claims), *(str(ROOT / p) for p in SMOKED)],
                    cwd=work,
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                )
            )
    try:
        for runner in runners:
            runner.wait(timeout=1800)  # a hang; on a loaded machine the list takes minutes
    finally:
        for runner in runners:
            runner.kill()  # only one still running, after a timeout
    done = []
    for runner, (out, err) in zip(runners, logs, strict=True):
        stdout, stderr = out.read_text(), err.read_text()
        assert runner.returncode == 0, stdout[-3000:] + stderr[-3000:]
        done += [line for line in stdout.splitlines() if line.startswith("smoke ok: ")]
    assert sorted(done) == sorted(f"smoke ok: {ROOT / path}" for path in SMOKED)
    assert list(work.iterdir()) == []
