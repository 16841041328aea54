"""The result store's files: record headers, walking a file, merging records,
stale temporaries."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from skdeita.utils import _cache_files
from skdeita.utils._cache_files import (
    HEADER_BYTES,
    ChunkReader,
    Layout,
    remove_stale_temps,
    walk,
    write_merged,
)

LAYOUT = Layout(bytes(range(32)), np.dtype("<f4"), 2)


def record(n: int, seed: int = 0) -> bytes:
    import zlib

    rng = np.random.default_rng(seed)
    keys = rng.bytes(16 * n)
    values = rng.standard_normal((n, 2)).astype("<f4").tobytes()
    return LAYOUT.header(n, zlib.crc32(values, zlib.crc32(keys))) + keys + values


def walk_bytes(tmp_path, data: bytes, layout: Layout = LAYOUT):
    path = tmp_path / "f.rec"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return walk(fd, len(data), layout)
    finally:
        os.close(fd)


def test_a_header_is_72_bytes_and_describes_its_record():
    assert HEADER_BYTES == 72
    data = record(5)
    assert data[:8] == b"SKDTSTOR" and data[12:15] == b"<f4"
    assert len(data) == 72 + 5 * (16 + 8)


def test_walk_lists_every_record_of_a_clean_file(tmp_path):
    records, problem = walk_bytes(tmp_path, record(3) + record(1, seed=1) + record(4, seed=2))
    assert problem is None and [r.n for r in records] == [3, 1, 4]
    assert records[1].body == len(record(3)) + 72


@pytest.mark.parametrize("cut", [1, 40, 71, 72, 100, len(record(3)) - 1])
def test_walk_stops_at_a_cut_off_record(tmp_path, cut):
    records, problem = walk_bytes(tmp_path, record(2) + record(3, seed=1)[:cut])
    assert [r.n for r in records] == [2]
    assert "cut-off record" in problem and f"byte {len(record(2))}" in problem


def test_walk_stops_at_a_corrupted_header(tmp_path):
    data = bytearray(record(2) + record(3, seed=1))
    data[len(record(2)) + 50] ^= 0xFF  # inside n, which the header CRC protects
    records, problem = walk_bytes(tmp_path, bytes(data))
    assert [r.n for r in records] == [2] and "corrupted record header" in problem


@pytest.mark.parametrize(
    "layout, words",
    [
        (Layout(b"\1" * 32, np.dtype("<f4"), 2), "another identity"),
        (Layout(bytes(range(32)), np.dtype("<f8"), 2), "rows of 2 x <f4 (this store: 2 x <f8)"),
        (Layout(bytes(range(32)), np.dtype("<f4"), 3), "rows of 2 x <f4 (this store: 3 x <f4)"),
    ],
)
def test_walk_refuses_records_of_another_store(tmp_path, layout, words):
    records, problem = walk_bytes(tmp_path, record(2), layout)
    assert records == [] and words in problem


def test_write_merged_never_splits_a_record_and_respects_the_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache_files, "MERGED_ROWS", 10)
    data = (
        record(4) + record(4, seed=1) + record(4, seed=2) + record(25, seed=3) + record(1, seed=4)
    )
    src = tmp_path / "src.rec"
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    try:
        records, _ = walk(fd, len(data), LAYOUT)
        merged = write_merged(tmp_path, LAYOUT, [(fd, r) for r in records])
    finally:
        os.close(fd)
    assert merged.name.startswith("c-") and merged.suffix == ".rec"
    out = os.open(merged, os.O_RDONLY)
    try:
        got, problem = walk(out, merged.stat().st_size, LAYOUT)
        assert problem is None and [r.n for r in got] == [8, 4, 25, 1]
        assert all(ChunkReader().body_crc(out, r) == r.crc for r in got)
    finally:
        os.close(out)


def test_remove_stale_temps_keeps_young_ones(tmp_path):
    old, young = tmp_path / ".old.tmp", tmp_path / ".young.tmp"
    old.write_bytes(b"x")
    young.write_bytes(b"x")
    past = time.time() - 2 * _cache_files.STALE_TEMP_SECONDS
    os.utime(old, (past, past))
    remove_stale_temps(tmp_path)
    assert not old.exists() and young.exists()
