"""`headstart compare`: backbones scored on the user's data by one protocol, timed, one chosen."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from headstart import EMBEDDED_MODEL
from headstart.cli.main import main
from headstart.compare import AUTO_MODELS, Comparison, compare_backbones, expand_models
from headstart.data import load_dataset
from headstart.errors import BackboneNotFoundError, InvalidParameterError
from headstart.features import ExtractResult
from tests._backbones import write_bn_backbone

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two stub backbones with different names, input sizes and so cache namespaces."""
    root = tmp_path_factory.mktemp("stubs")
    return write_bn_backbone(root / "sharp"), write_bn_backbone(root / "blurry", size=24)


class FakeExtractor:
    """Features whose quality each backbone name decides, and a clock each extraction advances
    by its images over the backbone's rate: a comparison's choices without real models."""

    def __init__(self, labels: dict[Path, int], noise: dict[str, float], rate: dict[str, float]):
        self.labels, self.noise, self.rate = labels, noise, rate
        self.now = 0.0
        self.calls: list[tuple[str, int, bool]] = []

    def clock(self) -> float:
        return self.now

    def __call__(self, net, paths: Sequence[Path], *, desc: str, cache: bool = True):
        model = str(net.spec["model"])
        self.calls.append((model, len(paths), cache))
        self.now += len(paths) / self.rate[model]
        rng = np.random.default_rng(len(self.calls))
        onehot = np.eye(3, 8, dtype=np.float32)[[self.labels[p] for p in paths]]
        feats = onehot + rng.normal(0, self.noise[model], (len(paths), 8)).astype(np.float32)
        return ExtractResult(list(paths), feats, n_computed=len(paths))


@pytest.fixture(scope="module")
def dataset(colour_data: Path):
    return load_dataset(colour_data)


def _compare(dataset, models, noise, rate, **options) -> tuple[Comparison, FakeExtractor]:
    labels = {s.path: s.label for split in dataset.splits.values() for s in split}
    fake = FakeExtractor(labels, noise, rate)
    return compare_backbones(dataset, models, fake, clock=fake.clock, **options), fake


def test_compare_recommends_the_lowest_held_out_log_loss_and_tabulates_every_backbone(
    dataset, stubs
) -> None:
    sharp, blurry = stubs
    result, _ = _compare(
        dataset, [blurry, sharp], {sharp: 0.2, blurry: 3.0}, {sharp: 50, blurry: 50}
    )
    assert result.recommended == sharp
    by_model = {s.model: s for s in result.scores}
    assert by_model[sharp].log_loss < by_model[blurry].log_loss
    assert by_model[sharp].input_size == (32, 32) and by_model[blurry].input_size == (24, 24)
    table = result.table()
    starred = next(line for line in table.splitlines() if line.startswith("*"))
    assert sharp in starred
    for column in ("accuracy", "log-loss", "img/s", "features", "params", "input"):
        assert column in table.splitlines()[0]
    # Every backbone on the same train + val images (never test), by one protocol.
    assert result.scored == {"train": 24, "val": 12}
    assert "cross-validation" in result.protocol


def test_the_concatenation_of_the_best_two_is_scored(dataset, stubs) -> None:
    sharp, blurry = stubs
    result, _ = _compare(
        dataset, [sharp, blurry], {sharp: 0.3, blurry: 0.8}, {sharp: 40, blurry: 10}
    )
    assert result.pair is not None and result.pair.measured
    assert result.pair.model == f"{sharp} + {blurry}"
    assert result.pair.features == sum(s.features or 0 for s in result.scores)
    assert result.pair.images_per_second == pytest.approx(1 / (1 / 40 + 1 / 10))
    assert result.pair.model in result.table()
    # A run holds one backbone: the recommendation is always a name --model takes.
    assert result.recommended in (sharp, blurry)


def test_budget_recommends_the_best_backbone_whose_whole_extraction_fits(dataset, stubs) -> None:
    sharp, blurry = stubs
    noise, rate = {sharp: 0.2, blurry: 3.0}, {sharp: 1.0, blurry: 1000.0}
    unbounded, _ = _compare(dataset, [sharp, blurry], noise, rate)
    assert unbounded.recommended == sharp
    images = sum(len(s) for s in dataset.splits.values())
    # The sharp one extracts the whole dataset (test images too) in 48 s; the blurry one in 0.05 s.
    budgeted, _ = _compare(dataset, [sharp, blurry], noise, rate, budget=10)
    assert budgeted.recommended == blurry
    assert budgeted.images == images
    assert "within 10 s" in budgeted.reason and sharp in budgeted.reason
    assert _compare(dataset, [sharp, blurry], noise, rate, budget=60)[0].recommended == sharp


def test_cached_features_are_timed_by_a_short_uncached_pass(dataset, stubs) -> None:
    sharp, blurry = stubs
    labels = {s.path: s.label for split in dataset.splits.values() for s in split}
    fake = FakeExtractor(labels, {sharp: 0.2, blurry: 3.0}, {sharp: 20.0, blurry: 80.0})
    real_call = fake.__call__

    def cached(net, paths, *, desc, cache=True):
        result = real_call(net, paths, desc=desc, cache=cache)
        return ExtractResult(result.paths, result.features, n_computed=0, n_cached=len(paths))

    result = compare_backbones(dataset, [sharp, blurry], cached, clock=fake.clock)
    assert [cache for _, _, cache in fake.calls] == [True, False, True, False]
    rates = {s.model: (s.images_per_second, s.rate_from) for s in result.scores}
    assert rates == {sharp: (pytest.approx(20.0), "probe"), blurry: (pytest.approx(80.0), "probe")}


def test_auto_skips_and_names_the_backbones_not_to_be_had_offline(
    dataset, monkeypatch, tmp_path
) -> None:
    from huggingface_hub import constants

    import headstart.compare as compare

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    monkeypatch.setattr(compare, "list_cached_backbones", lambda: [])  # nor anywhere else
    rate = dict.fromkeys(AUTO_MODELS, 100.0)
    result, fake = _compare(dataset, ["auto"], dict.fromkeys(AUTO_MODELS, 0.3), rate)
    assert result.recommended == EMBEDDED_MODEL
    assert {model for model, _, _ in fake.calls} == {EMBEDDED_MODEL}
    skipped = [s for s in result.scores if s.note]
    assert [s.model for s in skipped] == list(AUTO_MODELS[1:])
    assert all("offline" in s.note for s in skipped)
    table = result.table()
    assert "skipped, weights not to be had offline" in table
    assert all(model in table for model in AUTO_MODELS)


def test_a_named_backbone_not_to_be_had_offline_is_an_error(dataset, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(BackboneNotFoundError, match="resnet18.a1_in1k.*headstart-tiny"):
        _compare(
            dataset,
            [EMBEDDED_MODEL, "resnet18.a1_in1k"],
            {EMBEDDED_MODEL: 0.3},
            {EMBEDDED_MODEL: 9},
        )


def test_models_are_split_on_commas_and_auto_expands() -> None:
    assert expand_models(["a,b", "c"]) == (["a", "b", "c"], set())
    names, added = expand_models(["auto", "local-dir:x"])
    assert names[: len(AUTO_MODELS)] == list(AUTO_MODELS) and names[-1] == "local-dir:x"
    assert set(AUTO_MODELS) <= added  # what auto added is skipped when not to be had, not refused
    assert "local-dir:x" not in added
    with pytest.raises(InvalidParameterError, match="twice"):
        expand_models(["a", "a"])
    with pytest.raises(InvalidParameterError, match="--model"):
        expand_models([" "])


def test_compare_cli_prints_json_with_the_recommended_name_as_given(
    colour_data, stubs, tmp_path, capsys
) -> None:
    sharp, blurry = stubs
    out = tmp_path / "cmp"
    args = ["compare", str(colour_data), "--model", sharp, blurry, "--out", str(out)]
    assert main([*args, "--json", "--workers", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["recommended"] in (sharp, blurry)
    assert [s["model"] for s in printed["scores"]] == [sharp, blurry]
    assert printed["pair"]["model"] in (f"{sharp} + {blurry}", f"{blurry} + {sharp}")
    assert json.loads((out / "compare.json").read_text())["recommended"] == printed["recommended"]
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    # The features are cached: a second comparison extracts nothing (it only times a few).
    assert main([*args, "--quiet", "--workers", "0"]) == 0
    text = capsys.readouterr().out
    assert (
        f"comparison: {out / 'compare.json'}" in text and f"picture: {out / 'compare.png'}" in text
    )
    assert "recommended: " in text


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--model", EMBEDDED_MODEL, "--budget", "0"], "--budget"),
        (["--model", "resnt50"], "Unknown backbone"),
        (["--model", EMBEDDED_MODEL, EMBEDDED_MODEL], "twice"),
    ],
)
def test_bad_input_exits_2_with_one_line(colour_data, tmp_path, capsys, extra, match) -> None:
    assert main(["compare", str(colour_data), *extra, "--out", str(tmp_path / "o"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and match in err


def test_missing_data_exits_2_with_one_line(tmp_path, capsys) -> None:
    assert main(["compare", str(tmp_path / "nope"), "--model", EMBEDDED_MODEL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_train_with_several_models_trains_on_the_recommended_one_and_records_the_comparison(
    colour_data, stubs, tmp_path, capsys
) -> None:
    sharp, blurry = stubs
    out = tmp_path / "run"
    args = ["train", str(colour_data), "--model", f"{sharp},{blurry}", "--out", str(out)]
    assert main([*args, "--strategy", "features", "--workers", "0", "-q"]) == 0
    recorded = json.loads((out / "compare.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["headstart"]["backbone"]["model"] == recorded["recommended"]
    assert recorded["recommended"] in (sharp, blurry)
    assert (out / "compare.png").is_file()
    report = (out / "report.html").read_text()
    assert "Which backbone" in report and "(trained on)" in report


def test_train_with_one_model_compares_nothing(colour_data, stubs, tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", str(colour_data), "--model", stubs[0], "--out", str(out), "-q"]
    assert main([*args, "--strategy", "features", "--workers", "0"]) == 0
    assert not (out / "compare.json").exists()
    assert "Which backbone" not in (out / "report.html").read_text()


def _fake_hf_cache(root: Path, repo: str) -> Path:
    """A Hugging Face cache folder holding ``repo``'s model.safetensors, in the hub's layout."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc")
    (folder / "blobs").mkdir()
    (folder / "blobs" / "deadbeef").write_bytes(b"x")
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "snapshots" / "abc" / "model.safetensors").symlink_to("../../blobs/deadbeef")
    return root


def test_backbones_whose_weights_are_on_this_machine_are_listed_for_auto(
    monkeypatch, tmp_path
) -> None:
    from huggingface_hub import constants

    from headstart.backbones import list_cached_backbones

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(_fake_hf_cache(tmp_path / "hf", "timm/x.y")))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    notop = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    (tmp_path / "keras" / "models" / notop).write_bytes(b"x")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = list_cached_backbones()
    assert {EMBEDDED_MODEL, "x.y", "keras:VGG16", "tv:resnet18.IMAGENET1K_V1"} <= set(cached)
    names, added = expand_models(["auto"])
    assert {"x.y", "keras:VGG16", "tv:resnet18.IMAGENET1K_V1"} <= added <= set(names)


def test_auto_scores_a_stratified_sample_of_large_data(dataset, monkeypatch) -> None:
    import headstart.compare as compare

    monkeypatch.setattr(compare, "AUTO_MODELS", (EMBEDDED_MODEL,))
    monkeypatch.setattr(compare, "list_cached_backbones", lambda: [])
    monkeypatch.setattr(compare, "AUTO_SAMPLE_IMAGES", 18)
    result, fake = _compare(dataset, ["auto"], {EMBEDDED_MODEL: 0.3}, {EMBEDDED_MODEL: 50.0})
    assert result.scored == {"train": 12, "val": 6}  # 24 + 12 images scaled to 18, per class
    assert fake.calls[1] == (EMBEDDED_MODEL, 18, True)  # after the timing probe
    assert result.images == 48  # the budget still counts the whole dataset


def test_auto_leaves_out_a_backbone_that_would_take_it_past_its_time(
    dataset, stubs, monkeypatch
) -> None:
    import headstart.compare as compare

    sharp, blurry = stubs
    monkeypatch.setattr(compare, "AUTO_MODELS", (sharp, blurry))
    monkeypatch.setattr(compare, "list_cached_backbones", lambda: [])
    monkeypatch.setattr(compare, "AUTO_SECONDS", 10.0)
    result, fake = _compare(dataset, ["auto"], {sharp: 0.3, blurry: 0.3}, {sharp: 100, blurry: 1})
    assert result.recommended == sharp
    assert {model for model, _, cache in fake.calls if cache} == {sharp}
    slow = next(s for s in result.scores if s.model == blurry)
    assert not slow.measured and "past its 10 s" in slow.note
    assert blurry in result.table()


def test_a_budget_nothing_fits_recommends_the_fastest_and_says_so(dataset, stubs) -> None:
    sharp, blurry = stubs
    noise, rate = {sharp: 0.2, blurry: 3.0}, {sharp: 1.0, blurry: 2.0}
    result, _ = _compare(dataset, [sharp, blurry], noise, rate, budget=1)
    assert result.recommended == blurry
    assert "none extracts the whole dataset within 1 s" in result.reason
