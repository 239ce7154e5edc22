"""Batches decode ahead in threads, or in processes for transforms that are not thread-safe."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.augment import AugmentedView, Augmenter, resolve_augment, sample_seed
from headstart.data import load_image
from headstart.features.batches import decode_ahead, iter_batches, stack_images
from headstart.preprocess import Preprocess

PRE = Preprocess(input_size=(16, 16), resize=18, interpolation="bicubic")


def _files(folder: Path, n: int) -> list[Path]:
    """Noise images of varied sizes, so that every image (and any mix-up) shows."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (20, 24 + i, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _collect(batches) -> tuple[torch.Tensor, list[int], list[tuple[int, str]]]:
    tensors, indices, failures = [], [], []
    for batch, idx, bad in batches:
        if batch is not None:
            tensors.append(batch)
        indices.extend(idx)
        failures.extend(bad)
    return torch.cat(tensors), indices, failures


def test_threaded_batches_equal_decoding_in_turn_bit_for_bit(tmp_path: Path) -> None:
    paths = _files(tmp_path, 23)
    options = {"draft_size": None, "batch_size": 5}
    threaded = _collect(iter_batches(paths, PRE, num_workers=3, **options))
    in_turn = _collect(iter_batches(paths, PRE, num_workers=0, **options))
    assert threaded[1] == in_turn[1] == list(range(23))  # every image, in order
    assert torch.equal(threaded[0], in_turn[0])
    assert torch.equal(threaded[0][7], PRE(load_image(paths[7])))


def test_unreadable_file_is_reported_in_its_batch_and_the_rest_decode(tmp_path: Path) -> None:
    paths = _files(tmp_path, 6)
    paths[2].write_bytes(b"not an image")
    batches = list(iter_batches(paths, PRE, draft_size=None, batch_size=4, num_workers=2))
    assert [idx for _, idx, _ in batches] == [[0, 1, 3], [4, 5]]
    ((index, reason),) = batches[0][2]
    assert index == 2 and reason.startswith("not an image")


def test_batches_are_channels_last(tmp_path: Path) -> None:
    batch, _, _ = next(
        iter(iter_batches(_files(tmp_path, 4), PRE, draft_size=None, batch_size=4, num_workers=2))
    )
    assert batch.shape == (4, 3, 16, 16)
    assert batch.is_contiguous(memory_format=torch.channels_last)


def test_stopping_early_leaves_no_decoding_thread(tmp_path: Path) -> None:
    paths = _files(tmp_path, 40)
    batches = iter(iter_batches(paths, PRE, draft_size=None, batch_size=2, num_workers=2))
    next(batches)
    batches.close()  # a consumer that breaks out of its loop
    assert not [t for t in threading.enumerate() if t.name.startswith("headstart-decode")]


def test_augmented_views_decoded_in_threads_are_each_images_own_augmentation(
    tmp_path: Path,
) -> None:
    paths = _files(tmp_path, 12)
    keys = [f"digest-{i}" for i in range(12)]
    view = AugmentedView(resolve_augment("strong"), seed=3, index=1)
    transform = view.transform(PRE)
    options = {"draft_size": None, "batch_size": 4, "keys": keys}
    threaded = _collect(iter_batches(paths, transform, num_workers=3, **options))[0]
    in_turn = _collect(iter_batches(paths, transform, num_workers=0, **options))[0]
    assert torch.equal(threaded, in_turn)
    augmenter = Augmenter(view.config)
    image = augmenter.apply(load_image(paths[5]), sample_seed("view", 3, 1, keys[5]))
    assert torch.equal(threaded[5], PRE(image))


def test_custom_augmentation_decodes_outside_threads(tmp_path: Path) -> None:
    """An augmentation of unknown thread-safety may draw from the shared global generators."""
    pipeline = PRE.transform(lambda img: img.transpose(0))
    assert not pipeline.thread_safe and PRE.thread_safe
    batches = iter_batches(
        _files(tmp_path, 3), pipeline, draft_size=None, batch_size=2, num_workers=0
    )
    assert isinstance(batches, torch.utils.data.DataLoader)


def test_stack_images_keeps_plain_chw_tensors_contiguous() -> None:
    batch = stack_images([torch.zeros(3, 4, 5), torch.ones(3, 4, 5)])
    assert batch.shape == (2, 3, 4, 5) and batch.is_contiguous()


def test_decode_ahead_keeps_the_order_whatever_finishes_first() -> None:
    def load(key: int) -> int:
        time.sleep(0.002 * (key % 3))  # later keys often finish first
        return key

    batches = [[0, 1, 2], [3, 4], [5, 6, 7, 8], [9]]
    assert list(decode_ahead(batches, load, list, threads=3)) == batches
    assert list(decode_ahead(batches, load, list, threads=0)) == batches


def test_decode_ahead_raises_a_loaders_error_and_stops_its_threads() -> None:
    def load(key: int) -> int:
        if key == 4:
            raise ValueError("a bug, not a bad image")
        return key

    with pytest.raises(ValueError, match="a bug"):
        list(decode_ahead([[0, 1], [2, 3], [4, 5], [6, 7]], load, list, threads=2))
    assert not [t for t in threading.enumerate() if t.name.startswith("headstart-decode")]
