"""``ImageClassifier.predict_split``: a split's probabilities, reusing what ``fit`` computed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from headstart import ImageClassifier
from headstart.errors import DataError
from tests.conftest import write_colour_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path, Path]:
    root = tmp_path_factory.mktemp("split")
    data = write_colour_dataset(root / "data", {"train": 6, "val": 3, "test": 3})
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=root / "cache",
    ).fit(data)
    return clf, data, clf.save(root / "run")


def _no_prediction(*args: object, **kwargs: object) -> None:
    raise AssertionError("predicted again")


def test_predict_split_right_after_fit_predicts_nothing_again(fitted, monkeypatch) -> None:
    clf, data, run = fitted
    loaded = ImageClassifier.load(run, quiet=True)
    fresh = loaded.predict_split(loaded.evaluation_dataset(data), "test")
    monkeypatch.setattr(ImageClassifier, "_tta_proba", _no_prediction)

    held = clf.predict_split(clf.evaluation_dataset(data), "test")

    assert [s.path for s in held.samples] == [s.path for s in fresh.samples]
    np.testing.assert_allclose(held.proba, fresh.proba, atol=1e-6)


def test_predict_split_rows_follow_the_samples_it_kept_and_name_the_failures(
    fitted, tmp_path
) -> None:
    _, data, run = fitted
    copy = Path(shutil.copytree(data, tmp_path / "data"))
    loaded = ImageClassifier.load(run, quiet=True)
    dataset = loaded.evaluation_dataset(copy)
    broken = dataset.splits["test"][1].path
    broken.write_bytes(b"changed on disk after it was listed")

    result = loaded.predict_split(dataset, "test")

    kept = [s.path for s in dataset.splits["test"] if s.path != broken]
    assert [s.path for s in result.samples] == kept
    assert list(result.failures) == [broken]
    assert result.proba.shape == (len(kept), len(loaded.classes_))
    np.testing.assert_allclose(result.proba, loaded.predict_proba(kept), atol=1e-6)


def test_evaluate_right_after_fit_uses_the_fits_probabilities(fitted, monkeypatch) -> None:
    clf, data, _ = fitted
    expected = clf.evaluate(data)["accuracy"]
    monkeypatch.setattr(ImageClassifier, "_tta_proba", _no_prediction)
    assert clf.evaluate(data)["accuracy"] == expected
    with pytest.raises(AssertionError, match="predicted again"):
        clf.evaluate(data, tta="flip")  # other views are never the ones fit computed


def test_predict_split_of_a_missing_split_raises_data_error(fitted) -> None:
    clf, data, _ = fitted
    with pytest.raises(DataError, match="Split 'nope' not found"):
        clf.predict_split(clf.evaluation_dataset(data), "nope")
