"""Files headstart writes get the permissions any other program's files would: the umask's."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from headstart.checkpoint import Checkpoint, save_checkpoint
from headstart.runs import atomic_write, write_json

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_0666_less_the_umask(tmp_path: Path, umask_022) -> None:
    atomic_write(tmp_path / "a.bin", b"x")
    assert _mode(tmp_path / "a.bin") == 0o644
    os.umask(0o027)
    write_json(tmp_path / "b.json", {"a": 1})
    assert _mode(tmp_path / "b.json") == 0o640


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0o604)
    write_json(path, {"a": 1})
    assert _mode(path) == 0o604 and path.read_text().startswith("{")


def test_checkpoint_files_honour_the_umask(tmp_path: Path, umask_022) -> None:
    model = torch.nn.Linear(2, 2)
    state = model.state_dict()
    ckpt = Checkpoint(1, 3, [], 0.5, 1, 0, "fp", model=state, best_model=state)
    save_checkpoint(tmp_path / "checkpoint", ckpt)
    files = sorted((tmp_path / "checkpoint").iterdir())
    assert len(files) == 3  # index, best weights, state
    assert {f.name: _mode(f) for f in files} == {f.name: 0o644 for f in files}


def test_an_exported_model_honours_the_umask(colour_data: Path, tmp_path: Path, umask_022) -> None:
    from headstart import ImageClassifier
    from headstart.export import export_classifier

    clf = ImageClassifier(
        "headstart-tiny", strategy="features", num_workers=0, quiet=True, cache_dir=tmp_path / "c"
    ).fit(colour_data)
    result = export_classifier(clf, tmp_path / "model.pt", format="torchscript")
    assert (_mode(result.path), _mode(result.sidecar)) == (0o644, 0o644)


def test_the_feature_cache_files_honour_the_umask(tmp_path: Path, umask_022) -> None:
    import numpy as np

    from headstart.features.cache import FeatureCache

    os.umask(0o002)  # a cache shared by a group stays writable by the group
    with FeatureCache(tmp_path) as cache:
        cache.put_many("ns", {"d" * 64: np.ones(4, dtype=np.float32)})
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files] == [
            "features.sqlite",
            "features.sqlite-shm",
            "features.sqlite-wal",
        ]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o664 for f in files}
