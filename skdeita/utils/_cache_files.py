"""The files of the result store (``_disk_cache.ResultStore``): the record
format, reading and checking records, merging them into new files, locks.

A file is a sequence of records. A record is a fixed header and a body::

    header (72 bytes, little-endian)
        magic "SKDTSTOR" | format version (u32) | dtype ("<f8", "<f4", ...) |
        SHA-256 of the store's identity (32 bytes) | n (u64) | width (u32) |
        CRC32 of the body (u32) | reserved (u32) | CRC32 of the 68 bytes before (u32)
    body
        n keys (16 bytes each), then n rows of ``width`` values

The header's own CRC makes ``n`` trustworthy, so a reader always knows where
the next record starts even when a body is damaged; the body's CRC decides
whether the record is used. Nothing here holds a whole file in memory: bodies
are read in chunks of about a megabyte into one reused buffer.
"""

from __future__ import annotations

import errno
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # POSIX; without it every journal counts as live (never merged, never quarantined)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

MAGIC = b"SKDTSTOR"
VERSION = 1
KEY_BYTES = 16
_FIELDS = struct.Struct("<8sI4s32sQIII")
_CRC = struct.Struct("<I")
HEADER_BYTES = _FIELDS.size + _CRC.size
# Reads during a lookup: small enough that the per-chunk temporaries stay a
# small fraction of the output, large enough that Python's per-chunk cost is noise.
READ_CHUNK = 1 << 20
COPY_CHUNK = 8 << 20
# A merged record holds at most this many rows or body bytes: a damaged record
# costs only its rows, and a lookup's per-record match list stays small.
MERGED_ROWS = 1 << 16
MERGED_BYTES = 64 << 20
SUFFIX = ".rec"
JOURNAL_PREFIX = "j-"
MERGED_PREFIX = "c-"
QUARANTINE_SUFFIX = ".damaged"
COMPACT_LOCK = ".compact.lock"
# A temporary file this old belongs to a process that died while writing it.
STALE_TEMP_SECONDS = 3600.0


@dataclass(frozen=True)
class Layout:
    """What every record of one store carries: its identity digest and row shape."""

    digest: bytes
    dtype: np.dtype
    width: int

    @property
    def row_bytes(self) -> int:
        return self.width * self.dtype.itemsize

    @property
    def dtype_code(self) -> bytes:
        return self.dtype.str.encode("ascii").ljust(4, b"\0")

    def header(self, n: int, body_crc: int) -> bytes:
        fields = _FIELDS.pack(
            MAGIC, VERSION, self.dtype_code, self.digest, n, self.width, body_crc, 0
        )
        return fields + _CRC.pack(zlib.crc32(fields))


@dataclass(frozen=True)
class Record:
    """One record whose header checked out; ``body`` is its body's file offset."""

    body: int
    n: int
    crc: int
    row_bytes: int

    @property
    def values_at(self) -> int:
        return self.body + self.n * KEY_BYTES

    @property
    def end(self) -> int:
        return self.values_at + self.n * self.row_bytes


def walk(fd: int, size: int, layout: Layout) -> tuple[list[Record], str | None]:
    """The records of a file whose headers check out, in file order.

    The walk stops at the first header it cannot trust (or a record cut off
    by the end of the file); the second item says why, or is None when the
    file ends cleanly after its last record. Bodies are not checked here.
    """
    records: list[Record] = []
    pos = 0
    while pos < size:
        raw = os.pread(fd, HEADER_BYTES, pos)
        if len(raw) < HEADER_BYTES:
            return records, f"ends in a cut-off record header at byte {pos}"
        magic, version, dtype_code, digest, n, width, body_crc, _ = _FIELDS.unpack_from(raw)
        if magic != MAGIC:
            if pos == 0:
                return records, "is not a skdeita result file (unknown magic bytes)"
            return records, f"holds unreadable bytes at byte {pos}"
        if version != VERSION:
            return records, f"has format version {version} (this skdeita reads {VERSION})"
        if _CRC.unpack_from(raw, _FIELDS.size)[0] != zlib.crc32(raw[: _FIELDS.size]):
            return records, f"has a corrupted record header at byte {pos}"
        if digest != layout.digest:
            return records, "was written for another identity (model or parameters)"
        if dtype_code != layout.dtype_code or width != layout.width:
            code = dtype_code.rstrip(b"\0").decode("ascii", "replace")
            return records, (
                f"holds rows of {width} x {code} (this store: {layout.width} x {layout.dtype.str})"
            )
        record = Record(pos + HEADER_BYTES, n, body_crc, layout.row_bytes)
        if record.end > size:
            return records, f"ends in a cut-off record at byte {pos}"
        records.append(record)
        pos = record.end
    return records, None


class ChunkReader:
    """Reads rows of files in chunks into one reused buffer."""

    def __init__(self, chunk_bytes: int = READ_CHUNK):
        self._buffer = np.empty(chunk_bytes, dtype=np.uint8)

    @property
    def chunk_bytes(self) -> int:
        return len(self._buffer)

    @staticmethod
    def _fill(fd: int, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            if hasattr(os, "preadv"):
                got = os.preadv(fd, [view[done:]], offset + done)
            else:  # pragma: no cover - platforms without preadv
                data = os.pread(fd, len(view) - done, offset + done)
                got = len(data)
                view[done : done + got] = data
            if got == 0:
                raise EOFError(f"the file ends before byte {offset + len(view)}")
            done += got

    def chunks(
        self, fd: int, offset: int, n_rows: int, row_bytes: int
    ) -> Iterator[tuple[int, memoryview]]:
        """``(first row, bytes)`` for consecutive runs of rows starting at ``offset``.

        The bytes live in the shared buffer: they are valid until the next step.
        """
        if row_bytes > len(self._buffer):
            self._buffer = np.empty(row_bytes, dtype=np.uint8)
        per_chunk = len(self._buffer) // row_bytes
        view = memoryview(self._buffer)
        for start in range(0, n_rows, per_chunk):
            stop = min(start + per_chunk, n_rows)
            part = view[: (stop - start) * row_bytes]
            self._fill(fd, part, offset + start * row_bytes)
            yield start, part

    def body_crc(self, fd: int, record: Record) -> int:
        crc = 0
        for _, part in self.chunks(fd, record.body, record.n, KEY_BYTES + record.row_bytes):
            crc = zlib.crc32(part, crc)
        return crc

    def copy(
        self, fd: int, offset: int, nbytes: int, out: int, at: int, crcs: tuple[int, int]
    ) -> tuple[int, int]:
        """Copy ``nbytes`` from ``fd`` to ``out`` at ``at``, updating the
        running CRCs ``(source record's, output record's)``."""
        src, dst = crcs
        for _, part in self.chunks(fd, offset, nbytes, 1):
            src, dst = zlib.crc32(part, src), zlib.crc32(part, dst)
            write_all(out, part, at)
            at += len(part)
        return src, dst


def write_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def try_lock(fd: int, *, exclusive: bool) -> bool:
    """Take an ``flock`` without waiting; False when another holder has it."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power loss."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def new_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}{SUFFIX}"


def temp_path(directory: Path) -> Path:
    # A leading dot: readers and compactors skip it until it is renamed.
    return directory / f".{uuid.uuid4().hex}.tmp"


def remove_stale_temps(directory: Path) -> None:
    """Delete temporary files left by writers that died (only old ones: a
    young one may belong to a live writer that has not renamed it yet)."""
    now = time.time()
    for path in directory.glob(".*.tmp"):
        try:
            if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                path.unlink()
        except OSError:
            pass


def write_merged(directory: Path, layout: Layout, sources: list[tuple[int, Record]]) -> Path:
    """Write the records ``(fd, record)`` into one new file; return its path.

    Consecutive records are merged into records of at most ``MERGED_ROWS``
    rows (keys first, then values, as always); every byte copied is checked
    again against its source record's CRC. The file appears under its final
    name only once complete and fsynced (temporary name, fsync, rename).
    """
    tmp = temp_path(directory)
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    reader = ChunkReader(COPY_CHUNK)
    try:
        at = 0
        for group in _groups(sources, layout.row_bytes):
            header_at, at = at, at + HEADER_BYTES
            source_crcs = [0] * len(group)
            body_crc = 0
            for values in (False, True):  # all keys of the group, then all values
                for i, (fd, rec) in enumerate(group):
                    offset, nbytes = (
                        (rec.values_at, rec.n * rec.row_bytes)
                        if values
                        else (rec.body, rec.n * KEY_BYTES)
                    )
                    source_crcs[i], body_crc = reader.copy(
                        fd, offset, nbytes, out, at, (source_crcs[i], body_crc)
                    )
                    at += nbytes
            if any(crc != rec.crc for crc, (_, rec) in zip(source_crcs, group, strict=True)):
                raise OSError(errno.EIO, "a record changed while it was being merged")
            write_all(out, layout.header(sum(rec.n for _, rec in group), body_crc), header_at)
        os.fsync(out)
        os.close(out)
        out = -1
        final = directory / new_name(MERGED_PREFIX)
        os.rename(tmp, final)
        fsync_directory(directory)
        return final
    except BaseException:
        if out >= 0:
            os.close(out)
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def _groups(sources: list[tuple[int, Record]], row_bytes: int) -> list[list[tuple[int, Record]]]:
    groups: list[list[tuple[int, Record]]] = []
    rows = 0
    for fd, rec in sources:
        if rec.n == 0:
            continue
        total = rows + rec.n
        if groups and total <= MERGED_ROWS and total * (KEY_BYTES + row_bytes) <= MERGED_BYTES:
            groups[-1].append((fd, rec))
            rows = total
        else:  # a record already over the limits stays whole: records are never split
            groups.append([(fd, rec)])
            rows = rec.n
    return groups


def open_settled(path: Path, *, exclusive: bool) -> tuple[int | None, bool]:
    """Open ``path`` and try its lock: ``(fd, settled)``; fd is None when the file
    vanished (another process merged it away).

    A writer holds an exclusive lock on its journal while it appends, and a
    compactor on every file it merges; the lock dies with the process, so a
    file whose lock we get (shared for reading, exclusive for merging) will
    not change any more. Its incomplete or corrupt parts are damage, not work
    in progress.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None, False
    try:
        return fd, try_lock(fd, exclusive=exclusive)
    except OSError:
        os.close(fd)
        return None, False


_REPORTED: set[str] = set()


def report_damage(
    path: Path, fd: int, layout: Layout, intact: list[Record], problem: str, *, salvage: bool
) -> None:
    """Move a damaged settled file aside (``*.damaged``) and warn once.

    With ``salvage``, its intact records (their CRCs checked) are first copied
    to a new file, so only the damaged rows are computed again.
    """
    from ..exceptions import CacheDamagedWarning
    from ._warnings import warn_user

    rows = sum(rec.n for rec in intact)
    target = path.with_name(path.name + QUARANTINE_SUFFIX)
    try:
        os.rename(path, target)
    except FileNotFoundError:
        return  # another process moved it aside first, and warned
    except OSError as err:
        fate = f"it could not be moved aside ({err.strerror}), and is skipped"
    else:
        fate = f"it was moved aside to {target.name}"
        if salvage and intact:
            try:
                write_merged(path.parent, layout, [(fd, rec) for rec in intact])
            except (OSError, EOFError) as err:
                fate += f"; copying its {rows} intact rows failed ({err})"
                rows = 0
    if str(path) in _REPORTED:
        return
    _REPORTED.add(str(path))
    kept = (
        f"Its {rows} intact rows are still used; the rest will be computed again."
        if rows
        else "Its rows will be computed again."
    )
    warn_user(
        f"The cache file {path} {problem}, so it is not trusted: {fate}. {kept}",
        CacheDamagedWarning,
    )


def compact(directory: Path, layout: Layout, own: tuple[Path, int] | None) -> None:
    """Merge this writer's journal (``own``: path and its locked fd) and every
    settled journal, with the merged files no larger than them, into one file.

    One compactor at a time (``.compact.lock``; a busy lock means skip: the
    next writer to close merges what is left). Merged inputs are deleted only
    once the new file is complete and renamed into place; damaged inputs are
    moved aside instead. The merged-file choice keeps the file count
    logarithmic in the number of writers: a file is merged again only when the
    new data is at least as large as it.
    """
    lock_fd = os.open(directory / COMPACT_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    held: list[int] = []
    try:
        if not try_lock(lock_fd, exclusive=True):
            return
        remove_stale_temps(directory)
        journals, merged = [], []
        if own is not None:
            journals.append((own[0], own[1], os.fstat(own[1]).st_size))
        for path in sorted(directory.glob("*" + SUFFIX)):
            if own is not None and path == own[0]:
                continue
            if not path.name.startswith((JOURNAL_PREFIX, MERGED_PREFIX)):
                continue  # not named by a writer: readers check it and report it
            fd, settled = open_settled(path, exclusive=True)
            if fd is None:
                continue
            held.append(fd)
            if settled:  # live journals and files a reader holds wait for next time
                kind = journals if path.name.startswith(JOURNAL_PREFIX) else merged
                kind.append((path, fd, os.fstat(fd).st_size))
        if not journals:
            return
        budget = sum(size for _, _, size in journals)
        chosen = list(journals)
        for item in sorted(merged, key=lambda item: item[2]):
            if item[2] > budget:
                break
            chosen.append(item)
            budget += item[2]
        _merge(directory, layout, chosen)
    finally:
        for fd in held:
            os.close(fd)
        os.close(lock_fd)


def _merge(directory: Path, layout: Layout, chosen: list[tuple[Path, int, int]]) -> None:
    reader = ChunkReader(COPY_CHUNK)
    inputs = []
    for path, fd, size in chosen:
        records, problem = walk(fd, size, layout)
        intact = [rec for rec in records if reader.body_crc(fd, rec) == rec.crc]
        if problem is None and len(intact) < len(records):
            problem = "has a record whose checksum does not match"
        inputs.append((path, fd, intact, problem))
    if len(inputs) == 1 and inputs[0][3] is None and len(inputs[0][2]) <= 1:
        path = inputs[0][0]  # one journal of one record: renaming it is enough
        if inputs[0][2]:
            os.rename(path, directory / new_name(MERGED_PREFIX))
            fsync_directory(directory)
        else:
            path.unlink(missing_ok=True)
        return
    sources = [(fd, rec) for _, fd, intact, _ in inputs for rec in intact]
    if sources:
        write_merged(directory, layout, sources)
    for path, fd, intact, problem in inputs:
        if problem is None:
            path.unlink(missing_ok=True)
        else:
            report_damage(path, fd, layout, intact, problem, salvage=False)
    fsync_directory(directory)
