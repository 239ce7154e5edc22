"""Images for end-to-end training: a seeded order per epoch, a seeded augmentation per sample.

Nothing random here depends on the past: epoch ``e``'s order is drawn from a generator seeded with
(seed, e), and sample ``i``'s augmentation in epoch ``e`` from one seeded with (seed, e, i). The
batches are therefore the same whatever the number of decoding threads, and a run resumed at epoch
``e`` sees exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import torch

from headstart.augment import AugmentConfig, AugmentedTransform, sample_seed
from headstart.data import load_image
from headstart.errors import ImageDecodeError
from headstart.features.batches import decode_ahead, default_num_threads, stack_images
from headstart.preprocess import Preprocess

__all__ = ["TrainImages", "epoch_batches", "epoch_order"]

_Item = tuple[torch.Tensor | None, int, int, str]
_Batch = tuple[torch.Tensor | None, torch.Tensor, dict[int, str]]


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of ``n`` samples in ``epoch``: a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(sample_seed("order", seed, epoch))
    return [int(i) for i in torch.randperm(n, generator=generator)]


class _Samples:
    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        preprocess: Preprocess,
        augment: AugmentConfig,
        seed: int,
    ) -> None:
        self.paths = list(paths)
        self.labels = list(labels)
        self.draft_size = preprocess.draft_size
        self.seed = seed
        self.plain = preprocess
        self.augmented = None if augment.is_identity else AugmentedTransform(preprocess, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> _Item:
        epoch, index = key
        try:
            image = load_image(self.paths[index], draft_size=self.draft_size)
        except ImageDecodeError as exc:
            return None, self.labels[index], index, exc.reason
        if self.augmented is None:
            return self.plain(image), self.labels[index], index, ""
        return (
            self.augmented(image, sample_seed("train", self.seed, epoch, index)),
            self.labels[index],
            index,
            "",
        )


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of sample indices of ``epoch``, in :func:`epoch_order`."""
    order = epoch_order(n, seed, epoch)
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        # A batch of one image breaks BatchNorm in training mode and is noise anyway.
        chunks[-2].extend(chunks.pop())
    return chunks


def _collate(items: list[_Item]) -> _Batch:
    good = [(x, y) for x, y, _, _ in items if x is not None]
    failures = {i: reason for x, _, i, reason in items if x is None}
    batch = stack_images([x for x, _ in good]) if good else None
    labels = torch.tensor([y for _, y in good], dtype=torch.long)
    return batch, labels, failures


class TrainImages:
    """The training split, batched per epoch, decoded (and augmented) ahead in threads.

    Args:
        paths, labels: The training samples, in a fixed order (the sample index is the key of
            each sample's augmentation).
        preprocess: The weights' preprocessing, applied after the augmentation.
        augment: The augmentation (an identity config means plain images).
        seed: Seeds the order of each epoch and each sample's augmentation.
        batch_size: Images per optimizer step, over all ranks together (the global batch).
        num_workers: Decoding threads (None: one per core; 0: in turn with training).
        rank, world_size: Under torchrun, this rank decodes every ``world_size``-th image of
            each global batch, starting at ``rank``. The batches, the order and each image's
            augmentation stay those of one process (they depend on the sample, never on the
            rank), so the ranks together see exactly what one process would. A rank can then
            have no image in a batch (the last one, or all its images unreadable): it still
            yields the batch, as ``None``, so that it takes part in the gradient exchange.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Sequence[int],
        preprocess: Preprocess,
        augment: AugmentConfig,
        *,
        seed: int,
        batch_size: int,
        num_workers: int | None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.samples = _Samples(paths, labels, preprocess, augment, seed)
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.input_size = preprocess.input_size
        self.failures: dict[Path, str] = {}
        self.workers = default_num_threads() if num_workers is None else num_workers
        self._running: Generator[_Batch, None, None] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_batches(self) -> int:
        return len(self._batches(1))

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor | None, torch.Tensor]]:
        """(images, labels) batches of ``epoch``; unreadable images are dropped and recorded.

        Alone, a batch with no readable image is skipped; under torchrun it is yielded as
        ``None`` (see the class docstring).
        """
        self.close()
        keys = ([(epoch, i) for i in batch] for batch in self._batches(epoch))
        running = decode_ahead(keys, self.samples.__getitem__, _collate, self.workers)
        self._running = running
        for batch, labels, failures in running:
            for index, reason in failures.items():
                self.failures[self.samples.paths[index]] = reason
            if batch is not None or self.world_size > 1:
                yield batch, labels

    def _batches(self, epoch: int) -> list[list[int]]:
        batches = epoch_batches(len(self.samples), self.batch_size, self.samples.seed, epoch)
        if self.world_size == 1:
            return batches
        return [batch[self.rank :: self.world_size] for batch in batches]

    def close(self) -> None:
        """Stop decoding ahead (an epoch left early leaves images queued)."""
        if self._running is not None:
            self._running.close()
            self._running = None

    def first_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to ``size`` training images decoded here as the first epoch decodes them (augmented
        as configured: timing plain images left the augmentation's cost out of the estimate)."""
        images, labels = [], []
        for index in range(len(self.samples)):
            image, label, _, _ = self.samples[(1, index)]
            if image is None:
                continue
            images.append(image)
            labels.append(label)
            if len(images) >= size:
                break
        if not images:
            return torch.zeros(0), torch.zeros(0, dtype=torch.long)
        return stack_images(images), torch.tensor(labels, dtype=torch.long)
