"""The search behind ``ResultStore.lookup``: the query's keys sorted once, the
stored records streamed past them, values taken only from records whose CRC
matches.

Memory is the output, the query's sort order (12 bytes a key) and the rows of
one record that match (16 bytes each; merged records hold at most 2**16 rows),
never the store's own keys: a lookup costs the same memory against a store of
a thousand rows or of a million.
"""

from __future__ import annotations

import zlib

import numpy as np

from ._cache_files import KEY_BYTES, ChunkReader, Layout, Record


class KeyQuery:
    """The keys of one lookup, sorted by their first 8 bytes: matching a chunk
    of stored keys is two binary searches and a check of the last 8 bytes."""

    def __init__(self, keys: np.ndarray, layout: Layout):
        halves = keys.view("<u8").reshape(-1, 2)
        order = np.argsort(halves[:, 0])
        # int32 positions when they fit: 4 bytes a key less at the peak
        self.order = order.astype(np.int32) if len(order) < 2**31 else order
        del order
        self.first = halves[:, 0][self.order]
        self.second = halves[:, 1]
        self.layout = layout

    def match(self, part) -> tuple[np.ndarray, np.ndarray, bool]:
        """Rows of a chunk of stored keys that are queried, their query
        positions, and whether two keys of the chunk share their first 8 bytes."""
        halves = np.frombuffer(part, dtype="<u8").reshape(-1, 2)
        # Searched in sorted order: each search starts where the last one
        # ended, which is faster than random probes when the chunk is large.
        sorter = np.argsort(halves[:, 0])
        needles = halves[sorter, 0]
        repeats = bool(np.any(needles[1:] == needles[:-1]))
        lo = np.empty(len(sorter), dtype=np.intp)
        lo[sorter] = np.searchsorted(self.first, needles, "left")
        del sorter, needles
        last = len(self.first) - 1
        rows = np.flatnonzero(self.first[np.minimum(lo, last)] == halves[:, 0])  # file order
        if rows.size == 0:
            return rows, rows, repeats
        slots, needles = lo[rows], halves[rows, 0]
        # More query keys with the same first 8 bytes (a key asked twice, or a
        # shared prefix): rare, so counted only where the next one is equal.
        more = self.first[np.minimum(slots + 1, last)] == needles
        more &= slots < last
        if more.any():
            count = np.ones(rows.size, dtype=np.int64)
            count[more] = np.searchsorted(self.first, needles[more], "right") - slots[more]
            ends = np.cumsum(count)
            slots = np.repeat(slots - (ends - count), count) + np.arange(ends[-1])
            rows = np.repeat(rows, count)
        positions = self.order[slots].astype(np.int64)
        same = self.second[positions] == halves[rows, 1]
        return rows[same], positions[same], repeats

    def take(self, reader: ChunkReader, fd: int, rec: Record, found, values) -> bool | None:
        """Copy the queried rows of one record into ``values`` if its CRC matches.

        True: used (CRC checked); False: CRC mismatch, nothing taken; None: no
        queried key in it, values not read (nor checked).
        """
        crc = 0
        rows_parts, pos_parts = [], []
        # Whether one key may be stored twice in this record (then a chunk's
        # assignment below may hit one query position twice).
        repeats = rec.n * KEY_BYTES > reader.chunk_bytes
        try:
            for start, part in reader.chunks(fd, rec.body, rec.n, KEY_BYTES):
                crc = zlib.crc32(part, crc)
                rows, positions, repeated = self.match(part)
                repeats |= repeated
                if rows.size:
                    rows_parts.append(rows + start)
                    pos_parts.append(positions)
        except EOFError:
            return False
        if not rows_parts:
            return None
        rows, positions = np.concatenate(rows_parts), np.concatenate(pos_parts)
        del rows_parts, pos_parts
        assigned, staged = [], []
        dtype, width = self.layout.dtype, self.layout.width
        try:
            for start, part in reader.chunks(fd, rec.values_at, rec.n, rec.row_bytes):
                crc = zlib.crc32(part, crc)
                stop = start + len(part) // rec.row_bytes
                a, b = np.searchsorted(rows, (start, stop))
                if a == b:
                    continue
                chunk = np.frombuffer(part, dtype=dtype).reshape(-1, width)
                where, vals = positions[a:b], chunk[rows[a:b] - start]
                new = ~found[where]
                if not new.all():  # found in an earlier record or chunk
                    staged.append((where[~new], vals[~new]))
                    where, vals = where[new], vals[new]
                values[where] = vals
                found[where] = True
                assigned.append(where)
                if repeats:  # the assignment kept one row of a repeated key;
                    # reading back finds the others, resolved below
                    bits = f"u{dtype.itemsize}"
                    lost = (values[where].view(bits) != vals.view(bits)).any(axis=1)
                    if lost.any():
                        staged.append((where[lost], vals[lost]))
        except EOFError:  # the file shrank under us: not a complete record
            _undo(assigned, found, values)
            return False
        except BaseException:
            _undo(assigned, found, values)
            raise
        if crc != rec.crc:
            _undo(assigned, found, values)
            return False
        for where, vals in staged:  # keys held twice: the smaller bytes win, in any order
            for slot, row in zip(where.tolist(), vals, strict=True):
                if row.tobytes() < values[slot].tobytes():
                    values[slot] = row
        return True


def _undo(assigned, found, values) -> None:
    for where in assigned:
        found[where] = False
        values[where] = np.nan
