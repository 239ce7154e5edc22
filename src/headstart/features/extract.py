"""Running a frozen backbone over image files, batched, with decoding ahead of the forward pass.

The backbone always runs in inference mode (``eval()`` and ``torch.inference_mode()``): a frozen
backbone whose BatchNorm layers still use batch statistics is the classic transfer-learning bug
(docs/why.md, story 2). Decoding and preprocessing run in threads (:mod:`.batches`) so they
overlap the forward pass. Results go to the feature cache batch by batch, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from headstart.bulk import bulk
from headstart.data.facts import ImageContent
from headstart.device import prepare_device
from headstart.distributed import all_gather, is_main, run_on_main, shard, world
from headstart.features.batches import iter_batches
from headstart.features.cache import FeatureCache, default_cache_dir, file_digest
from headstart.features.engines import (
    EngineRunner,
    check_engine,
    select_runner,
    warn_engine_on_device,
)
from headstart.progress import Progress
from headstart.threads import ThreadProbe

if TYPE_CHECKING:
    from PIL import Image

    from headstart.backbones import Backbone

__all__ = [
    "extract_cached",
    "ExtractResult",
    "FeatureView",
    "extract_features",
    "feature_namespace",
]

# Bump when the meaning of a cached vector changes (pooling, dtype, ...): old entries then miss.
_FEATURE_FORMAT = 1
# Batches each rank computes between two gathers under torchrun (see _forward_sharded).
_ROUND_BATCHES = 16
# Rows moved at a time when a failed image's row is dropped from the features (a bounded buffer).
_MOVE_ROWS = 4096
_SAME_AS_UNREADABLE = "could not be decoded (same content as another unreadable file)"


def feature_namespace(backbone: Backbone, *, view: str = "plain") -> str:
    """The cache namespace: a hash of everything that decides what the backbone outputs.

    Two runs share entries only if architecture, weights, preprocessing and view all match, so a
    changed mean/std or a fine-tuned backbone can never be served stale features.

    The engine that runs the forward pass (:mod:`.engines`) is not part of it, on purpose. An
    engine is used only where its features equal torch's to 1e-4 relative, which is rounding of
    the kind the cache already holds (two thread counts or batch sizes sum in another order, and
    differ by about 1e-7); the head cannot tell such features apart. Keyed by engine, a cache
    filled by ``train`` under ONNX Runtime would be computed again by a ``predict`` under
    torch, for nothing.
    """
    spec = backbone.spec
    payload = {
        "format": _FEATURE_FORMAT,
        "family": spec.get("family"),
        "architecture": spec.get("architecture"),
        "model_args": spec.get("model_args", {}),
        "weights_id": backbone.weights_id,
        "layer": spec.get("layer"),
        "preprocess": backbone.preprocess.fingerprint(),
        "view": view,
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class FeatureView(Protocol):
    """A deterministic variant of every image (e.g. one cached augmented view).

    ``name`` goes into the cache namespace; ``transform(preprocess)`` gives a picklable callable
    taking the decoded image and the file's content digest, so a view can depend on the image's
    identity (and so be reproducible and cacheable) but never on its path or position.
    """

    @property
    def name(self) -> str: ...

    def transform(self, preprocess: Any) -> Callable[[Image.Image, str], torch.Tensor]: ...


@dataclass
class ExtractResult:
    """Features for the images that could be read, in the order they were given."""

    paths: list[Path]
    features: np.ndarray
    failures: dict[Path, str] = field(default_factory=dict)
    n_computed: int = 0
    n_cached: int = 0
    # The content digest of each readable file, as extraction found it: what later steps of the
    # same run (the leakage check) look facts up by, without a second stat of every file.
    digests: dict[Path, str] = field(default_factory=dict)


def extract_features(
    backbone: Backbone,
    paths: Sequence[Path],
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    device: str | torch.device | None = "auto",
    quiet: bool = False,
    desc: str = "extracting features",
    view: FeatureView | None = None,
    digests: Mapping[Path, str] | None = None,
    engine: str = "auto",
) -> ExtractResult:
    """Pooled features of every readable image in ``paths``.

    With a cache, images whose content was seen before with this backbone and preprocessing cost
    no forward pass; identical files are computed once. Unreadable images are returned in
    ``failures`` with the reason, never raised: one corrupt file must not kill a long run.

    Under torchrun (an initialised process group), every rank calls this with the same paths:
    rank 0 looks them up in ``cache`` (the other ranks pass None), each rank computes a disjoint
    shard of what is missing, and every rank returns the same complete result.

    Args:
        view: Extract this deterministic variant of each image (an augmented view) instead of
            the plain image; its name is part of the cache namespace, so plain features and
            each view are cached apart.
        digests: Content digests of (some of) ``paths`` that the caller found a moment ago
            (discovery's check against the cache): those files are not looked at again.
        engine: What runs the forward pass on a CPU: ``torch``, ``onnxruntime``, ``openvino``
            or ``auto`` (:mod:`headstart.features.engines`); the features are torch's to 1e-4
            whichever runs, and are cached under the same key.
    """
    check_engine(engine)
    # Path(p) of a Path parses it again: 10 us a file, a second at 100k images.
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    given = digests or {}
    namespace = feature_namespace(backbone, view=view.name if view is not None else "plain")
    dim = backbone.num_features
    sharded = world().size > 1
    compute = partial(
        _compute,
        forward=lambda: _Forward(backbone, device, view, engine=engine, cache=cache),
        sharded=sharded,
        desc=desc,
        quiet=quiet,
        batch_size=batch_size,
        num_workers=num_workers,
        cache=cache,
        namespace=namespace,
    )
    if not sharded:
        return _extract_here(
            paths, compute, cache=cache, namespace=namespace, dim=dim, given=given, quiet=quiet
        )
    # Under torchrun, rank 0 alone reads the cache and hashes; the others get its answer.
    digests, failures, cached_vectors = run_on_main(
        lambda: _lookup(paths, cache, namespace, quiet, given)
    )
    cached = set(cached_vectors)
    todo, n_cached = _plan(paths, digests, cached)
    computed = compute(todo, digests=digests, failures=failures)
    return _gather(
        paths,
        dim,
        digests=digests,
        failures=failures,
        cached=cached,
        cached_vectors=cached_vectors,
        computed=computed,
        n_computed=len(todo),
        n_cached=n_cached,
    )


def _extract_here(
    paths: list[Path],
    compute: Callable[..., dict[str, np.ndarray]],
    *,
    cache: FeatureCache | None,
    namespace: str,
    dim: int,
    given: Mapping[Path, str],
    quiet: bool,
) -> ExtractResult:
    """:func:`extract_features` in one process: the result array is made first, what the cache
    holds is read straight into it (one lookup per content, not one to ask and one to read),
    and only the contents it lacks are computed (``compute``, :func:`_compute` bound to the
    backbone) into their rows."""
    digests, failures = _digests(paths, cache, given, quiet)
    ok, rows = _rows_by_digest(paths, digests)
    # One array, filled in place: a million 1024-d features take their 4 GB once, not again in
    # a dict of rows and a stacked copy.
    feats = np.empty((len(ok), dim), dtype=np.float32)
    cached = (
        cache.read_into(namespace, rows, feats, missing_ok=True) if cache is not None else set()
    )
    todo, n_cached = _plan(ok, digests, cached)
    computed = compute(todo, digests=digests, failures=failures)
    if todo:
        ok, feats = _fill_computed(ok, feats, rows, cached, computed, failures)
    return ExtractResult(
        paths=ok,
        features=feats,
        failures=failures,
        n_computed=len(todo),
        n_cached=n_cached,
        digests=digests,
    )


def _compute(
    todo: list[Path],
    *,
    forward: Callable[[], _Forward],
    sharded: bool,
    desc: str,
    quiet: bool,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Features of ``todo`` by digest, with progress: in this process, or sharded over the
    ranks under torchrun. The model is made ready (``forward``) only when there is work, so a
    warm run moves no model to a device. ``options`` go to :class:`_Forward`'s call."""
    if not todo:
        return {}
    with Progress(len(todo), desc, unit="img", quiet=quiet) as progress:
        if sharded:
            return _forward_sharded(forward(), todo, progress=progress, **options)
        return forward()(todo, progress=progress, **options)


@bulk
def _rows_by_digest(
    paths: Sequence[Path], digests: Mapping[Path, str]
) -> tuple[list[Path], dict[str, list[int]]]:
    """The files with a digest, and the rows each content fills (several for copies)."""
    ok = [p for p in paths if p in digests]
    rows: dict[str, list[int]] = {}
    for row, path in enumerate(ok):
        rows.setdefault(digests[path], []).append(row)
    return ok, rows


@bulk
def _fill_computed(
    ok: list[Path],
    feats: np.ndarray,
    rows: Mapping[str, list[int]],
    cached: set[str],
    computed: Mapping[str, np.ndarray],
    failures: dict[Path, str],
) -> tuple[list[Path], np.ndarray]:
    """Put each computed vector in its rows; drop the rows of contents that failed to decode."""
    dropped: list[int] = []
    for digest, targets in rows.items():
        if digest in cached:
            continue
        vector = computed.get(digest)
        if vector is not None:
            feats[targets] = vector
            continue
        dropped.extend(targets)
        for row in targets:
            # The file extraction tried has its own reason; its copies fail with it.
            failures.setdefault(ok[row], _SAME_AS_UNREADABLE)
    if not dropped:
        return ok, feats
    dropped.sort()
    gone = set(dropped)
    return [p for row, p in enumerate(ok) if row not in gone], _without_rows(feats, dropped)


def _without_rows(feats: np.ndarray, dropped: Sequence[int]) -> np.ndarray:
    """``feats`` without the (sorted) rows ``dropped``, the others moved up in place: a failed
    image in a million costs no second array of features, only a bounded buffer per move."""
    end = len(feats)
    write = dropped[0]
    for i, row in enumerate(dropped):
        stop = dropped[i + 1] if i + 1 < len(dropped) else end
        for start in range(row + 1, stop, _MOVE_ROWS):
            block = min(_MOVE_ROWS, stop - start)
            feats[write : write + block] = feats[start : start + block]
            write += block
    return feats[:write]


@bulk
def _plan(
    paths: Sequence[Path], digests: Mapping[Path, str], cached: set[str]
) -> tuple[list[Path], int]:
    """(one file of each readable content not cached, how many files are cached)."""
    todo: list[Path] = []
    seen: set[str] = set(cached)
    n_cached = 0
    for path in paths:
        digest = digests.get(path)
        if digest is None:
            continue
        if digest in cached:
            n_cached += 1
        elif digest not in seen:
            seen.add(digest)
            todo.append(path)
    return todo, n_cached


@bulk
def _gather(
    paths: Sequence[Path],
    dim: int,
    *,
    digests: dict[Path, str],
    failures: dict[Path, str],
    cached: set[str],
    cached_vectors: Mapping[str, np.ndarray],
    computed: Mapping[str, np.ndarray],
    n_computed: int,
    n_cached: int,
) -> ExtractResult:
    """The result under torchrun: a row per usable file, from what was computed and what
    rank 0 read from the cache."""
    # A file whose content failed to decode under another name fails here too.
    for p in paths:
        if p not in failures and digests[p] not in cached and digests[p] not in computed:
            failures[p] = _SAME_AS_UNREADABLE
    ok = [p for p in paths if p not in failures]
    feats = np.empty((len(ok), dim), dtype=np.float32)
    for row, path in enumerate(ok):
        digest = digests[path]
        feats[row] = computed[digest] if digest in computed else cached_vectors[digest]
    return ExtractResult(
        paths=ok,
        features=feats,
        failures=failures,
        n_computed=n_computed,
        n_cached=n_cached,
        digests=digests,
    )


@bulk
def _lookup(
    paths: list[Path],
    cache: FeatureCache | None,
    namespace: str,
    quiet: bool,
    given: Mapping[Path, str],
) -> tuple[dict[Path, str], dict[Path, str], dict[str, np.ndarray]]:
    """(digest of each readable file, unreadable files with the reason, cached vectors)."""
    digests, failures = _digests(paths, cache, given, quiet)
    vectors = cache.get_many(namespace, digests.values()) if cache is not None else {}
    return digests, failures, vectors


@bulk
def _digests(
    paths: list[Path], cache: FeatureCache | None, given: Mapping[Path, str], quiet: bool
) -> tuple[dict[Path, str], dict[Path, str]]:
    """(digest of each readable file, unreadable files with the reason): the ``given`` ones as
    they are, the others from the cache's record of unchanged files, or hashed."""
    if cache is not None:
        return cache.digests(paths, quiet=quiet, known=given)
    digests = {p: given[p] for p in paths if p in given}
    failures: dict[Path, str] = {}
    for path in paths:
        if path in digests:
            continue
        try:
            digests[path] = file_digest(path)
        except OSError as exc:
            failures[path] = f"cannot read file: {exc.strerror or exc}"
    return digests, failures


class _Forward:
    """The backbone on its device, in inference mode, ready to run over lists of files."""

    def __init__(
        self,
        backbone: Backbone,
        device: str | torch.device | None,
        view: FeatureView | None,
        *,
        engine: str = "auto",
        cache: FeatureCache | None = None,
    ) -> None:
        self.device = prepare_device(device)
        self.channels_last = self.device.type != "mps"
        module = backbone.module.eval().to(self.device)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.preprocess = backbone.preprocess
        self.view = view
        self.spec = backbone.spec
        self.engine = engine
        self.engine_folder = cache.folder if cache is not None else default_cache_dir()
        self.runner: EngineRunner | None = None
        self._engine_chosen = False

    def _choose_engine(self, images: int) -> EngineRunner | None:
        """The engine for this pass (None: torch), chosen on the first call: another engine
        runs on the CPU only."""
        if self._engine_chosen:
            return self.runner
        self._engine_chosen = True
        if self.engine == "torch":
            return None
        if self.device.type != "cpu":
            if self.engine != "auto":
                warn_engine_on_device(self.engine, self.device)
            return None
        self.runner = select_runner(
            self.module,
            self.spec,
            (3, *self.preprocess.input_size),
            engine=self.engine,
            folder=self.engine_folder,
            images=images,
        )
        return self.runner

    def __call__(
        self,
        todo: list[Path],
        *,
        batch_size: int,
        num_workers: int | None,
        progress: Progress,
        cache: FeatureCache | None,
        namespace: str,
        digests: dict[Path, str],
        failures: dict[Path, str],
    ) -> dict[str, np.ndarray]:
        """Features of ``todo`` by digest, written to ``cache`` batch by batch when given."""
        computed: dict[str, np.ndarray] = {}
        view = self.view
        # The plain pass decodes every new image anyway: the facts the dataset checks need (size,
        # mode, hashes) come from the same pixels and are stored beside the features.
        contents: dict[int, ImageContent] = {}
        keep_facts = cache is not None and view is None
        loader = iter_batches(
            todo,
            self.preprocess if view is None else view.transform(self.preprocess),
            draft_size=self.preprocess.draft_size,
            batch_size=batch_size,
            num_workers=num_workers,
            keys=None if view is None else [digests[p] for p in todo],
            on_content=contents.__setitem__ if keep_facts else None,
        )
        runner = self._choose_engine(len(todo))
        # On a CPU, one thread or the whole team, whichever the machine runs faster now; an
        # engine gets the same count for its own intra-op threads.
        probe = ThreadProbe(enabled=self.device.type == "cpu")
        if runner is not None:
            for count in probe.counts:
                runner.prepare(count)
        with torch.inference_mode():
            for batch, indices, bad in loader:
                for index, reason in bad:
                    failures[todo[index]] = reason
                if batch is not None:
                    out = self._forward(batch, runner, probe)
                    fresh = {digests[todo[i]]: out[row] for row, i in enumerate(indices)}
                    computed.update(fresh)
                else:
                    fresh = {}
                if cache is not None:
                    done = [*indices, *(index for index, _ in bad)]
                    facts = {digests[todo[i]]: contents.pop(i) for i in done if i in contents}
                    cache.put_many(namespace, fresh, facts)
                progress.update(len(indices) + len(bad))
        return computed

    def _forward(
        self, batch: torch.Tensor, runner: EngineRunner | None, probe: ThreadProbe
    ) -> np.ndarray:
        """One batch's features, by the engine when it takes this input size, else by torch."""
        if runner is not None and runner.accepts(batch):
            with probe.step(len(batch)) as threads:
                return runner.run(batch, threads)
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with probe.step(len(x)):
            return np.asarray(self.module(x).float().cpu().numpy())


def _forward_sharded(
    forward: _Forward,
    todo: list[Path],
    *,
    batch_size: int,
    num_workers: int | None,
    progress: Progress,
    cache: FeatureCache | None,
    namespace: str,
    digests: dict[Path, str],
    failures: dict[Path, str],
) -> dict[str, np.ndarray]:
    """Each rank computes its shard of ``todo``; rank 0 alone writes the cache.

    Why one writer rather than a cache file per rank that readers union: every rank needs every
    vector anyway, so the vectors travel between the ranks whatever the design, and once they
    have, rank 0 can write them at no extra cost. One writer keeps the cache the single file a
    one-process run uses (a later run with another number of ranks finds everything), and it means
    the SQLite file is only ever opened by one process of a job: on a network file system, where
    SQLite's locks cannot be trusted, no two machines touch it at once.

    The shard is whole batches dealt round-robin (:func:`headstart.distributed.shard`), so every
    batch is the one a single process would form and the features are the same bit for bit. The
    work goes in rounds of :data:`_ROUND_BATCHES` batches per rank, gathered after each, so an
    interrupted run keeps what finished rounds computed.
    """
    mine = shard(todo, batch_size)
    step = _ROUND_BATCHES * batch_size
    longest = max(all_gather(len(mine)))
    writer = cache if is_main() else None
    computed: dict[str, np.ndarray] = {}
    for start in range(0, longest, step):
        part = mine[start : start + step]
        bad: dict[Path, str] = {}
        quiet_progress = Progress(len(part), "", unit="img", quiet=True)
        local = (
            forward(
                part,
                batch_size=batch_size,
                num_workers=num_workers,
                progress=quiet_progress,
                cache=None,
                namespace=namespace,
                digests=digests,
                failures=bad,
            )
            if part
            else {}
        )
        fresh: dict[str, np.ndarray] = {}
        for vectors, failed in all_gather((local, bad)):
            fresh.update(vectors)
            failures.update(failed)
            progress.update(len(vectors) + len(failed))
        if writer is not None:
            writer.put_many(namespace, fresh)
        computed.update(fresh)
    return computed


def extract_cached(
    backbone: Backbone,
    paths: Sequence[Path],
    *,
    use_cache: bool,
    cache_dir: Path | None,
    desc: str,
    view: FeatureView | None = None,
    **options: Any,
) -> ExtractResult:
    """:func:`extract_features` through the on-disk cache in ``cache_dir`` (default: the user's
    cache folder), opened for this call only, so no connection outlives a step or crosses a fork;
    ``use_cache=False`` runs without it. ``options`` go to :func:`extract_features`.

    Under torchrun only rank 0 opens the cache (:func:`_forward_sharded` says why)."""
    cache = FeatureCache(cache_dir or default_cache_dir()) if use_cache and is_main() else None
    try:
        return extract_features(backbone, paths, cache=cache, desc=desc, view=view, **options)
    finally:
        if cache is not None:
            cache.close()
