"""Class weights: `balanced` (scikit-learn's) for every head and strategy, and auto's use of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.errors import HeadstartError
from headstart.evaluation import classification_metrics, format_metrics
from headstart.evaluation.metrics import macro_f1
from headstart.heads import fit_head, fit_linear
from headstart.heads.weights import class_weights, weight_vector
from headstart.strategies.auto import DataFacts, OptionScore, decide
from tests._backbones import write_bn_backbone
from tests.conftest import write_colour_dataset


def _imbalanced(counts: tuple[int, ...], dim: int = 8, seed: int = 0, spread: float = 0.9):
    """Overlapping blobs, ``counts[c]`` images of class ``c``: the small class loses recall."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(counts), dim)) * spread
    y = np.repeat(np.arange(len(counts)), counts)
    x = centers[y] + rng.normal(size=(len(y), dim))
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def _recall(head: torch.nn.Module, x: np.ndarray, y: np.ndarray, label: int) -> float:
    with torch.no_grad():
        predicted = head(torch.from_numpy(x)).argmax(1).numpy()
    return float((predicted[y == label] == label).mean())


def test_balanced_weights_are_n_over_classes_times_class_count() -> None:
    weights = class_weights("balanced", np.array([0, 0, 0, 1]), 3)
    assert weights is not None
    np.testing.assert_allclose(weights.numpy(), [4 / (2 * 3), 4 / (2 * 1), 0.0])


def test_a_fixed_C_with_balanced_weights_solves_scikit_learns_weighted_problem() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _imbalanced((120, 40, 12))
    ours = fit_linear(x, y, None, None, 3, C=0.5, class_weight="balanced")
    scaler = StandardScaler().fit(x)
    theirs = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-8, max_iter=5000)
    theirs.fit(scaler.transform(x), y)
    with torch.no_grad():
        p_ours = torch.softmax(ours.head(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(p_ours, theirs.predict_proba(scaler.transform(x)), atol=2e-3)
    assert ours.to_dict()["class_weight"] == pytest.approx([172 / 360, 172 / 120, 172 / 36])


def test_C_is_chosen_on_the_class_weighted_held_out_loss() -> None:
    from headstart.heads.weights import weighted_cross_entropy

    x, y = _imbalanced((120, 40, 12))
    fit = fit_linear(x[:130], y[:130], x[130:], y[130:], 3, class_weight="balanced")
    assert fit.class_weight is not None and fit.val_loss is not None
    logits = torch.from_numpy(fit.heldout_logits)
    target = torch.from_numpy(fit.heldout_y)
    weighted = float(weighted_cross_entropy(logits, target, torch.tensor(fit.class_weight)))
    unweighted = float(torch.nn.functional.cross_entropy(logits, target))
    assert fit.val_loss == pytest.approx(weighted, rel=1e-5)
    assert abs(fit.val_loss - unweighted) > 1e-3


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_balanced_head_recalls_the_small_class_more_often(kind: str) -> None:
    x, y = _imbalanced((150, 150, 15), seed=1)
    tx, ty, vx, vy = x[:250], y[:250], x[250:], y[250:]
    test_x, test_y = _imbalanced((300, 300, 300), seed=1)  # the same centers, every class alike
    plain = fit_head(kind, tx, ty, vx, vy, 3)
    balanced = fit_head(kind, tx, ty, vx, vy, 3, class_weight="balanced")
    assert _recall(balanced.head, test_x, test_y, 2) > _recall(plain.head, test_x, test_y, 2) + 0.1
    assert balanced.selection["class_weight"] is not None
    assert plain.selection.get("class_weight") is None


def test_the_class_weight_option_offers_the_librarys_choices() -> None:
    from headstart.cli._common import CLASS_WEIGHT_CHOICES
    from headstart.heads.weights import CLASS_WEIGHTS

    assert CLASS_WEIGHT_CHOICES == CLASS_WEIGHTS


def test_class_weight_by_name_maps_to_class_order_and_rejects_unknown_names() -> None:
    assert weight_vector({"cat": 3.0}, ["cat", "dog"]) == [3.0, 1.0]
    assert weight_vector("balanced", ["cat", "dog"]) == "balanced"
    with pytest.raises(HeadstartError, match="'cta', not a class of this data"):
        weight_vector({"cta": 3.0}, ["cat", "dog"])
    with pytest.raises(HeadstartError, match="positive number"):
        weight_vector({"cat": -1}, ["cat", "dog"])


# ---------------------------------------------------------------- runs, strategies, the CLI

SMALL = {"blue": (40, 60, 200)}
LARGE = {"red": (200, 40, 40), "green": (40, 180, 60)}
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _imbalanced_folder(root: Path, small: int = 3) -> Path:
    """red and green with 12 training images each, blue with ``small``: 4x imbalanced."""
    write_colour_dataset(root, {"train": 12, "val": 4, "test": 4}, classes=LARGE)
    return write_colour_dataset(root, {"train": small, "val": 2, "test": 2}, classes=SMALL, seed=1)


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _imbalanced_folder(tmp_path_factory.mktemp("imbalanced"))


@pytest.fixture(scope="module")
def balanced_run(imbalanced: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    cache = tmp_path_factory.mktemp("cache")
    args = ["train", str(imbalanced), "--out", str(run), "--cache-dir", str(cache)]
    fast = ["--model", "test_resnet", "--weights", "none", "--workers", "0", "-q"]
    assert main([*args, *fast, "--strategy", "features", "--class-weight", "balanced"]) == 0
    return run


def test_train_class_weight_balanced_is_recorded_in_the_run(balanced_run: Path) -> None:
    hs = json.loads((balanced_run / "config.json").read_text())["headstart"]
    assert hs["training"]["class_weight"] == "balanced"
    # The final fit is on train + val: 5 blue, 16 green, 16 red (classes in sorted order).
    assert hs["training"]["selection"]["class_weight"] == pytest.approx([37 / 15, 37 / 48, 37 / 48])


def test_info_says_the_head_was_fitted_with_class_weights(balanced_run: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["info", str(balanced_run)]) == 0
    assert "(class weights 2.47, 0.771, 0.771)" in capsys.readouterr().out


def test_evaluate_prints_balanced_accuracy_and_macro_f1(balanced_run, imbalanced, capsys) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(balanced_run), str(imbalanced), "--json", "--workers", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    from sklearn.metrics import balanced_accuracy_score, f1_score

    # The confusion matrix, unrolled into one (truth, prediction) pair an image.
    matrix = np.asarray(out["confusion_matrix"])
    pairs = [(t, q) for t, q in np.ndindex(*matrix.shape) for _ in range(matrix[t, q])]
    truth, predicted = zip(*pairs, strict=True)
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert out["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    assert main(["evaluate", str(balanced_run), str(imbalanced), "--workers", "0"]) == 0
    assert "balanced accuracy" in capsys.readouterr().out


def test_report_shows_balanced_accuracy_at_a_glance(balanced_run: Path) -> None:
    from headstart.reporting import write_report

    page = write_report(balanced_run).read_text(encoding="utf-8")
    glance = page[page.index('id="glance"') :]
    assert "<span>balanced accuracy</span>" in glance[: glance.index("</section>")]


@pytest.mark.parametrize("strategy", ["augment", "finetune", "scratch"])
def test_end_to_end_strategies_train_and_validate_on_the_class_weighted_loss(
    strategy: str, imbalanced: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import headstart.strategies._loop as loop

    seen: list[torch.Tensor | None] = []
    weighted = loop.weighted_cross_entropy

    def recording(logits, y, weights, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(weights)
        return weighted(logits, y, weights, **kwargs)

    monkeypatch.setattr(loop, "weighted_cross_entropy", recording)
    model = write_bn_backbone(tmp_path / "backbone")
    clf = ImageClassifier(
        model,
        strategy=strategy,
        class_weight="balanced",
        epochs=1,
        batch_size=16,
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    ).fit(imbalanced)
    assert clf.settings_.class_weight == "balanced"
    assert seen, "the loop computed no loss"
    for weights in seen:  # every training step and every validation: 27 images, 3/12/12
        assert weights is not None
        np.testing.assert_allclose(weights.numpy(), [27 / 9, 27 / 36, 27 / 36], rtol=1e-6)


def test_an_unknown_class_weight_is_refused_in_one_line(imbalanced: Path) -> None:
    with pytest.raises(HeadstartError, match="Invalid class_weight='balance'.*'balanced'"):
        ImageClassifier("test_resnet", strategy="features", class_weight="balance").fit(imbalanced)
    with pytest.raises(HeadstartError, match="'purple', not a class of this data"):
        ImageClassifier(
            "test_resnet",
            weights="none",
            strategy="features",
            class_weight={"purple": 2.0},
            num_workers=0,
            quiet=True,
        ).fit(imbalanced)


# ---------------------------------------------------------------- auto


def _facts(unweighted_f1: float | None, balanced_f1: float | None, **kw) -> DataFacts:
    baseline = OptionScore("linear head, last stage", {}, 0.3, 0.9, C=1.0, macro_f1=unweighted_f1)
    values = dict(
        n_classes=3,
        n_train=120,
        median_per_class=50,
        min_per_class=10,
        chance=1 / 3,
        protocol="5-fold cross-validation over train + val",
        protocol_reason="no validation split",
        scores=(baseline,),
        imbalance=6.0,
    )
    if balanced_f1 is not None:
        values.update(
            unweighted=baseline,
            balanced=OptionScore(
                "linear head, last stage, balanced class weights",
                {"class_weight": "balanced"},
                0.35,
                0.88,
                C=1.0,
                macro_f1=balanced_f1,
            ),
        )
    values.update(kw)
    return DataFacts(**values)


def test_auto_keeps_balanced_weights_when_they_raise_held_out_macro_f1() -> None:
    advice = decide(_facts(0.70, 0.78))
    assert advice.options == {"class_weight": "balanced"}
    assert "--class-weight balanced" in advice.explain()
    assert "macro-F1 of linear head, last stage 0.700 unweighted, 0.780" in advice.explain()
    large = decide(_facts(0.70, 0.78, median_per_class=500))
    assert large.strategy == "finetune" and large.options["class_weight"] == "balanced"


def test_auto_stays_unweighted_when_balanced_weights_do_not_raise_macro_f1() -> None:
    for balanced_f1 in (0.70, 0.69):
        advice = decide(_facts(0.70, balanced_f1))
        assert advice.options == {}
        assert "unweighted kept (balanced did not improve it)" in advice.explain()


def test_auto_says_class_weights_given_by_the_user_were_not_measured() -> None:
    advice = decide(_facts(0.70, None, class_weight="none"))
    assert advice.options == {} and "class weights: none, as given" in advice.explain()


def test_advise_measures_balanced_weights_on_imbalanced_data_only(
    imbalanced: Path, colour_data: Path, tmp_path: Path
) -> None:
    clf = ImageClassifier(
        "test_resnet",
        weights="none",
        head="linear",
        augment="none",  # no augmented views to measure: seconds, not half a minute
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "c",
    )
    facts = clf.advise(imbalanced).facts
    assert facts is not None and facts.imbalance == 4.0
    assert facts.balanced is not None and facts.balanced.macro_f1 is not None
    assert facts.unweighted is not None and facts.unweighted.macro_f1 is not None
    even = clf.advise(colour_data).facts
    assert even is not None and even.imbalance == 1.0 and even.balanced is None
    clf.class_weight = "none"  # given: used as given, not measured
    given = clf.advise(imbalanced)
    assert given.facts is not None and given.facts.balanced is None
    assert "class_weight" not in given.options


# ---------------------------------------------------------------- metrics


def test_balanced_accuracy_equals_scikit_learns() -> None:
    from sklearn.metrics import balanced_accuracy_score, f1_score

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [50, 30, 5])
    proba = rng.dirichlet(np.ones(4), len(y))
    proba[np.arange(len(y)), y] += 0.3 * rng.random(len(y))
    proba[:, 3] = 0.0  # "d": neither true nor predicted, and left out of both means
    ours = classification_metrics(y, proba, ["a", "b", "c", "d"])
    assert ours["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, proba.argmax(1)))
    assert macro_f1(y, proba.argmax(1), 4) == pytest.approx(
        f1_score(y, proba.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    )
    assert "balanced accuracy" in format_metrics(ours)
