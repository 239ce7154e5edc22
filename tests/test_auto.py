"""--strategy auto and `headstart advise`: measured facts in, a strategy and its reasons out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart import EMBEDDED_MODEL, ImageClassifier
from headstart.cli.main import main
from headstart.strategies.auto import DataFacts, decide
from headstart.synthetic import SOURCE_CLASSES, make_image


def _facts(per_class: float, probe_last: float, probe_early: float | None = None) -> DataFacts:
    return DataFacts(
        n_classes=4,
        n_train=int(4 * per_class),
        median_per_class=per_class,
        min_per_class=int(per_class),
        chance=0.25,
        probe_last=probe_last,
        probe_early=probe_early,
        early_layer="layer3" if probe_early is not None else None,
        probe_images=int(4 * per_class),
    )


def test_small_and_similar_data_gets_a_head_on_cached_features() -> None:
    advice = decide(_facts(40, 0.95, 0.80))
    assert (advice.strategy, advice.options) == ("features", {})
    assert "small and similar" in advice.reasons[-1]


def test_small_and_different_data_gets_features_of_an_earlier_stage() -> None:
    advice = decide(_facts(40, 0.50, 0.70))
    assert (advice.strategy, advice.options) == ("features", {"layer": "layer3"})


def test_large_and_similar_data_fine_tunes_the_top_stage() -> None:
    advice = decide(_facts(1000, 0.95))
    assert (advice.strategy, advice.options) == ("finetune", {"unfreeze": 1})


def test_large_and_different_data_fine_tunes_everything() -> None:
    advice = decide(_facts(1000, 0.35))
    assert (advice.strategy, advice.options) == ("finetune", {"unfreeze": "all"})


def test_reasons_quote_the_measured_numbers() -> None:
    text = decide(_facts(40, 0.95, 0.80)).explain()
    assert "median 40 per class" in text and "95.0%" in text and "80.0%" in text


def _write(root: Path, images: dict[str, list[np.ndarray]]) -> Path:
    for name, arrays in images.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(arrays):
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_advise_picks_differently_on_tiny_similar_and_larger_different_data(tmp_path) -> None:
    rng = np.random.default_rng(0)
    # Tiny and close to the backbone's pretraining: three of its own source classes.
    close = {
        f"{shape}_{texture}": [make_image(rng, shape, texture, 64) for _ in range(12)]
        for shape, texture in SOURCE_CLASSES[:3]
    }
    # Larger and unlike anything the features know: noise whose label no feature can predict.
    noise = {
        name: [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(440)]
        for name in ("a", "b")
    }
    clf = ImageClassifier(EMBEDDED_MODEL, num_workers=0, quiet=True, cache_dir=tmp_path / "c")
    small = clf.advise(_write(tmp_path / "close", close))
    large = clf.advise(_write(tmp_path / "noise", noise))
    assert small.strategy == "features" and "layer" not in small.options
    assert small.facts is not None and small.facts.probe_last is not None
    assert small.facts.probe_last > 0.8
    assert (large.strategy, large.options) == ("finetune", {"unfreeze": "all"})


def test_auto_training_records_the_choice_and_its_reasons(colour_data, tmp_path) -> None:
    clf = ImageClassifier(
        "test_resnet", weights="none", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).fit(colour_data)
    assert clf.advice_ is not None and clf.settings_.strategy == clf.advice_.strategy
    hs = clf.config()["headstart"]
    assert hs["strategy_reason"].startswith("chosen by --strategy auto")
    assert hs["advice"]["facts"]["n_classes"] == 3


def test_advise_cli_prints_json_with_strategy_and_reasons(colour_data, tmp_path, capsys):
    args = ["advise", str(colour_data), "--model", "test_resnet", "--weights", "none"]
    assert main([*args, "--json", "--workers", "0", "--cache-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] in ("features", "finetune") and out["reasons"]


@pytest.mark.parametrize("bad", ["nope"])
def test_unknown_strategy_lists_auto_among_the_choices(colour_data, bad) -> None:
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="auto"):
        ImageClassifier("test_resnet", strategy=bad).fit(colour_data)


def test_training_warns_but_goes_on_when_an_image_leaks_into_validation(tmp_path) -> None:
    import shutil

    from headstart.errors import DataWarning
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "d", {"train": 6, "val": 3})
    leaked = sorted((data / "train" / "red").iterdir())[0]
    shutil.copy(leaked, data / "val" / "red" / f"copy_{leaked.name}")
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        epochs=3,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
    )
    with pytest.warns(DataWarning, match="doctor"):
        clf.fit(data)
    assert clf.metrics_["val"]["n"] == 10


def test_few_images_per_class_add_cached_augmented_views() -> None:
    advice = decide(_facts(20, 0.95, 0.80))
    assert (advice.strategy, advice.options) == ("features", {"aug_views": 4})
    assert "few images per class" in advice.reasons[-1]
    early = decide(_facts(20, 0.50, 0.70))
    assert early.options == {"layer": "layer3", "aug_views": 4}


def test_many_small_classes_get_no_views_but_are_told_about_them() -> None:
    facts = dataclasses.replace(_facts(20, 0.95), n_classes=400, n_train=8000)
    advice = decide(facts)
    assert advice.options == {}
    assert "--aug-views 4 would help" in advice.reasons[-1]


def test_advised_views_train_unless_augmentation_is_off(colour_data, tmp_path) -> None:
    def fit(**options):
        return ImageClassifier(
            "test_resnet",
            weights="none",
            num_workers=0,
            quiet=True,
            cache_dir=tmp_path / "c",
            epochs=2,
            **options,
        ).fit(colour_data)

    # colour_data has a handful of images per class: auto adds views.
    assert fit().settings_.aug_views == 4
    assert fit(augment="none").settings_.aug_views == 0
