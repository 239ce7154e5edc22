"""The README's demo figures come from the demo's own code, at its own size, every test run.

README.md says what ``make demo`` measures ("test accuracy 0.75 on the pretrained features, 0.18
on random-init features"). This runs ``scripts/demo.py``'s ``demo`` at the full size and holds
the README to it: a regression in transfer (the embedded weights, their preprocessing, the head)
moves the measured figure out of the band, and a README edit that no longer matches the code
fails too. Proven by mutation: with the embedded backbone's stored mean/std replaced by
ImageNet's in ``resolve_preprocess``, the pretrained figure fell from 0.75 to 0.65.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUOTED = re.compile(
    r"test accuracy (\d\.\d+) on\s+the pretrained features, (\d\.\d+) on random-init features"
)


def _readme_figures() -> tuple[float, float]:
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    found = QUOTED.search(text)
    assert found, "README.md no longer quotes the demo's two test accuracies"
    return float(found.group(1)), float(found.group(2))


def test_the_readme_demo_figures_are_what_the_demo_measures(tmp_path: Path) -> None:
    pretrained, random_init = _readme_figures()
    demo = runpy.run_path(str(ROOT / "scripts" / "demo.py"))["demo"]

    measured = demo(tmp_path / "data", tmp_path / "run", quiet=True)

    # The demo is seeded; the band allows for another CPU's float rounding, not for a change.
    assert measured["pretrained"] == pytest.approx(pretrained, abs=0.02), measured
    assert measured["random_init"] == pytest.approx(random_init, abs=0.05), measured
    assert measured["pretrained"] - measured["random_init"] >= 0.4, measured
