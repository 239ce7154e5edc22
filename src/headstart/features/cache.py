"""The on-disk feature cache.

Why SQLite: it is in the standard library, one file holds a million entries without a million tiny
files, a transaction makes every write atomic (a run killed at any moment leaves either the whole
batch or none of it, never a half-written entry that later reads as valid), and its locking lets two
runs share a cache without corrupting it. WAL mode lets readers go on while one run writes.

Three tables:
- ``features``: (namespace, digest) -> float32 vector. The namespace hashes everything that decides
  what the backbone outputs (architecture, weights identity, preprocessing, layer, view), the digest
  is the SHA-256 of the image file's bytes, so renaming or copying an image still hits.
- ``files``: (path, size, mtime_ns) -> digest, a cheap check that avoids re-reading unchanged files
  to hash them on every run.
- ``images``: digest -> the facts the dataset checks need (size, mode, perceptual hash, colour
  thumbnail; :class:`headstart.data.facts.ImageContent`), computed in extraction's decoding pass,
  so a warm run's leakage check and ``headstart doctor`` decode nothing.
- ``results``: key -> JSON, results computed from stored facts alone and keyed by a hash of all
  their inputs (the near-duplicate pairs of a set of images), so a warm run does not redo an
  all-pairs search it did before.

Tables are only ever added, with ``CREATE TABLE IF NOT EXISTS``: a cache file written by an older
version opens as it is and gains the new table, and an older version ignores tables it does not
know. Each row of ``images`` carries the version of the facts' definition, so facts computed
differently are recomputed rather than trusted.

A cache never stops a run. A file damaged by a crash or a bad disk (SQLite reports it corrupt, or
not a database) is set aside, renamed and never deleted, so it can still be inspected, and a new
one is started: the run recomputes what it needs. A folder the run cannot write to (a read-only
mount) is read as it is, or, with no cache there yet, replaced by one in memory; either way
nothing new is stored. Each says so in one warning.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from stat import S_ISREG
from typing import Any, TypeVar

import numpy as np
import platformdirs

from headstart.bulk import bulk
from headstart.data.facts import FACTS_VERSION, ImageContent
from headstart.errors import CacheWarning, StorageError
from headstart.progress import Progress

__all__ = ["FeatureCache", "cache_size", "decoded_in", "default_cache_dir", "file_digest"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    namespace TEXT NOT NULL,
    digest TEXT NOT NULL,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (namespace, digest)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images (
    digest TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    problem TEXT,
    format TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mode TEXT NOT NULL,
    grayscale INTEGER NOT NULL,
    phash INTEGER NOT NULL,
    thumb BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""

# SQLite limits the number of host parameters in one statement (999 before 3.32, 32766 since);
# stay well below it. Larger chunks are fewer statements: 30% faster lookups at 100k digests.
_CHUNK = 5000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 500
# Reads go through a memory map of up to this much of the file instead of a read() per page:
# lookups of 100k features 1.5-2x faster.
_MMAP_BYTES = 256 << 20
_U64 = (1 << 64) - 1
_FILE = "features.sqlite"


def default_cache_dir() -> Path:
    """The user's cache folder for headstart (``HEADSTART_CACHE_DIR`` overrides it)."""
    env = os.environ.get("HEADSTART_CACHE_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("headstart")) / "features"


def cache_size(folder: Path) -> int | None:
    """Bytes the cache in ``folder`` takes on disk (its database and write-ahead log); None
    where there is no cache."""
    if not (folder / _FILE).is_file():
        return None
    names = (_FILE, f"{_FILE}-wal", f"{_FILE}-shm")
    return sum((folder / name).stat().st_size for name in names if (folder / name).is_file())


def decoded_in(folder: Path, paths: Sequence[Path]) -> dict[Path, str]:
    """:meth:`FeatureCache.decoded` of the cache in ``folder``; nothing where no cache exists yet
    (and none is created: a first run's discovery must not leave an empty cache behind)."""
    if not (folder / _FILE).is_file():
        return {}
    with FeatureCache(folder) as cache:
        return cache.decoded(paths)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: the identity of an image, whatever its name."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_Method = TypeVar("_Method", bound=Callable[..., Any])

# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT and SQLITE_NOTADB.
_DAMAGED = (11, 26)


# SQLITE_IOERR and SQLITE_FULL: the disk failed or filled up while writing.
_UNWRITABLE = (10, 13)


def _cannot_write(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _UNWRITABLE
    text = str(exc)
    return "disk is full" in text or "disk I/O error" in text


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGED
    text = str(exc)
    return "malformed" in text or "not a database" in text


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A cache problem is said once per process, however many times the cache is opened."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, CacheWarning, stacklevel=4)


def _recovering(method: _Method) -> _Method:
    """A method that survives a damaged cache file: the file is set aside, and the method runs
    again on a new, empty cache (reads then find nothing, and the caller computes)."""

    @functools.wraps(method)
    def wrapper(self: FeatureCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class FeatureCache:
    """A content-addressed store of feature vectors in one SQLite file under ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / _FILE
        # False when the folder cannot be written: reads go on, writes are skipped.
        self.writable = True
        self._inode: int | None = None
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._set_aside(exc)
                return self._connect()
            return self._read_only(exc)
        except OSError as exc:
            return self._read_only(exc)

    def _connect(self) -> sqlite3.Connection:
        # SQLite creates its file 0644 whatever the umask; created here first, it gets 0o666 less
        # the umask as any program's file would (a group-shared cache stays group-writable), and
        # SQLite gives its -wal and -shm files the database file's mode.
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            pass
        # isolation_level=None: we open transactions ourselves, so each batch is one transaction.
        db = sqlite3.connect(self.path, timeout=120.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 120000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._inode = os.stat(self.path).st_ino
        return db

    def _read_only(self, exc: BaseException) -> sqlite3.Connection:
        """The folder cannot be written: read the cache there as it is, or keep one in memory."""
        self.writable = False
        reason = getattr(exc, "strerror", None) or str(exc)
        if self.path.is_file():
            try:
                # immutable: no lock, no journal, no -shm file to create in the folder.
                db = sqlite3.connect(
                    f"{self.path.as_uri()}?immutable=1", uri=True, isolation_level=None
                )
                db.execute("SELECT COUNT(*) FROM features").fetchone()
            except sqlite3.DatabaseError:
                pass
            else:
                _warn_once(
                    f"the feature cache {self.path} cannot be written ({reason}): this run "
                    "reads it but caches nothing new; point --cache-dir or HEADSTART_CACHE_DIR "
                    "at a writable folder to cache"
                )
                return db
        _warn_once(
            f"cannot use the feature cache in {self.folder} ({reason}): this run goes on "
            "without it; point --cache-dir or HEADSTART_CACHE_DIR at a writable folder"
        )
        self.writable = True  # to memory, for this object's life only
        db = sqlite3.connect(":memory:", isolation_level=None)
        db.executescript(_SCHEMA)
        return db

    def _set_aside(self, exc: BaseException) -> None:
        """Rename a damaged cache file (and its journal) out of the way, never deleting it.

        Only the file this object opened: another process may have set it aside already and
        started a new one, which must not be taken for the damaged one.
        """
        if getattr(self, "_db", None) is not None:
            self._db.close()
        try:
            current = os.stat(self.path).st_ino
        except OSError:
            current = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.folder / f"features.damaged-{stamp}-{os.getpid()}.sqlite"
        if current is not None and (self._inode is None or current == self._inode):
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
            _warn_once(
                f"the feature cache {self.path} is damaged ({exc}); it was set aside as "
                f"{aside.name} and a new one started: this run recomputes what it needs"
            )
        _SEEN.pop(str(self.path.resolve()), None)

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """After an error: a damaged file is set aside and replaced; a full or failing disk is
        one line (the transaction was rolled back: the cache is as it was); anything else is
        raised."""
        if _cannot_write(exc):
            raise StorageError(
                f"cannot write the feature cache {self.path} ({exc}); it is as it was before "
                "this batch: free some space, or point --cache-dir (HEADSTART_CACHE_DIR) at "
                "another disk, or pass --no-cache"
            ) from exc
        if not _is_corrupt(exc):
            raise exc
        self._set_aside(exc)
        self._db = self._connect()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- features -------------------------------------------------------------------------
    @bulk
    @_recovering
    def get_many(self, namespace: str, digests: Iterable[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``digests``; entries that fail validation are ignored."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT digest, dim, data FROM features "
                f"WHERE namespace = ? AND digest IN ({marks})"
            )
            rows = self._db.execute(query, (namespace, *chunk))
            for digest, dim, data in rows:
                if len(data) == dim * 4:
                    found[digest] = np.frombuffer(data, dtype=np.float32, count=dim)
        return found

    @bulk
    @_recovering
    def present(self, namespace: str, digests: Iterable[str], dim: int) -> set[str]:
        """The digests among ``digests`` with a valid ``dim``-long vector, without reading any:
        a million lookups cost the keys, not the 4 GB of vectors behind them."""
        wanted = list(dict.fromkeys(digests))
        found: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT digest FROM features WHERE namespace = ? AND dim = ? "
                f"AND length(data) = dim * 4 AND digest IN ({marks})",
                (namespace, dim, *chunk),
            )
            found.update(digest for (digest,) in rows)
        return found

    @bulk
    @_recovering
    def read_into(
        self,
        namespace: str,
        rows: Mapping[str, Sequence[int]],
        out: np.ndarray,
        *,
        missing_ok: bool = False,
    ) -> set[str]:
        """Copy the cached vector of each digest into ``out[rows[digest]]``, streamed in chunks.

        The vectors go straight from SQLite's pages into the caller's array (which may be a
        memory map): no dict of a million small arrays, no second array to stack them into.

        Returns:
            The digests whose vectors were copied (with ``missing_ok``, the others' rows are
            left as they were, for the caller to fill).

        Raises:
            LookupError: A digest has no valid vector of ``out``'s width, unless ``missing_ok``.
        """
        dim = int(out.shape[1])
        wanted = list(rows)
        filled: set[str] = set()
        for found in self._vectors(namespace, dim, wanted):
            found = [(digest, data) for digest, data in found if digest in rows]
            if not found:
                continue
            # One buffer per chunk and one fancy-indexed copy, not a NumPy call per vector.
            vectors = np.frombuffer(b"".join(data for _, data in found), dtype=np.float32)
            vectors = vectors.reshape(len(found), dim)
            targets = [rows[digest] for digest, _ in found]
            if all(len(t) == 1 for t in targets):
                out[[t[0] for t in targets]] = vectors
            else:  # the same content under several names: each of its rows
                for target, vector in zip(targets, vectors, strict=True):
                    out[target] = vector
            filled.update(digest for digest, _ in found)
        if len(filled) != len(wanted) and not missing_ok:
            raise LookupError(
                f"{len(wanted) - len(filled)} of {len(wanted)} vectors are not cached"
            )
        return filled

    def _vectors(
        self, namespace: str, dim: int, wanted: list[str]
    ) -> Iterator[list[tuple[str, bytes]]]:
        """Chunks of (digest, data) rows holding (at least) the valid vectors of ``wanted``.

        When the namespace holds not many more vectors than are wanted (the usual warm run: the
        cache holds this dataset), one scan of it reads them in order, at a third to a half of
        the cost of looking each digest up; otherwise each is looked up.
        """
        valid = "namespace = ? AND dim = ? AND length(data) = dim * 4"
        bound = 2 * len(wanted)
        (held,) = self._db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM features WHERE {valid} LIMIT ?)",
            (namespace, dim, bound + 1),
        ).fetchone()
        if held <= bound:
            cursor = self._db.execute(
                f"SELECT digest, data FROM features WHERE {valid}", (namespace, dim)
            )
            while chunk := cursor.fetchmany(_CHUNK):
                yield chunk
            return
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            yield self._db.execute(
                f"SELECT digest, data FROM features WHERE {valid} AND digest IN ({marks})",
                (namespace, dim, *chunk),
            ).fetchall()

    @_recovering
    def put_many(
        self,
        namespace: str,
        vectors: Mapping[str, np.ndarray],
        facts: Mapping[str, ImageContent] | None = None,
    ) -> None:
        """Store vectors (and the facts of their images) in one transaction: all of them become
        visible together, or none."""
        if not self.writable:
            return
        rows = []
        for digest, vector in vectors.items():
            arr = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            rows.append((namespace, digest, int(arr.shape[0]), arr.tobytes()))
        fact_rows = _fact_rows(facts or {})
        if not rows and not fact_rows:
            return
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?)", rows)
            self._db.executemany(_INSERT_FACTS, fact_rows)

    @_recovering
    def stats(self) -> dict[str, int]:
        """How much the cache holds: feature vectors, the feature sets they belong to (one per
        backbone, weights, preprocessing, layer and view), images with stored facts, and files
        whose digest is remembered."""
        queries = {
            "vectors": "SELECT COUNT(*) FROM features",
            "feature_sets": "SELECT COUNT(DISTINCT namespace) FROM features",
            "images": "SELECT COUNT(*) FROM images",
            "files": "SELECT COUNT(*) FROM files",
        }
        return {key: int(self._db.execute(sql).fetchone()[0]) for key, sql in queries.items()}

    @_recovering
    def clear(self) -> None:
        """Delete every entry, in one transaction, then give the space back to the file system.

        Entries are deleted rather than the file removed: a run using the cache at the same
        time keeps a valid database (it waits on SQLite's lock, then finds nothing and
        recomputes), where a removed file would leave it writing to a deleted inode.
        """
        if not self.writable:
            raise PermissionError(f"the feature cache {self.path} cannot be written")
        with self._transaction():
            for table in ("features", "images", "results", "files"):
                self._db.execute(f"DELETE FROM {table}")
        self._db.execute("VACUUM")
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @_recovering
    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            row = self._db.execute("SELECT COUNT(*) FROM features").fetchone()
        else:
            query = "SELECT COUNT(*) FROM features WHERE namespace = ?"
            row = self._db.execute(query, (namespace,)).fetchone()
        return int(row[0])

    # -- image facts ----------------------------------------------------------------------
    @bulk
    @_recovering
    def get_facts(self, digests: Iterable[str]) -> dict[str, ImageContent]:
        """The stored facts among ``digests`` (of the current facts version)."""
        wanted = list(dict.fromkeys(digests))
        found: dict[str, ImageContent] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT digest, problem, format, width, height, mode, grayscale, phash, thumb "
                f"FROM images WHERE version = ? AND digest IN ({marks})",
                (FACTS_VERSION, *chunk),
            )
            # Positional arguments: keywords cost a third of the call at 100k rows. The hash is
            # stored as SQLite's signed 64-bit integer.
            for digest, problem, fmt, width, height, mode, gray, phash, thumb in rows:
                found[digest] = ImageContent(
                    problem, fmt, width, height, mode, bool(gray), phash & _U64, bytes(thumb)
                )
        return found

    @_recovering
    def put_facts(self, facts: Mapping[str, ImageContent]) -> None:
        """Store the facts of image contents by digest, in one transaction."""
        rows = _fact_rows(facts)
        if not rows or not self.writable:
            return
        with self._transaction():
            self._db.executemany(_INSERT_FACTS, rows)

    # -- derived results ------------------------------------------------------------------
    @_recovering
    def get_result(self, key: str) -> str | None:
        """The stored JSON of a result computed from stored facts, by the hash of its inputs."""
        row = self._db.execute("SELECT value FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @_recovering
    def put_result(self, key: str, value: str) -> None:
        if not self.writable:
            return
        with self._transaction():
            self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)", (key, value))

    # -- file digests ---------------------------------------------------------------------
    @bulk
    @_recovering
    def digests(
        self,
        paths: Sequence[Path],
        *,
        quiet: bool = True,
        known: Mapping[Path, str] | None = None,
    ) -> tuple[dict[Path, str], dict[Path, str]]:
        """Content digests of ``paths``, re-reading only files whose size or mtime changed.

        Hashing a large new dataset reads every byte once, so it reports progress unless quiet;
        a dataset seen before costs one ``stat`` per file and shows nothing.

        Args:
            known: Digests of (some of) ``paths`` that the same run found a moment ago (its
                discovery or extraction): taken as they are, those files are not looked at.

        Returns:
            (digests, failures): failures maps an unreadable path to the reason.
        """
        given = known or {}
        result = {p: given[p] for p in paths if p in given} if given else {}
        failures: dict[Path, str] = {}
        stats = self._stats([p for p in paths if p not in given] if given else paths, failures)
        records = self._known(stats)
        fresh: list[tuple[str, int, int, str]] = []
        todo: list[tuple[Path, int, int]] = []
        for path, (name, size, mtime_ns) in stats.items():
            hit = records.get(name)
            if hit is not None and hit[0] == size and hit[1] == mtime_ns:
                result[path] = hit[2]
            else:
                todo.append((path, size, mtime_ns))
        with Progress(len(todo), "hashing files", unit="file", quiet=quiet or not todo) as bar:
            for path, size, mtime_ns in todo:
                bar.update(1)
                try:
                    digest = file_digest(path)
                except OSError as exc:
                    failures[path] = f"cannot read file: {exc.strerror or exc}"
                    continue
                result[path] = digest
                fresh.append((str(path), size, mtime_ns, digest))
        if fresh and self.writable:
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
            # Not known to decode yet: extraction decodes them next.
            records.update(
                (name, (size, mtime, digest, False)) for name, size, mtime, digest in fresh
            )
        return result, failures

    @bulk
    @_recovering
    def decoded(self, paths: Sequence[Path]) -> dict[Path, str]:
        """The files among ``paths`` that an earlier run decoded whole, unchanged since, with
        their content digests.

        Same size and modification time as when their content was hashed, and that content has
        stored facts without a problem: opening them to sniff their format again would tell
        nothing new. Discovery skips that open for these files (the ``vouch`` of
        :func:`headstart.data.load_dataset`): most of what listing a dataset costs on a warm
        run, and much more when the files have left the page cache.
        """
        stats = self._stats(paths, {}, regular=True)
        known = self._known(stats, decoded=True)
        out: dict[Path, str] = {}
        for path, (name, size, mtime_ns) in stats.items():
            hit = known.get(name)
            if hit is not None and hit[3] and hit[0] == size and hit[1] == mtime_ns:
                out[path] = hit[2]
        return out

    @staticmethod
    def _stats(
        paths: Sequence[Path], failures: dict[Path, str], *, regular: bool = False
    ) -> dict[Path, tuple[str, int, int]]:
        """(name, size, mtime_ns) of each path that can be stat'ed; the others in ``failures``.

        ``os.stat`` of the path's string, not ``Path.stat``: a third cheaper per file.
        """
        stats: dict[Path, tuple[str, int, int]] = {}
        for path in paths:
            name = str(path)
            try:
                st = os.stat(name)
            except OSError as exc:
                failures[path] = f"cannot read file: {exc.strerror or exc}"
                continue
            if regular and not S_ISREG(st.st_mode):
                continue
            stats[path] = (name, st.st_size, st.st_mtime_ns)
        return stats

    def _known(
        self, stats: Mapping[Path, tuple[str, int, int]], *, decoded: bool = False
    ) -> dict[str, _Known]:
        """This process's memo of the cache's ``files`` records, filled for ``stats``' files.

        With ``decoded``, records not known to have decoded are read again: extraction may have
        decoded them since.
        """
        known = _SEEN.setdefault(str(self.path.resolve()), {})
        names = [
            name
            for name, _, _ in stats.values()
            if name not in known or (decoded and not known[name][3])
        ]
        for path, size, mtime_ns, digest, ok in self._file_rows(names):
            known[path] = (size, mtime_ns, digest, bool(ok))
        return known

    def _file_rows(self, names: list[str]) -> Iterator[tuple[str, int, int, str, int]]:
        """The ``files`` records of ``names`` (and maybe of other files), each with whether its
        content decoded whole.

        A dataset's files are neighbours in the table (it is ordered by path): when the records
        between the first and last name are not many more than the names, one range scan reads
        them, at half the cost of looking each name up (0.7 s against 1.3 s at 100,000).
        """
        select = (
            "SELECT f.path, f.size, f.mtime_ns, f.digest, i.problem IS NULL AND i.format IS NOT "
            "NULL FROM files AS f LEFT JOIN images AS i ON i.digest = f.digest WHERE f.path "
        )
        if not names:
            return
        lo, hi = min(names), max(names)
        (span,) = self._db.execute(
            "SELECT COUNT(*) FROM files WHERE path BETWEEN ? AND ?", (lo, hi)
        ).fetchone()
        if span <= 2 * len(names):
            yield from self._db.execute(select + "BETWEEN ? AND ?", (lo, hi))
            return
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            yield from self._db.execute(select + f"IN ({','.join('?' * len(chunk))})", chunk)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


# A ``files`` record: size, mtime_ns, digest, and whether that content decoded whole (stored
# facts without a problem).
_Known = tuple[int, int, str, bool]

# What this process learnt of each cache's ``files`` table, by cache file: a run asks about the
# same files several times (discovery, extraction, the leakage check, the report), and each
# entry is still checked against a fresh stat before it is used.
_SEEN: dict[str, dict[str, _Known]] = {}

_INSERT_FACTS = "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _fact_rows(facts: Mapping[str, ImageContent]) -> list[tuple[object, ...]]:
    return [
        (
            digest,
            FACTS_VERSION,
            f.problem,
            f.format,
            f.width,
            f.height,
            f.mode,
            int(f.grayscale),
            f.phash - (1 << 64) if f.phash >= 1 << 63 else f.phash,  # SQLite's signed 64 bits
            f.thumb,
        )
        for digest, f in facts.items()
    ]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (including KeyboardInterrupt)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking.
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT (a full disk) leaves it open
                    self._db.execute("ROLLBACK")
                raise
        elif self._db.in_transaction:
            # SQLite rolls back by itself after some errors (a full disk): a second ROLLBACK
            # would raise "no transaction is active" over the error that matters.
            self._db.execute("ROLLBACK")
