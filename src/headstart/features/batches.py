"""Image files in, preprocessed batches out, decoded ahead of the forward pass that consumes them.

Images decode in a pool of threads inside this process. Pillow's decoder and resampler and
NumPy's arithmetic release the GIL, so threads decode in parallel with each other and with the
forward pass, without what worker processes cost: starting them (seconds each where processes
are spawned, not forked), and copying every batch through shared memory. On a 2-core laptop that
difference is most of the gap between extraction and the bare forward pass (BENCHMARKS.md).
A transform that does not declare itself ``thread_safe`` (an augmentation drawing from the global
random generators outside :func:`headstart.augment.seeded`) decodes in DataLoader worker
processes instead.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from headstart.data import decode_image
from headstart.data.facts import ImageContent, content_problem, image_content
from headstart.errors import ImageDecodeError

__all__ = [
    "Batch",
    "decode_ahead",
    "default_num_threads",
    "default_num_workers",
    "iter_batches",
    "stack_images",
]

#: (images or None when none in the batch could be read, indices into the paths,
#: [(index, failure reason)]).
Batch = tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]
_Item = tuple[torch.Tensor | None, int, str]

K = TypeVar("K")
T = TypeVar("T")
B = TypeVar("B")

_BATCHES_AHEAD = 2  # decoded batches kept ready: enough to ride out one slow image


def default_num_workers() -> int:
    """Decoding workers: enough to keep the forward pass fed, leaving it most of the cores."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def default_num_threads() -> int:
    """Decoding threads: one per core. They sleep once the batches ahead are full, so they never
    take more CPU than the decoding the forward pass consumes."""
    return max(1, min(8, os.cpu_count() or 2))


def stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """One batch from CHW image tensors, channels-last when they are HWC memory underneath.

    :class:`~headstart.preprocess.Preprocess` returns CHW views of HWC arrays; stacking those
    as they lie gives the channels-last batch the backbone runs on, with no transposing copy.
    """
    if all(x.dim() == 3 and x.permute(1, 2, 0).is_contiguous() for x in images):
        return torch.stack([x.permute(1, 2, 0) for x in images]).permute(0, 3, 1, 2)
    return torch.stack(list(images))


class _Images(TorchDataset[_Item]):
    """Decodes and preprocesses one image; a failure is returned, not raised, so it is counted.

    With ``keys``, the transform also receives the image's key (its content digest). With
    ``on_content``, the facts of each image (:func:`headstart.data.facts.image_content`) are
    computed from the decoded pixels and passed to it with the image's index, so the dataset
    checks need no decode of their own.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        transform: Callable[..., torch.Tensor],
        draft_size: tuple[int, int] | None,
        keys: Sequence[str] | None = None,
        on_content: Callable[[int, ImageContent], None] | None = None,
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.draft_size = draft_size
        self.keys = list(keys) if keys is not None else None
        self.on_content = on_content

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Item:
        try:
            image, header = decode_image(self.paths[index], draft_size=self.draft_size)
        except ImageDecodeError as exc:
            problem = content_problem(exc.reason) if self.on_content is not None else None
            if self.on_content is not None and problem is not None:
                self.on_content(index, problem)
            return None, index, exc.reason
        if self.on_content is not None:
            self.on_content(index, image_content(image, header))
        if self.keys is not None:
            return self.transform(image, self.keys[index]), index, ""
        return self.transform(image), index, ""


def _collate(items: list[_Item]) -> Batch:
    good = [(x, i) for x, i, _ in items if x is not None]
    bad = [(i, reason) for x, i, reason in items if x is None]
    batch = stack_images([x for x, _ in good]) if good else None
    return batch, [i for _, i in good], bad


def decode_ahead(
    batches: Iterable[Sequence[K]],
    load: Callable[[K], T],
    collate: Callable[[list[T]], B],
    threads: int,
) -> Generator[B, None, None]:
    """``collate([load(key) ...])`` for each batch of keys, in order, loaded by ``threads`` threads
    up to ``_BATCHES_AHEAD`` batches ahead of the consumer (0 threads: in turn, in this thread).

    ``load`` must be thread-safe and must return failures rather than raise them: an exception
    stops the iteration.
    """
    if threads <= 0:
        for keys in batches:
            yield collate([load(key) for key in keys])
        return
    pool = ThreadPoolExecutor(threads, thread_name_prefix="headstart-decode")
    pending: deque[list[Future[T]]] = deque()
    remaining = iter(batches)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) <= _BATCHES_AHEAD:
                try:
                    keys = next(remaining)
                except StopIteration:
                    exhausted = True
                else:
                    pending.append([pool.submit(load, key) for key in keys])
            if not pending:
                return
            yield collate([future.result() for future in pending.popleft()])
    finally:
        # Stopped early (an error, Ctrl-C, a consumer that breaks): drop what is queued.
        pool.shutdown(wait=True, cancel_futures=True)


def iter_batches(
    paths: Sequence[Path],
    transform: Callable[..., torch.Tensor],
    *,
    draft_size: tuple[int, int] | None,
    batch_size: int,
    num_workers: int | None,
    keys: Sequence[str] | None = None,
    on_content: Callable[[int, ImageContent], None] | None = None,
) -> Iterable[Batch]:
    """Batches of ``paths`` through ``transform``, in order, decoded ahead of their use.

    Args:
        transform: PIL image -> CHW tensor; (image, key) -> tensor with ``keys``. One whose
            ``thread_safe`` attribute is true (preprocessing, augmented views) decodes in
            threads, any other in processes.
        num_workers: Decoding threads or processes (None: a default for this machine; 0: decode
            in the calling thread, in turn with the forward pass).
        on_content: Called from the decoding threads with (index, facts) of every image, before
            its batch is yielded. Only for a thread-safe transform: a worker process's calls
            would be lost.
    """
    thread_safe = bool(getattr(transform, "thread_safe", False))
    if on_content is not None and not thread_safe:
        raise ValueError("on_content needs a thread-safe transform (images decoded in threads)")
    images = _Images(paths, transform, draft_size, keys, on_content)
    if thread_safe:
        threads = default_num_threads() if num_workers is None else num_workers
        chunks = (
            range(i, min(i + batch_size, len(images))) for i in range(0, len(images), batch_size)
        )
        return decode_ahead(chunks, images.__getitem__, _collate, threads)
    workers = default_num_workers() if num_workers is None else num_workers
    loader: DataLoader[Any] = DataLoader(
        images,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    return loader
