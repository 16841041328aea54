"""A per-text cache on disk of model outputs (embeddings, scores), shared by
fits, clones, CV folds, processes and Dask workers, that survives crashes.

``ResultStore`` keeps one fixed-width row of numbers per unit (a text, a row's
fields) for one identity (the model's weights, backend, dtype, template and
every parameter that changes a value), in ``<location>/skdeita-<kind>/<first
24 hex digits of sha256(identity)>/``. The file format is in ``_cache_files``.

The rules:

- **Checkpoints.** ``StoreWriter.add`` appends one record (header with its
  own CRC, keys, values, body CRC) to this writer's journal ``j-<uuid>.rec``
  before it returns, so a process killed at any instant (SIGKILL included)
  loses at most the batch being written. The journal is fsynced at most every
  ``FSYNC_SECONDS`` (10 s) and on close: a killed process loses nothing that
  reached ``add`` (the page cache survives it); a machine that loses power or
  is preempted loses at most the last 10 seconds.
- **Trust.** A record is used only when complete and its body CRC matches;
  the complete records before a cut-off tail are used.
- **Live or dead.** A writer holds an ``flock`` on its journal until it has
  closed (the lock dies with the process, SIGKILL included). A file whose
  lock a reader can take is settled: anything incomplete, corrupt or foreign
  in it (bad magic, another format version, identity or row shape) is damage:
  one ``CacheDamagedWarning`` names the file, its intact records are copied
  to a new file, the file is renamed ``*.damaged`` (never read again) and the
  caller computes the missing rows. The incomplete tail of a locked (live)
  file is work in progress and silently ignored. Only ``*.rec`` files are
  read; other names (``*.damaged``, temporaries, old ``*.npz`` shards) are not.
- **Compaction.** On ``close()`` the writer takes ``.compact.lock`` without
  waiting (busy: it skips, the next writer to close merges what is left),
  then merges its journal, the journals of dead writers, and the merged files
  no larger than those, into one ``c-<uuid>.rec`` (temporary name, fsync,
  rename, then the inputs are deleted), streaming 8 MB at a time. A lone
  one-record journal is only renamed. The number of files stays logarithmic
  in the number of writers.
- **Failures.** ``check_writable`` raises ``CacheError`` (call it before any
  model loads). A failed write during a run (a full disk, a read-only
  folder, a file-size limit) gives one ``CacheWriteWarning``: the partial
  record is cut off, this writer stops writing, the run goes on, and what it
  wrote before stays valid.
- **Readers.** A lookup reads every file in chunks (about a megabyte),
  checking each record's CRC as it goes; it holds only the query's sort
  order and the output. A file that vanishes between listing and opening
  (another process merged it) is skipped and the folder listed again. When
  two files hold different bits for one key (two processes computed it at
  once), the smaller bytes win, so a result depends only on what the folder
  holds, not on file names or listing order.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
import zlib
from collections.abc import Iterable
from numbers import Integral
from pathlib import Path

import numpy as np

from ..exceptions import CacheError, CacheWriteWarning
from ._cache_files import (
    JOURNAL_PREFIX,
    KEY_BYTES,
    SUFFIX,
    ChunkReader,
    Layout,
    compact,
    fsync_directory,
    open_settled,
    report_damage,
    temp_path,
    walk,
    write_all,
)
from ._cache_lookup import KeyQuery
from ._warnings import warn_user

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FSYNC_SECONDS = 10.0
_KIND = re.compile(r"[A-Za-z0-9_.-]+")


def unit_keys(items: Iterable[str]) -> np.ndarray:
    """Keys of units for a ``ResultStore``: the first 16 bytes of the SHA-256 of
    each text's UTF-8 bytes (lone surrogates kept), as a ``(n,)`` ``V16`` array.

    Examples
    --------
    >>> from skdeita.utils._disk_cache import unit_keys
    >>> keys = unit_keys(["a", "b"])
    >>> keys.shape, keys.dtype
    ((2,), dtype('V16'))
    """
    digests = bytearray()
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"items[{i}] must be a str, got {type(text).__name__}")
        digests += hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:KEY_BYTES]
    return np.frombuffer(digests, dtype="V16")


def _check_keys(keys, name: str = "keys") -> np.ndarray:
    if not isinstance(keys, np.ndarray) or keys.dtype != np.dtype("V16") or keys.ndim != 1:
        raise TypeError(
            f"{name} must be a 1-d numpy array of dtype V16 (see unit_keys), got "
            f"{getattr(keys, 'dtype', type(keys).__name__)} with shape {np.shape(keys)}"
        )
    return np.ascontiguousarray(keys)


class ResultStore:
    """Fixed-width rows of numbers on disk, one per unit key, for one identity.

    Parameters
    ----------
    location : str or os.PathLike
        The ``cache=`` folder; the store lives in a sub-folder of it.
    identity : str
        Everything that changes a value (model digest, backend, dtype,
        template, parameters); records of another identity are never used.
    kind : str
        What is stored (``"scores"``, ``"embeddings"``...): the sub-folder name.
    width : int
        Values per row.
    dtype : numpy dtype
        A floating dtype; rows not found are NaN.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from skdeita.utils._disk_cache import ResultStore, unit_keys
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = ResultStore.from_param(folder.name, "model@abc", "scores", width=1, dtype="f8")
    >>> keys = unit_keys(["a", "b", "c"])
    >>> with store.writer() as writer:
    ...     writer.add(keys[:2], np.array([[1.5], [2.5]]))
    >>> found, values = store.lookup(keys)
    >>> found
    array([ True,  True, False])
    >>> values.ravel()
    array([1.5, 2.5, nan])
    >>> folder.cleanup()
    """

    def __init__(self, location, identity: str, kind: str, *, width: int, dtype):
        if not isinstance(identity, str):
            raise TypeError(f"identity must be a str, got {type(identity).__name__}")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(f"kind must be a simple folder name, got {kind!r}")
        if not isinstance(width, Integral) or isinstance(width, bool) or width < 1:
            raise ValueError(f"width must be a positive int, got {width!r}")
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        self.identity = identity
        self.kind = kind
        self.width = int(width)
        self.dtype = dtype.newbyteorder("<")
        digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).digest()
        self.directory = Path(os.fspath(location)) / f"skdeita-{kind}" / digest.hex()[:24]
        self._layout = Layout(digest, self.dtype, self.width)

    @classmethod
    def from_param(
        cls, cache, identity: str, kind: str, *, width: int, dtype
    ) -> ResultStore | None:
        """The store for an estimator's ``cache=``: None, a folder, or a
        ``joblib.Memory`` (its location; ``Memory(None)`` caches nothing)."""
        if cache is None:
            return None
        location = getattr(cache, "location", cache)
        if location is None:
            return None
        if not isinstance(location, (str, os.PathLike)):
            raise TypeError(
                f"cache must be None, a folder path or a joblib.Memory, got {type(cache).__name__}"
            )
        return cls(location, identity, kind, width=width, dtype=dtype)

    def check_writable(self) -> None:
        """Create the folder and write a probe file there, or raise ``CacheError``."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(
                f"The cache folder {self.directory} cannot be created: "
                f"{err.strerror or err}. Pass another cache= folder, or cache=None."
            ) from err
        probe = temp_path(self.directory)
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                write_all(fd, b"skdeita", 0)
            finally:
                os.close(fd)
                probe.unlink()
        except OSError as err:
            raise CacheError(
                f"The cache folder {self.directory} cannot be written: "
                f"{err.strerror or err}. Pass another cache= folder, or cache=None."
            ) from err

    def writer(self, *, compact: bool = True) -> StoreWriter:
        """A writer of checkpointed records (a context manager); with
        ``compact=False`` its close leaves the journal as it is."""
        return StoreWriter(self, compact=compact)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, values)`` for ``keys``: a ``(n,)`` bool mask and ``(n, width)``
        values, NaN where not found. Memory: the output, the query's sort order
        and a record's matches, whatever the size of the store (``_cache_lookup``)."""
        keys = _check_keys(keys)
        found = np.zeros(len(keys), dtype=bool)
        values = np.full((len(keys), self.width), np.nan, dtype=self.dtype)
        if len(keys) == 0 or not self.directory.is_dir():
            return found, values
        query = KeyQuery(keys, self._layout)
        reader = ChunkReader()
        seen: set[str] = set()
        for _ in range(100):  # a new round only when a compactor moved files under us
            fresh = [name for name in self._names() if name not in seen]
            seen.update(fresh)
            vanished = [
                not self._read_file(self.directory / name, query, reader, found, values)
                for name in fresh
            ]
            if not any(vanished):
                break
        return found, values

    def _names(self) -> list[str]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as err:
            raise CacheError(
                f"The cache folder {self.directory} cannot be read: {err.strerror or err}."
            ) from err
        return sorted(
            e.name
            for e in entries
            if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()
        )

    def _read_file(self, path: Path, query: KeyQuery, reader: ChunkReader, found, values) -> bool:
        """Take what ``path`` holds; False when it vanished before it was opened."""
        fd = None
        try:
            fd, settled = open_settled(path, exclusive=False)
            if fd is None:
                return False
            records, problem = walk(fd, os.fstat(fd).st_size, self._layout)
            checked = [query.take(reader, fd, rec, found, values) for rec in records]
            if False in checked and problem is None:
                problem = "has a record whose checksum does not match"
            if problem is not None and settled:
                intact = [
                    rec
                    for rec, ok in zip(records, checked, strict=True)
                    if ok or (ok is None and reader.body_crc(fd, rec) == rec.crc)
                ]
                report_damage(path, fd, self._layout, intact, problem, salvage=True)
        except (OSError, EOFError) as err:  # EACCES, EIO, a file that shrank
            problem = f"cannot be read ({getattr(err, 'strerror', None) or err})"
            report_damage(path, -1, self._layout, [], problem, salvage=False)
        finally:
            if fd is not None:
                os.close(fd)
        return True


class StoreWriter:
    """Appends checkpointed records to one journal of a ``ResultStore``.

    Use it as a context manager (or call ``close``): closing makes the
    journal durable and merges files (see the module docstring).
    """

    def __init__(self, store: ResultStore, *, compact: bool = True):
        self.store = store
        self.compact = compact
        self.path: Path | None = None
        self._fd: int | None = None
        self._end = 0
        self._records = 0
        self._synced = time.monotonic()
        self._failed = False
        self._closed = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Append one batch; it is in the journal when this returns.

        After a failed write this writer warns once (``CacheWriteWarning``)
        and drops every later batch: the run goes on without caching.
        """
        keys = _check_keys(keys)
        layout = self.store._layout
        values = np.asarray(values)
        if values.ndim == 1 and layout.width == 1:
            values = values[:, None]
        if values.shape != (len(keys), layout.width):
            raise ValueError(
                f"values must have shape ({len(keys)}, {layout.width}) for {len(keys)} keys, "
                f"got {values.shape}"
            )
        if not np.can_cast(values.dtype, layout.dtype, casting="same_kind"):
            raise TypeError(f"values of dtype {values.dtype} cannot be stored as {layout.dtype}")
        if self._closed:
            raise ValueError("this StoreWriter is closed")
        if self._failed or len(keys) == 0:
            return
        keys = keys.tobytes()
        values = np.ascontiguousarray(values, dtype=layout.dtype).tobytes()
        record = layout.header(len(keys) // KEY_BYTES, zlib.crc32(values, zlib.crc32(keys)))
        record += keys + values
        try:
            if self._fd is None:
                self._open()
            write_all(self._fd, record, self._end)
            self._end += len(record)
            self._records += 1
            if time.monotonic() - self._synced >= FSYNC_SECONDS:
                os.fsync(self._fd)
                self._synced = time.monotonic()
        except OSError as err:
            self._fail(err)

    def _open(self) -> None:
        directory = self.store.directory
        directory.mkdir(parents=True, exist_ok=True)
        # Locked under a temporary name, then renamed: a journal that readers
        # can list is always either locked (live) or finished (dead).
        tmp = temp_path(directory)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            path = directory / f"{JOURNAL_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
            os.rename(tmp, path)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        self._fd, self.path = fd, path
        fsync_directory(directory)

    def _fail(self, err: OSError) -> None:
        if self._fd is not None:
            try:  # drop the partial record (shrinking a file needs no space)
                os.ftruncate(self._fd, self._end)
            except OSError:
                pass
        if not self._failed:
            where = self.path or self.store.directory
            warn_user(
                f"Writing to the cache ({where}) failed: {err.strerror or err}. Rows computed "
                f"from now on are not cached (the run goes on); the {self._records} batches "
                "written before stay valid.",
                CacheWriteWarning,
            )
        self._failed = True

    def _merge_failed(self, err: Exception) -> None:
        if not self._failed:
            warn_user(
                f"Merging the cache files in {self.store.directory} failed: "
                f"{getattr(err, 'strerror', None) or err}. They stay as they are (all that "
                "was written is valid); the next writer to close merges them.",
                CacheWriteWarning,
            )
        self._failed = True

    def close(self) -> None:
        """Make the journal durable, merge files, release the journal (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._fd is not None and not self._failed:
                try:
                    os.fsync(self._fd)
                except OSError as err:
                    self._fail(err)
            if self.compact and not self._failed and self.store.directory.is_dir():
                own = (self.path, self._fd) if self._fd is not None else None
                try:
                    compact(self.store.directory, self.store._layout, own)
                except (OSError, EOFError) as err:  # EOFError: a file shrank under us
                    self._merge_failed(err)
        finally:
            if self._fd is not None:
                os.close(self._fd)  # releases the lock: the journal is now dead
                self._fd = None
