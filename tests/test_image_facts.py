"""Per-image facts (sizes, hashes) come from extraction's decoding pass and live in the cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFile

from headstart.backbones import create_backbone
from headstart.data import load_dataset
from headstart.doctor import diagnose, quick_checks
from headstart.doctor._inspect import cached_facts, inspect_image
from headstart.estimator import ImageClassifier
from headstart.features import FeatureCache, extract_features
from tests._images import write_truncated
from tests.conftest import write_colour_dataset

FAST = {"model": "test_resnet", "weights": "none", "num_workers": 0, "quiet": True}


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose pixels are decoded from now on (Pillow's tile decoding, once per file)."""
    seen: list[str] = []
    original = ImageFile.ImageFile.load

    def counting_load(self: ImageFile.ImageFile):  # type: ignore[no-untyped-def]
        if self.tile:  # pixels still to decode; a loaded image has none
            seen.append(str(getattr(self, "filename", "") or self.fp))
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    return seen


@pytest.fixture
def leaky_data(tmp_path: Path) -> Path:
    """Colour images with one training image copied into val: a leak the check must find."""
    root = write_colour_dataset(tmp_path / "data", {"train": 4, "val": 2})
    (root / "val" / "red" / "copy.png").write_bytes(
        (root / "train" / "red" / "red_0.png").read_bytes()
    )
    return root


def test_extraction_stores_the_facts_inspection_would_compute(colour_data, tmp_path):
    paths = sorted(colour_data.rglob("*.*"))
    backbone = create_backbone("test_resnet", weights="none")
    with FeatureCache(tmp_path / "cache") as cache:
        extract_features(backbone, paths, cache=cache, num_workers=1, device="cpu", quiet=True)
        digests, _ = cache.digests(paths)
        stored = cache.get_facts(digests.values())
    assert len(stored) == len(paths)
    for path in paths:  # 40 px images: no JPEG is draft-scaled by either decode
        assert stored[digests[path]] == inspect_image(path).content


def test_warm_training_run_decodes_no_image_and_still_warns_about_the_leak(leaky_data, decodes):
    n_images = sum(1 for p in leaky_data.rglob("*") if p.is_file())
    with pytest.warns(UserWarning, match="are in train and val"):
        ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    assert len(decodes) == n_images - 1  # one decode per content: the copy is the same bytes
    decodes.clear()
    with pytest.warns(UserWarning, match="are in train and val"):
        warm = ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    assert decodes == []
    assert warm.extraction_ == {"computed": 0, "cached": n_images}


def test_cold_run_reports_what_it_computed_once(leaky_data):
    with pytest.warns(UserWarning):
        clf = ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    n_images = sum(1 for p in leaky_data.rglob("*") if p.is_file())
    assert clf.extraction_ == {"computed": n_images - 1, "cached": 0}


def test_doctor_after_training_decodes_nothing_and_agrees_with_a_fresh_check(leaky_data, decodes):
    with pytest.warns(UserWarning):
        ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    decodes.clear()
    report = diagnose(leaky_data)
    assert decodes == []
    fresh = diagnose(leaky_data, cache=False)
    assert [f.code for f in report.findings] == [f.code for f in fresh.findings]
    assert report.stats["width"] == fresh.stats["width"]


def test_check_without_cache_decodes_every_image(leaky_data, decodes):
    dataset = load_dataset(leaky_data)
    quick_checks(dataset, cache=False)
    quick_checks(dataset, cache=False)
    assert len(decodes) == 2 * len(dataset.splits["train"] + dataset.splits["val"])


def test_broken_content_is_stored_and_not_decoded_again(tmp_path, decodes):
    bad = write_truncated(tmp_path / "bad.jpg", "JPEG")
    first = cached_facts([bad], cache_dir=tmp_path / "cache")
    decodes.clear()
    again = cached_facts([bad], cache_dir=tmp_path / "cache")
    assert decodes == []
    assert again[0].problem == first[0].problem and again[0].problem.startswith("truncated")


def test_a_missing_file_is_never_stored_as_facts_of_content(tmp_path):
    gone = tmp_path / "gone.png"
    facts = cached_facts([gone], cache_dir=tmp_path / "cache")
    assert facts[0].sha256 is None and not facts[0].ok
    with FeatureCache(tmp_path / "cache") as cache:
        assert cache._db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_a_cache_file_from_before_the_facts_table_opens_and_keeps_its_features(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / "features.sqlite")
    db.executescript(
        """
        CREATE TABLE features (namespace TEXT NOT NULL, digest TEXT NOT NULL, dim INTEGER NOT NULL,
            data BLOB NOT NULL, PRIMARY KEY (namespace, digest)) WITHOUT ROWID;
        CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL) WITHOUT ROWID;
        """
    )
    vector = np.arange(4, dtype=np.float32)
    db.execute("INSERT INTO features VALUES ('ns', 'd1', 4, ?)", (vector.tobytes(),))
    db.commit()
    db.close()
    with FeatureCache(folder) as cache:
        assert np.array_equal(cache.get_many("ns", ["d1"])["d1"], vector)
        assert cache.get_facts(["d1"]) == {}
        image = write_truncated(tmp_path / "x.png", "PNG")
        cache.put_facts({"d1": inspect_image(image).content})
        assert cache.get_facts(["d1"])["d1"].problem is not None


def test_facts_of_another_version_are_recomputed(tmp_path, colour_data, decodes):
    path = next(colour_data.rglob("*.png"))
    cached_facts([path], cache_dir=tmp_path / "cache")
    with FeatureCache(tmp_path / "cache") as cache:
        cache._db.execute("UPDATE images SET version = version + 1")
    decodes.clear()
    cached_facts([path], cache_dir=tmp_path / "cache")
    assert len(decodes) == 1


def test_the_near_duplicate_search_of_a_set_seen_before_is_read_not_redone(
    leaky_data, tmp_path, monkeypatch
):
    # A resized copy in test: a near duplicate of a training image.
    from PIL import Image

    from headstart.doctor import _duplicates

    with Image.open(leaky_data / "train" / "blue" / "blue_0.png") as img:
        img.resize((30, 30)).save(leaky_data / "val" / "blue" / "smaller.png")
    calls = []
    search = _duplicates.near_pairs
    monkeypatch.setattr(_duplicates, "near_pairs", lambda *a: calls.append(1) or search(*a))
    dataset = load_dataset(leaky_data)
    fresh = quick_checks(dataset)  # no cache
    first = quick_checks(dataset, cache=True, cache_dir=tmp_path / "c")
    with FeatureCache(tmp_path / "c") as cache:  # forget the findings, keep the near pairs
        cache._db.execute("DELETE FROM results WHERE key LIKE 'leakage:%'")
    again = quick_checks(dataset, cache=True, cache_dir=tmp_path / "c")
    assert len(calls) == 2
    assert [(f.code, f.paths) for f in again] == [(f.code, f.paths) for f in fresh]
    assert [(f.code, f.paths) for f in first] == [(f.code, f.paths) for f in fresh]
    assert "leak-near" in {f.code for f in fresh}


def _count_sniffs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    import headstart.data.discovery as discovery

    sniffed: list[Path] = []
    original = discovery.image_problem

    def counting(path: Path, **kwargs):  # type: ignore[no-untyped-def]
        sniffed.append(path)
        return original(path, **kwargs)

    monkeypatch.setattr(discovery, "image_problem", counting)
    return sniffed


def test_warm_training_run_opens_no_file_to_list_the_dataset(leaky_data, monkeypatch):
    with pytest.warns(UserWarning):
        ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    (leaky_data / "train" / "red" / "notes.txt").write_text("not an image")
    sniffed = _count_sniffs(monkeypatch)
    with pytest.warns(UserWarning):
        warm = ImageClassifier(strategy="features", **FAST).fit(leaky_data)
    assert sniffed == [leaky_data / "train" / "red" / "notes.txt"]  # only the file never decoded
    cold = load_dataset(leaky_data)
    assert warm.dataset_ == cold.summary()


def test_the_cache_vouches_only_for_unchanged_files_that_decoded(tmp_path):
    data = write_colour_dataset(tmp_path / "data", {"train": 2})
    paths = sorted(data.rglob("*.*"))
    bad = write_truncated(data / "train" / "red" / "bad.jpg", "JPEG")
    backbone = create_backbone("test_resnet", weights="none")
    with FeatureCache(tmp_path / "cache") as cache:
        result = extract_features(
            backbone, [*paths, bad], cache=cache, num_workers=1, device="cpu", quiet=True
        )
        assert bad in result.failures
        paths[0].write_bytes(paths[0].read_bytes() + b"edited")
        vouched = cache.decoded([*paths, bad, tmp_path / "gone.png"])
    assert set(vouched) == set(paths[1:])
    assert all(vouched[p] == result.digests[p] for p in paths[1:])


def test_no_cache_folder_vouches_for_nothing_and_is_not_created(tmp_path, colour_data):
    from headstart.features.cache import decoded_in

    assert decoded_in(tmp_path / "none", sorted(colour_data.rglob("*.png"))) == {}
    assert not (tmp_path / "none").exists()


def test_discovery_with_a_voucher_finds_what_sniffing_finds(tmp_path, monkeypatch):
    colour_data = write_colour_dataset(tmp_path / "data", {"train": 3, "val": 2})
    (colour_data / "train" / "red" / "notes.txt").write_text("not an image")
    plain = load_dataset(colour_data)
    sniffed = _count_sniffs(monkeypatch)
    everything = set(colour_data.rglob("*.*"))
    vouched = load_dataset(colour_data, vouch=lambda paths: [p for p in paths if p in everything])
    assert sniffed == []  # the voucher's word is taken, even for the text file
    assert vouched.splits["train"] != plain.splits["train"]
    honest = load_dataset(colour_data, vouch=lambda paths: [p for p in paths if p.suffix != ".txt"])
    assert honest == plain
    assert sniffed == [colour_data / "train" / "red" / "notes.txt"]
    sniffed.clear()
    load_dataset(colour_data, vouch=lambda paths: list(paths), verify=True)
    assert len(sniffed) == len(everything)  # a full check trusts no voucher
