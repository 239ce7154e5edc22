"""`headstart export`: ONNX and TorchScript files that give predict's probabilities."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from headstart import ImageClassifier
from headstart.cli.main import main
from headstart.data import load_image
from headstart.errors import ExportError, MissingDependencyError
from headstart.export import (
    PARITY_TOLERANCE,
    TYPICALITY_TOLERANCE,
    export_classifier,
    export_run,
)
from headstart.heads.typicality import SCORES
from tests._images import write_truncated
from tests.conftest import write_colour_dataset

onnxruntime = pytest.importorskip("onnxruntime")


def _fit(tmp_path: Path, data: Path, model: str, **kwargs) -> ImageClassifier:
    params = dict(
        weights="none" if model != "headstart-tiny" else "default",
        strategy="features",
        num_workers=0,
        quiet=True,
        cache_dir=tmp_path / "cache",
    )
    params.update(kwargs)
    return ImageClassifier(model, **params).fit(data)


def _test_images(data: Path) -> list[Path]:
    return sorted((data / "test").rglob("*.*"))[::2]


def _run_onnx(path: Path, batch: np.ndarray, output: str = "probabilities") -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([output], {"images": batch})[0]


def _onnx_outputs(path: Path) -> list[str]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [o.name for o in session.get_outputs()]


def _float_batch(clf: ImageClassifier, paths: list[Path]) -> np.ndarray:
    """What the float contract says: `headstart preprocess` tensors, stacked."""
    pre = clf.preprocess_
    return np.stack([pre(load_image(p, draft_size=pre.draft_size)).numpy() for p in paths])


def _uint8_batch(clf: ImageClassifier, paths: list[Path]) -> np.ndarray:
    pre = clf.preprocess_
    return np.stack(
        [np.array(pre.resize_and_crop(load_image(p, draft_size=pre.draft_size))) for p in paths]
    )


# One case per backbone family, head and input contract; each trains in about a second.
CASES = [
    pytest.param("headstart-tiny", {}, "onnx", "float", id="shipped-linear-onnx-float"),
    pytest.param(
        "headstart-tiny",
        {"head": "mlp", "strategy": "finetune", "unfreeze": 1, "epochs": 1, "batch_size": 8},
        "onnx",
        "uint8",
        id="shipped-mlp-finetuned-onnx-uint8",
    ),
    pytest.param(
        "headstart-tiny",
        {"preprocess": {"keras": "caffe"}},
        "onnx",
        "uint8",
        id="shipped-bgr-caffe-onnx-uint8",
    ),
    pytest.param("test_vit", {}, "onnx", "float", id="timm-vit-linear-onnx-float"),
    pytest.param("tv:squeezenet1_1", {"head": "mlp"}, "onnx", "uint8", id="tv-squeezenet-onnx"),
    pytest.param(
        "tv:mobilenet_v3_small", {"head": "mlp"}, "torchscript", "uint8", id="tv-mobilenet-ts"
    ),
]


# The caffe case is wrong preprocessing on purpose: its override and pretrained-view warnings are
# what headstart says about it, not what this test is about.
@pytest.mark.filterwarnings("ignore::headstart.errors.PreprocessOverrideWarning")
@pytest.mark.filterwarnings("ignore::headstart.errors.PretrainedViewWarning")
@pytest.mark.parametrize(("model", "kwargs", "fmt", "contract"), CASES)
def test_export_matches_predict_for_every_backbone_family(
    colour_data, tmp_path, model, kwargs, fmt, contract
) -> None:
    clf = _fit(tmp_path, colour_data, model, **kwargs)
    out = tmp_path / f"model.{fmt}"
    result = export_classifier(clf, out, format=fmt, input=contract)
    assert result.max_abs_diff <= PARITY_TOLERANCE
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["classes"] == clf.classes_
    assert sidecar["input_contract"] == contract
    assert sidecar["preprocess"]["mean"] == list(clf.preprocess_.mean)
    # Independently of the exporter's own check: the file, fed per the sidecar's contract.
    paths = _test_images(colour_data)
    batch = _uint8_batch(clf, paths) if contract == "uint8" else _float_batch(clf, paths)
    assert list(batch.shape[1:]) == sidecar["input"]["shape"][1:]
    if fmt == "onnx":
        got = _run_onnx(out, batch)
    else:
        got = torch.jit.load(str(out))(torch.from_numpy(batch))[0].detach().numpy()
    np.testing.assert_allclose(got, clf.predict_proba(paths), atol=PARITY_TOLERANCE, rtol=0)
    # Every family's pooled features carry the run's typicality out too (end-to-end included).
    assert result.typicality_max_abs_diff is not None
    assert result.typicality_max_abs_diff <= TYPICALITY_TOLERANCE


def test_export_bakes_the_calibration_temperature_into_the_graph(colour_data, tmp_path) -> None:
    from headstart.heads.modules import fold_temperature

    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    paths = _test_images(colour_data)
    before = clf.predict_proba(paths)
    # What calibration does after training; large, as these colours give saturated logits.
    fold_temperature(clf.head_, 1000.0)
    clf.temperature_ = 1000.0
    result = export_classifier(clf, tmp_path / "m.onnx")
    got = _run_onnx(result.path, _float_batch(clf, paths))
    assert json.loads(result.sidecar.read_text())["calibration"] == {"temperature": 1000.0}
    np.testing.assert_allclose(got, clf.predict_proba(paths), atol=PARITY_TOLERANCE, rtol=0)
    assert np.abs(got - before).max() > 0.01  # softer than the uncalibrated probabilities


def test_export_refuses_to_write_a_model_that_differs_from_predict(
    colour_data, tmp_path, monkeypatch
) -> None:
    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    honest = clf.predict_proba
    monkeypatch.setattr(clf, "predict_proba", lambda paths: honest(paths) * 0.9 + 0.1 / 3)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match=r"differs from `headstart predict` by up to 0\.0\d"):
        export_classifier(clf, out)
    assert list(out.parent.iterdir()) == []  # no model, no sidecar, no temp file


def test_exported_onnx_takes_the_tensor_headstart_preprocess_saves(colour_data, tmp_path, capsys):
    run = tmp_path / "run"
    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    clf.save(run)
    assert main(["export", str(run), "--quiet"]) == 0
    assert "parity: max |probability - predict|" in capsys.readouterr().out
    sidecar = json.loads((run / "model.onnx.json").read_text())
    assert sidecar["source_run"] == str(run.resolve()) and sidecar["parity"]["images"] >= 2
    image = _test_images(colour_data)[0]
    saved = tmp_path / "x.npy"
    assert (
        main(["preprocess", "--model", f"local-dir:{run}", str(image), "--save", str(saved)]) == 0
    )
    got = _run_onnx(run / "model.onnx", np.load(saved)[None])
    np.testing.assert_allclose(got, clf.predict_proba([image]), atol=PARITY_TOLERANCE, rtol=0)


def test_onnx_export_without_onnxruntime_says_which_extra_to_install(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'headstart\[onnx\]'"):
        export_run(tmp_path)
    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'headstart[onnx]'" in err[0]


def test_export_of_a_run_with_skipped_files_checks_on_its_readable_images(tmp_path) -> None:
    data = write_colour_dataset(tmp_path / "data", {"": 6})
    for name in ("red", "green", "blue"):  # first in each class, where the sample starts
        write_truncated(data / name / "a_truncated.png", "PNG")
    clf = _fit(tmp_path, data, "headstart-tiny")
    assert len(clf.dataset_["skipped"]) == 3
    clf.save(tmp_path / "run")
    result = export_run(tmp_path / "run")
    assert result.images_checked == 8
    assert result.max_abs_diff <= PARITY_TOLERANCE


# ----------------------------------------------------------------------------- typicality
@pytest.mark.parametrize("score", SCORES)
def test_exported_onnx_gives_predicts_typicality_for_every_score(
    colour_data, tmp_path, score
) -> None:
    clf = _fit(tmp_path, colour_data, "headstart-tiny", unknown_score=score)
    paths = _test_images(colour_data)

    result = export_classifier(clf, tmp_path / "m.onnx")

    got = _run_onnx(result.path, _float_batch(clf, paths), "typicality")
    expected = [p.typicality for p in clf.predict_files(paths)]
    assert got.shape == (len(paths),) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=TYPICALITY_TOLERANCE, rtol=0)
    assert result.typicality_max_abs_diff <= TYPICALITY_TOLERANCE
    # A deployment flags unknown images from the sidecar alone, as predict does.
    typicality = json.loads(result.sidecar.read_text())["typicality"]
    assert typicality["score"] == score and typicality["threshold"] == clf.typicality_.threshold
    flagged = got < typicality["threshold"]
    assert flagged.tolist() == [p.unknown for p in clf.predict_files(paths)]


def test_exported_torchscript_gives_predicts_typicality_of_noise_images(
    colour_data, tmp_path
) -> None:
    from PIL import Image

    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    rng = np.random.default_rng(0)
    noise = []
    for i in range(3):
        noise.append(tmp_path / f"noise{i}.png")
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(noise[-1])
    paths = _test_images(colour_data)[:3] + noise

    result = export_classifier(clf, tmp_path / "m.pt", format="torchscript", input="uint8")

    with torch.no_grad():
        probabilities, typicality = torch.jit.load(str(result.path))(
            torch.from_numpy(_uint8_batch(clf, paths))
        )
    predicted = clf.predict_files(paths)
    np.testing.assert_allclose(
        typicality.numpy(), [p.typicality for p in predicted], atol=TYPICALITY_TOLERANCE, rtol=0
    )
    assert [p.unknown for p in predicted][3:] == [True, True, True]
    np.testing.assert_allclose(
        probabilities.numpy(), clf.predict_proba(paths), atol=PARITY_TOLERANCE, rtol=0
    )


def test_export_has_a_typicality_output_exactly_when_the_run_has_a_typicality(
    colour_data, tmp_path, capsys
) -> None:
    with_score, without = tmp_path / "with", tmp_path / "without"
    _fit(tmp_path, colour_data, "headstart-tiny").save(with_score)
    _fit(tmp_path, colour_data, "headstart-tiny", unknown_score="none").save(without)

    assert main(["export", str(with_score), "--quiet"]) == 0
    with_out = capsys.readouterr().out
    assert main(["export", str(without), "--quiet"]) == 0
    without_out = capsys.readouterr().out

    assert _onnx_outputs(with_score / "model.onnx") == ["probabilities", "typicality"]
    assert "max |typicality - predict|" in with_out
    assert _onnx_outputs(without / "model.onnx") == ["probabilities"]
    assert "max |typicality" not in without_out
    sidecar = json.loads((without / "model.onnx.json").read_text())
    assert "typicality" not in sidecar and "typicality_max_abs_diff" not in sidecar["parity"]


def test_export_refuses_a_typicality_that_differs_from_predict(
    colour_data, tmp_path, monkeypatch
) -> None:
    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    honest = clf.predict_typicality
    monkeypatch.setattr(clf, "predict_typicality", lambda paths: np.abs(honest(paths) - 0.2))
    out = tmp_path / "out" / "model.onnx"

    with pytest.raises(ExportError, match=r"by up to 0\.2 in a typicality"):
        export_classifier(clf, out)
    assert list(out.parent.iterdir()) == []


def test_export_accepts_a_typicality_step_that_float_rounding_of_the_score_explains(
    colour_data, tmp_path, monkeypatch
) -> None:
    # Held-out scores packed around a sample image's own raw score: a difference of 1e-8 in
    # that score, float32's doing, steps its typicality across hundreds of them.
    clf = _fit(tmp_path, colour_data, "headstart-tiny")
    paths = _test_images(colour_data)[:2]
    x = torch.from_numpy(_float_batch(clf, paths))
    with torch.no_grad():
        raw = clf.typicality_.raw(clf.backbone_.module(x).double().numpy())
    packed = raw[0] + np.abs(raw[0]) * np.linspace(-1e-7, 1e-7, 1001)
    score = dataclasses.replace(
        clf.typicality_, knowns=np.sort(np.r_[clf.typicality_.knowns, packed])
    )
    monkeypatch.setattr(clf, "typicality_", score)
    honest = clf.predict_typicality

    def rounded(files):  # predict's score of the first image 1e-8 lower
        shifted = raw[0] - 1e-8 * np.abs(raw[0])
        out = honest(files)
        out[0] = np.searchsorted(score.knowns, shifted) / len(score.knowns)
        return out

    monkeypatch.setattr(clf, "predict_typicality", rounded)
    result = export_classifier(clf, tmp_path / "m.onnx", sample_images=paths)

    assert result.typicality_max_abs_diff > 100 * TYPICALITY_TOLERANCE  # stepped, accepted


@pytest.mark.parametrize("score", SCORES)
def test_the_graphs_typicality_module_scores_as_typicality_does_nan_included(score) -> None:
    from headstart.heads.typicality import fit_typicality
    from headstart.heads.typicality_module import TypicalityModule

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.normal(size=(60, 8)) + 3 * y[:, None]).astype(np.float32)
    head_logits = (x @ rng.normal(size=(8, 3))).astype(np.float32)
    typicality = fit_typicality(x, y, score=score, heldout_logits=head_logits.astype(np.float64))
    features = np.r_[x[:5] + 0.3, rng.normal(size=(3, 8)) * 10, np.full((1, 8), np.nan)]
    logits = np.r_[head_logits[:5], rng.normal(size=(3, 3)) * 10, np.full((1, 3), np.nan)]
    features, logits = features.astype(np.float32), logits.astype(np.float32)

    with torch.no_grad():
        got = TypicalityModule(typicality)(torch.from_numpy(features), torch.from_numpy(logits))

    expected = typicality.typicality(features, logits)
    np.testing.assert_allclose(got.numpy(), expected, atol=TYPICALITY_TOLERANCE, rtol=0)
    assert got[-1] == 0.0  # a NaN score is below every held-out one
