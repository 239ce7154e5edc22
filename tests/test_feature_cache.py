"""The feature cache: content-addressed, atomic, shareable between processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from headstart.features.cache import FeatureCache

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _vector(digest: str, dim: int = 64) -> np.ndarray:
    seed = int(digest[:8], 16)
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def test_put_then_get_returns_the_same_vectors(tmp_path: Path) -> None:
    with FeatureCache(tmp_path) as cache:
        vectors = {f"{i:08x}": _vector(f"{i:08x}") for i in range(10)}
        cache.put_many("ns", vectors)
        got = cache.get_many("ns", list(vectors) + ["ffffffff"])
    assert set(got) == set(vectors)
    for key, value in vectors.items():
        np.testing.assert_array_equal(got[key], value)


def test_read_into_fills_every_row_of_each_digest_and_refuses_a_missing_one(
    tmp_path: Path,
) -> None:
    vectors = {key: _vector(key) for key in ("00000001", "00000002", "00000003")}
    with FeatureCache(tmp_path) as cache:
        cache.put_many("ns", vectors)
        out = np.zeros((4, 64), np.float32)
        # "00000002" is the content of two files: rows 1 and 3.
        cache.read_into("ns", {"00000001": [0], "00000002": [1, 3], "00000003": [2]}, out)
        np.testing.assert_array_equal(
            out[[0, 1, 2, 3]],
            np.stack(
                [vectors["00000001"], vectors["00000002"], vectors["00000003"], vectors["00000002"]]
            ),
        )
        single = np.zeros((2, 64), np.float32)
        cache.read_into("ns", {"00000003": [1], "00000001": [0]}, single)
        np.testing.assert_array_equal(single, np.stack([vectors["00000001"], vectors["00000003"]]))
        with pytest.raises(LookupError, match="1 of 2"):
            cache.read_into("ns", {"00000001": [0], "0000dead": [1]}, single)


def test_namespaces_do_not_share_entries(tmp_path: Path) -> None:
    with FeatureCache(tmp_path) as cache:
        cache.put_many("a", {"00000001": _vector("00000001")})
        assert cache.get_many("b", ["00000001"]) == {}


def test_unchanged_file_is_not_rehashed(tmp_path: Path, monkeypatch) -> None:
    image = tmp_path / "x.bin"
    image.write_bytes(b"hello")
    with FeatureCache(tmp_path / "cache") as cache:
        first, failures = cache.digests([image])
        assert not failures
        import headstart.features.cache as cache_module

        def boom(path: Path) -> str:
            raise AssertionError("re-read an unchanged file")

        monkeypatch.setattr(cache_module, "file_digest", boom)
        second, _ = cache.digests([image])
    assert first == second


def _change(image: Path) -> None:
    """New content, a new size and a later modification time: what an edit leaves."""
    image.write_bytes(b"hello, world")
    os.utime(image, ns=(time.time_ns(), time.time_ns() + 10**9))


def test_changed_file_gets_a_new_digest(tmp_path: Path) -> None:
    image = tmp_path / "x.bin"
    image.write_bytes(b"hello")
    with FeatureCache(tmp_path / "cache") as cache:
        first, _ = cache.digests([image])
        _change(image)
        second, _ = cache.digests([image])
    assert first[image] != second[image]


def test_a_digest_this_process_remembers_is_still_checked_against_the_file(
    tmp_path: Path,
) -> None:
    image = tmp_path / "x.bin"
    image.write_bytes(b"hello")
    with FeatureCache(tmp_path / "cache") as cache:
        first, _ = cache.digests([image])
    _change(image)
    with FeatureCache(tmp_path / "cache") as again:  # a second open, as a later stage's
        second, _ = again.digests([image])
        rows = again._db.execute("SELECT digest FROM files").fetchall()
    assert first[image] != second[image] and rows == [(second[image],)]


def test_missing_file_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    with FeatureCache(tmp_path / "cache") as cache:
        digests, failures = cache.digests([tmp_path / "nope.jpg"])
    assert digests == {}
    assert "cannot read" in failures[tmp_path / "nope.jpg"]


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, {src!r})
    from headstart.features.cache import FeatureCache
    cache = FeatureCache({folder!r})
    start = int(sys.argv[1])
    for batch in range(10_000):
        items = {{}}
        for i in range(50):
            key = f"{{start + batch * 50 + i:08x}}"
            items[key] = np.random.default_rng(int(key, 16)).standard_normal(512).astype("float32")
        cache.put_many("ns", items)
        print("ready" if batch == 0 else f"wrote {{batch}}", flush=True)
        if batch == int(sys.argv[2]):
            break
    """
)


def _writer(tmp_path: Path, start: int, batches: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(src=SRC, folder=str(tmp_path / "cache")))
    return subprocess.Popen(
        [sys.executable, str(script), str(start), str(batches)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _check_all_entries_valid(folder: Path) -> int:
    with FeatureCache(folder) as cache:
        integrity = cache._db.execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok"
        keys = [row[0] for row in cache._db.execute("SELECT digest FROM features")]
        got = cache.get_many("ns", keys)
    assert len(got) == len(keys)
    for key, value in got.items():
        expected = np.random.default_rng(int(key, 16)).standard_normal(512).astype("float32")
        np.testing.assert_array_equal(value, expected)
    return len(keys)


def test_killed_writer_leaves_only_valid_entries(tmp_path: Path) -> None:
    proc = _writer(tmp_path, 0, 10_000)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    # The kill lands while the writer is busy with its 8th batch: a moment set by its progress,
    # not by a sleep that a loaded machine stretches past the end or cuts before the start.
    for line in proc.stdout:
        if line.strip() == "wrote 6":
            break
    assert proc.poll() is None, "the writer ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    n = _check_all_entries_valid(tmp_path / "cache")
    assert n > 0 and n % 50 == 0  # whole batches only


def test_two_writers_sharing_a_cache_both_land(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    FeatureCache(tmp_path / "cache").close()
    procs = [_writer(tmp_path, start, 20) for start in (0, 1_000_000)]
    for proc in procs:
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    assert _check_all_entries_valid(tmp_path / "cache") == 2 * 21 * 50


def test_extraction_through_the_cache_equals_extraction_without_it_file_for_file(
    tmp_path: Path, colour_data: Path
) -> None:
    import shutil

    from headstart.backbones import create_backbone
    from headstart.features import extract_features
    from tests._images import write_truncated

    data = tmp_path / "data"
    shutil.copytree(colour_data / "train", data)
    paths = sorted(data.rglob("*.*"))
    copy = data / "red" / "copy.png"
    shutil.copy(paths[3], copy)
    bad = write_truncated(data / "red" / "bad.jpg", "JPEG")
    bad_copy = data / "red" / "bad_copy.jpg"
    shutil.copy(bad, bad_copy)
    half = paths[::2]  # cached by a first run; the rest is new to the second
    everything = [bad, *paths, copy, bad_copy]
    backbone = create_backbone("test_resnet", weights="none")
    options = {"num_workers": 0, "device": "cpu", "quiet": True}
    plain = extract_features(backbone, everything, **options)
    with FeatureCache(tmp_path / "cache") as cache:
        extract_features(backbone, half, cache=cache, **options)
        mixed = extract_features(backbone, everything, cache=cache, **options)
        warm = extract_features(backbone, everything, cache=cache, **options)
    for result in (mixed, warm):
        assert result.paths == plain.paths == [*paths, copy]
        np.testing.assert_array_equal(result.features, plain.features)
        assert set(result.failures) == {bad, bad_copy}
    assert "same content as another unreadable file" in mixed.failures[bad_copy]
    assert (mixed.n_cached, mixed.n_computed) == (len(half), len(paths) - len(half) + 1)
    assert (warm.n_cached, warm.n_computed) == (len(paths) + 1, 1)  # the bad content is retried


@pytest.mark.parametrize("dropped", [[0], [9], [2, 3], [1, 4, 8], list(range(10))])
def test_dropping_failed_rows_in_place_keeps_the_others_in_order(monkeypatch, dropped) -> None:
    from headstart.features import extract

    monkeypatch.setattr(extract, "_MOVE_ROWS", 2)  # several moves per gap
    feats = np.arange(30, dtype=np.float32).reshape(10, 3)
    expected = np.delete(feats, dropped, axis=0)
    kept = extract._without_rows(feats, dropped)
    np.testing.assert_array_equal(kept, expected)
    assert np.shares_memory(kept, feats) or len(kept) == 0


def test_file_records_are_read_by_range_or_by_name_with_the_same_answer(tmp_path: Path) -> None:
    import headstart.features.cache as cache_module

    files = []
    for i in range(30):
        image = tmp_path / "data" / f"img_{i:02d}.bin"
        image.parent.mkdir(exist_ok=True)
        image.write_bytes(b"content %d" % i)
        files.append(image)
    with FeatureCache(tmp_path / "cache") as cache:
        expected, _ = cache.digests(files)
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        for wanted, how in ((files[5:25], "BETWEEN"), (files[::10], " IN (")):
            cache_module._SEEN.clear()  # a new process: nothing remembered
            statements.clear()
            found, failures = cache.digests(wanted)
            assert found == {p: expected[p] for p in wanted} and not failures
            assert any(how in s for s in statements if "FROM files AS f" in s)


@pytest.mark.parametrize("n_wanted, lookup", [(2, True), (8, False)])
def test_vectors_are_read_by_lookup_or_by_one_scan_with_the_same_answer(
    tmp_path: Path, n_wanted: int, lookup: bool
) -> None:
    vectors = {f"{i:08x}": _vector(f"{i:08x}") for i in range(1, 11)}
    wanted = list(vectors)[1 : 1 + n_wanted]
    with FeatureCache(tmp_path) as cache:
        cache.put_many("ns", vectors)
        cache.put_many("other", {key: -v for key, v in vectors.items()})  # never read
        cache._db.execute("UPDATE features SET data = x'00' WHERE digest = ?", (wanted[0],))
        statements: list[str] = []
        cache._db.set_trace_callback(statements.append)
        out = np.zeros((n_wanted, 64), np.float32)
        filled = cache.read_into("ns", {d: [i] for i, d in enumerate(wanted)}, out, missing_ok=True)
    assert filled == set(wanted[1:])  # the damaged vector is not read
    np.testing.assert_array_equal(out[1:], np.stack([vectors[d] for d in wanted[1:]]))
    reads = [s for s in statements if s.startswith("SELECT digest, data")]
    assert reads and all((" IN (" in s) == lookup for s in reads)


def test_a_warm_extraction_leaves_the_model_and_the_device_alone(
    tmp_path: Path, colour_data: Path, monkeypatch
) -> None:
    from headstart.backbones import create_backbone
    from headstart.features import extract, extract_features

    paths = sorted((colour_data / "val").rglob("*.*"))
    backbone = create_backbone("test_resnet", weights="none")
    with FeatureCache(tmp_path / "cache") as cache:
        cold = extract_features(backbone, paths, cache=cache, num_workers=0, quiet=True)

        def no_device(*args, **kwargs):
            raise AssertionError("a device was prepared for nothing")

        monkeypatch.setattr(extract, "prepare_device", no_device)
        warm = extract_features(backbone, paths, cache=cache, num_workers=0, quiet=True)
    np.testing.assert_array_equal(warm.features, cold.features)
    assert warm.n_computed == 0
