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
from headstart.strategies.auto import DataFacts, OptionScore, decide
from headstart.synthetic import SOURCE_CLASSES, make_image


def _facts(per_class: float, *scores: OptionScore, unmeasured: str | None = None) -> DataFacts:
    return DataFacts(
        n_classes=4,
        n_train=int(4 * per_class),
        median_per_class=per_class,
        min_per_class=int(per_class),
        chance=0.25,
        protocol="5-fold cross-validation over train + val",
        protocol_reason="60 validation images",
        scores=scores,
        unmeasured=unmeasured,
    )


def _linear(loss: float, accuracy: float) -> OptionScore:
    return OptionScore("linear head, last stage", {}, loss, accuracy, C=0.1)


EARLY = OptionScore("linear head, layer3", {"layer": "layer3"}, 0.40, 0.85, C=1.0)
VIEWS = OptionScore("linear head + 4 augmented views", {"aug_views": 4}, 0.45, 0.84, C=1.0)
MLP = OptionScore("MLP head", note="not measured: the validation split is too small")


def test_small_data_keeps_the_plain_linear_head_when_nothing_beats_it() -> None:
    advice = decide(_facts(40, _linear(0.30, 0.95), EARLY, VIEWS, MLP))
    assert (advice.strategy, advice.options) == ("features", {})
    assert "no other option beat it" in advice.reasons[-1]


def test_small_data_takes_the_option_with_the_lowest_held_out_loss() -> None:
    advice = decide(_facts(40, _linear(0.60, 0.80), EARLY, VIEWS, MLP))
    assert (advice.strategy, advice.options) == ("features", {"layer": "layer3"})
    views_best = dataclasses.replace(VIEWS, log_loss=0.35)
    assert decide(_facts(40, _linear(0.6, 0.8), EARLY, views_best)).options == {"aug_views": 4}


def test_an_option_within_the_margin_of_the_baseline_is_not_taken() -> None:
    close = dataclasses.replace(EARLY, log_loss=0.595)
    assert decide(_facts(40, _linear(0.60, 0.80), close)).options == {}


def test_large_and_similar_data_fine_tunes_the_top_stage() -> None:
    advice = decide(_facts(1000, _linear(0.2, 0.95)))
    assert (advice.strategy, advice.options) == ("finetune", {"unfreeze": 1})


def test_large_and_different_data_fine_tunes_everything() -> None:
    advice = decide(_facts(1000, _linear(1.2, 0.35)))
    assert (advice.strategy, advice.options) == ("finetune", {"unfreeze": "all"})


def test_explanation_lists_every_option_measured_with_its_numbers() -> None:
    text = decide(_facts(40, _linear(0.60, 0.80), EARLY, VIEWS, MLP)).explain()
    assert "median 40 per class" in text and "5-fold cross-validation" in text
    assert "log-loss 0.600, accuracy 80.0%" in text
    assert "linear head, layer3: log-loss 0.400, accuracy 85.0%, C=1 <- kept" in text
    assert "linear head + 4 augmented views: log-loss 0.450" in text
    assert "MLP head: not measured: the validation split is too small" in text


def test_an_unmeasurable_probe_is_said_and_never_read_as_similar() -> None:
    advice = decide(_facts(1000, unmeasured="fewer than two classes with two or more images"))
    assert (advice.strategy, advice.options) == ("features", {})
    text = advice.explain()
    assert "could not be measured: fewer than two classes" in text
    assert "similar" not in text and "n/a" not in text


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
    assert small.facts is not None and small.facts.baseline is not None
    assert (small.facts.baseline.accuracy or 0) > 0.8
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


def test_advise_reports_the_progress_of_each_options_head_fit_unless_quiet(
    colour_data, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("headstart.progress.QUIET_SECONDS", 0.0)  # a fit within a second shows none
    args = ["advise", str(colour_data), "--model", "test_resnet", "--weights", "none"]
    args += ["--workers", "0", "--cache-dir", str(tmp_path)]
    assert main(args) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("measuring linear head, last stage: ") for line in err)
    assert all("solves" in line for line in err if line.startswith("measuring linear head"))
    assert main([*args, "--quiet"]) == 0
    assert "measuring linear head" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["nope"])
def test_unknown_strategy_lists_auto_among_the_choices(colour_data, bad) -> None:
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="auto"):
        ImageClassifier("test_resnet", strategy=bad).fit(colour_data)


def _plain_features(cache_dir: Path) -> ImageClassifier:
    """The linear head on cached features, not refitted: val keeps its own metrics."""
    return ImageClassifier(
        "test_resnet",
        weights="none",
        strategy="features",
        refit=False,
        num_workers=0,
        quiet=True,
        cache_dir=cache_dir,
    )


def test_training_warns_but_goes_on_when_an_image_leaks_into_validation(tmp_path) -> None:
    import shutil

    from headstart.errors import DataWarning
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "d", {"train": 6, "val": 3})
    leaked = sorted((data / "train" / "red").iterdir())[0]
    shutil.copy(leaked, data / "val" / "red" / f"copy_{leaked.name}")
    clf = _plain_features(tmp_path / "c")
    with pytest.warns(DataWarning, match="doctor"):
        clf.fit(data)
    assert clf.metrics_["val"]["n"] == 10


def test_training_warns_once_per_kind_of_problem_however_many_groups_show_it(tmp_path) -> None:
    import shutil
    import warnings

    from headstart.errors import DataWarning
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "d", {"train": 6, "val": 3})
    for picture in sorted((data / "train" / "red").iterdir())[:3]:  # three pictures, two labels
        shutil.copy(picture, data / "train" / "blue" / f"copy_{picture.name}")
    clf = _plain_features(tmp_path / "c")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(data)
    lines = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    conflicts = [line for line in lines if "carry different labels" in line]
    assert len(conflicts) == 1, lines
    assert "2 identical files" in conflicts[0] and "; 2 more groups like it" in conflicts[0]
    assert conflicts[0].endswith("(`headstart doctor DATA` lists them all)")


def test_auto_measures_views_unless_augmentation_is_off(colour_data, tmp_path) -> None:
    def advise(**options):
        return ImageClassifier(
            "test_resnet",
            weights="none",
            num_workers=0,
            quiet=True,
            cache_dir=tmp_path / "c",
            **options,
        ).advise(colour_data)

    views = [o for o in advise().facts.scores if "augmented views" in o.name]
    assert views and views[0].measured
    off = [o for o in advise(augment="none").facts.scores if "augmented views" in o.name]
    assert not off[0].measured and "changes no image" in off[0].note


def test_auto_never_keeps_views_that_a_flip_sensitive_task_does_not_survive(tmp_path) -> None:
    """Arrows pointing left or right: a horizontal flip swaps the labels, so views hurt."""
    rng = np.random.default_rng(0)

    def arrow(right: bool) -> np.ndarray:
        """A left-pointing arrow at a random place, or exactly its mirror image."""
        img = rng.integers(200, 256, (32, 32, 3), dtype=np.uint8)
        row, start = int(rng.integers(8, 24)), int(rng.integers(3, 8))
        end = start + int(rng.integers(14, 22))
        img[row - 1 : row + 2, start:end] = 0
        for k in range(6):
            img[max(0, row - 6 + k) : row + 7 - k, start + k] = 0
        return img[:, ::-1].copy() if right else img

    data = _write(
        tmp_path / "arrows",
        {"left": [arrow(False) for _ in range(24)], "right": [arrow(True) for _ in range(24)]},
    )
    advice = ImageClassifier(
        EMBEDDED_MODEL,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
        augment={"hflip": True},
    ).advise(data)
    views = next(o for o in advice.facts.scores if "augmented views" in o.name)
    assert views.measured and views.log_loss > advice.facts.baseline.log_loss
    assert "aug_views" not in advice.options


def test_each_options_label_names_the_stage_it_was_scored_on(colour_data, tmp_path) -> None:
    advice = ImageClassifier(
        "test_resnet", weights="none", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).advise(colour_data)
    assert advice.options.get("layer") == "layer3"  # the earlier stage is kept on this task
    on_stage = [o for o in advice.facts.scores if o.options.get("layer")]
    assert len(on_stage) >= 2  # the stage itself, and what was scored on its features
    for option in on_stage:
        assert option.options["layer"] in option.name, option.name
    assert any(
        r.strip().startswith("linear head, layer3 + 4 augmented views") for r in advice.reasons
    )


def test_a_stage_the_user_chose_is_the_one_every_option_is_scored_on(colour_data, tmp_path) -> None:
    clf = ImageClassifier(
        "test_resnet", weights="none", layer=1, num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    )
    widths: set[int] = set()
    extract = clf._extract

    def recording(net, paths, **kwargs):
        result = extract(net, paths, **kwargs)
        widths.add(int(result.features.shape[1]))
        return result

    clf._extract = recording  # type: ignore[method-assign]
    advice = clf.advise(colour_data)

    assert len(widths) == 1 and widths != {512}  # stage 1's features, never the last stage's
    baseline = advice.facts.scores[0]
    assert baseline.name == f"linear head, {baseline.options['layer']}"
    assert all(
        o.options.get("layer") == baseline.options["layer"]
        for o in advice.facts.scores[1:]
        if o.measured
    )


def test_the_facts_auto_states_count_only_the_training_images_that_decode(tmp_path) -> None:
    from headstart.data import load_dataset
    from headstart.features import ExtractResult
    from headstart.strategies.auto import measure
    from tests.conftest import write_colour_dataset

    data = write_colour_dataset(tmp_path / "data", {"train": 6, "val": 3}, size=8)
    for i in range(3):  # 'red' looks the largest class by its files, but is not by its images
        (data / "train" / "red" / f"bad_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")

    def extract(backbone, paths, desc, view=None) -> ExtractResult:  # what decodes gets one
        kept = [p for p in paths if not p.name.startswith("bad_")]
        rng = np.random.default_rng(len(kept))
        return ExtractResult(kept, rng.normal(size=(len(kept), 4)).astype(np.float32))

    facts = measure(load_dataset(data), None, extract, early_layer=None, views=0)  # type: ignore[arg-type]
    assert (facts.n_train, facts.median_per_class, facts.imbalance) == (18, 6.0, 1.0)
