"""Run folders saved by an earlier headstart load and predict exactly as they did then.

``tests/data/runs_v1`` was written by the code of commit 38080ab (format version 1): a linear head
on a timm backbone's final features (saved under timm's classifier key) and an MLP head on an
earlier stage (``layer=2``). ``expected.json`` holds the probabilities that code predicted for the
six images beside them. A change to saving or loading that breaks old runs fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from headstart import ImageClassifier

RUNS = Path(__file__).parent / "data" / "runs_v1"
EXPECTED = json.loads((RUNS / "expected.json").read_text())


@pytest.mark.parametrize("run", sorted(EXPECTED))
def test_run_saved_by_format_1_predicts_as_it_did(run: str) -> None:
    expected = EXPECTED[run]
    clf = ImageClassifier.load(RUNS / run)
    images = [RUNS / "images" / name for name in expected["images"]]

    proba = clf.predict_proba(images)

    assert clf.classes_ == expected["classes"]
    np.testing.assert_allclose(proba, np.array(expected["proba"]), rtol=0, atol=1e-6)
    assert clf.predict(images) == [expected["classes"][i] for i in proba.argmax(1)]
