"""The ONNX snippet of docs/deploy.md, run as written: an exported model fed from its sidecar alone.

The export's own parity check feeds the graph with headstart's preprocessing; this one does not.
The code block is read from the document at test time (so the document cannot rot), given a run's
``model.onnx`` and an image in place of its example paths, and must print what ``headstart
predict`` says. Only numpy, PIL and onnxruntime touch the pixels: every preprocessing choice comes
from the sidecar's fields.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from headstart import ImageClassifier
from headstart.export import export_classifier

pytest.importorskip("onnxruntime")

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"
EXIF_ORIENTATION = 0x0112


def _snippet() -> str:
    """The one ```python block of docs/deploy.md that runs onnxruntime."""
    blocks = re.findall(r"```python\n(.*?)```", DEPLOY.read_text(), flags=re.S)
    found = [block for block in blocks if "onnxruntime" in block]
    assert len(found) == 1, "docs/deploy.md should hold one onnxruntime example"
    return found[0]


def _run_snippet(sidecar: Path, model: Path, image: Path) -> dict[str, object]:
    """Execute the snippet with its example paths replaced; return its variables."""
    code = _snippet()
    for example, real in [
        ("runs/shapes/model.onnx.json", sidecar),
        ("runs/shapes/model.onnx", model),
        ("photo.jpg", image),
    ]:
        assert f'"{example}"' in code, f"the snippet no longer reads {example}"
        code = code.replace(f'"{example}"', repr(str(real)))
    namespace: dict[str, object] = {}
    exec(compile(code, str(DEPLOY), "exec"), namespace)
    return namespace


def _photos(folder: Path) -> list[Path]:
    """Real photographs (scikit-learn's two samples) as the files users have: a PNG, JPEGs
    small and over twice the resize target (decoded with JPEG draft scaling), and a portrait
    camera JPEG stored sideways with an EXIF orientation."""
    china, flower = (Image.fromarray(load_sample_image(n)) for n in ("china.jpg", "flower.jpg"))
    files = [
        (china, "china.png", {}),
        (flower, "flower.jpg", {"quality": 90}),
        (china.resize((1280, 854)), "china_large.jpg", {"quality": 85}),
    ]
    out = []
    for image, name, options in files:
        image.save(folder / name, **options)
        out.append(folder / name)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # the viewer rotates it 90 degrees clockwise: a portrait
    sideways = flower.resize((1400, 900))
    sideways.save(folder / "flower_sideways.jpg", quality=85, exif=exif)
    return [*out, folder / "flower_sideways.jpg"]


# A short script's open() and Image.open() without `with` are fine for the reader; under pytest
# they surface as unraisable ResourceWarnings from the garbage collector.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_deploy_snippet_gives_predicts_probabilities_from_the_sidecar_alone(
    colour_data, tmp_path
) -> None:
    """Proven by mutation: the snippet as it was before JPEG draft decoding was added (it decoded
    every JPEG at full size, while headstart's sidecar says large JPEGs are draft-decoded) failed
    here on the two large JPEGs (log-probabilities off by up to 0.37)."""
    clf = ImageClassifier(
        "headstart-tiny", strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).fit(colour_data)
    result = export_classifier(clf, tmp_path / "model.onnx")
    photos = _photos(tmp_path)

    for photo in photos:
        got = _run_snippet(result.sidecar, result.path, photo)
        [want] = clf.predict_files([photo])
        probs = np.asarray(got["probs"])[0]
        np.testing.assert_allclose(
            np.log(probs), np.log(clf.predict_proba([photo])[0]), atol=1e-4, err_msg=photo.name
        )
        if want.typicality is not None:  # a run with a typicality score: the graph's, too
            typicality = float(np.asarray(got["typicality"])[0])
            assert typicality == pytest.approx(want.typicality, abs=1e-5), photo.name
            assert got["label"] == ("unknown" if want.unknown else want.label), photo.name
