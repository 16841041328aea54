"""KeyQuery, the search behind ResultStore.lookup, against a plain search."""

from __future__ import annotations

import os

import numpy as np

from skdeita.utils._cache_files import ChunkReader, Layout, Record, walk
from skdeita.utils._cache_lookup import KeyQuery
from skdeita.utils._disk_cache import unit_keys

from .conftest import expected_values, make_store, texts, write_rows

LAYOUT = Layout(b"\0" * 32, np.dtype("<f8"), 3)


def plain_match(query: np.ndarray, stored: np.ndarray) -> set[tuple[int, int]]:
    """Every (stored row, query position) with equal keys, by comparing all pairs."""
    return {
        (row, pos)
        for row, key in enumerate(stored.tobytes()[i : i + 16] for i in range(0, stored.nbytes, 16))
        for pos in range(len(query))
        if query[pos].tobytes() == key
    }


def keys_with_shared_prefixes(rng, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[n // 2 :, :8] = raw[: n - n // 2, :8]  # pairs that differ in the last 8 bytes only
    raw[-n // 8 :, :8] = raw[0, :8]  # and a run sharing one prefix
    return raw.view("V16").ravel()


def test_match_equals_a_plain_search():
    rng = np.random.default_rng(0)
    universe = keys_with_shared_prefixes(rng, 160)
    query = universe[rng.integers(0, 160, size=120)]  # repeated keys too
    stored = universe[rng.integers(0, 160, size=90)]  # repeated stored keys too
    rows, positions, repeats = KeyQuery(query, LAYOUT).match(memoryview(stored.tobytes()))
    assert repeats  # stored keys share prefixes
    assert np.all(np.diff(rows) >= 0)  # file order: take() slices by row
    assert set(zip(rows.tolist(), positions.tolist(), strict=True)) == plain_match(query, stored)
    assert len(rows) == len(plain_match(query, stored))


def test_match_of_keys_not_queried_is_empty():
    query = unit_keys(["a", "b"])
    stored = memoryview(unit_keys(["c", "d"]).tobytes())
    rows, positions, repeats = KeyQuery(query, LAYOUT).match(stored)
    assert rows.size == positions.size == 0 and not repeats


def test_take_leaves_nothing_behind_when_a_records_crc_fails(store):
    write_rows(store, 0, 100, batch=100, compact=False)
    (journal,) = store.directory.glob("j-*.rec")
    fd = os.open(journal, os.O_RDONLY)
    try:
        (rec,) = walk(fd, os.fstat(fd).st_size, store._layout)[0]
        wrong = Record(rec.body, rec.n, rec.crc ^ 1, rec.row_bytes)  # as if a byte flipped
        query = KeyQuery(unit_keys(texts(0, 100)), store._layout)
        found, values = np.zeros(100, bool), np.full((100, 3), np.nan)
        assert query.take(ChunkReader(), fd, wrong, found, values) is False
        assert not found.any() and np.isnan(values).all()
        assert query.take(ChunkReader(), fd, rec, found, values) is True
        assert found.all()
        np.testing.assert_array_equal(values, expected_values(0, 100))
    finally:
        os.close(fd)


def test_take_skips_reading_values_of_a_record_with_no_queried_key(tmp_path):
    store = make_store(tmp_path)
    write_rows(store, 0, 10, batch=10, compact=False)
    (journal,) = store.directory.glob("j-*.rec")
    fd = os.open(journal, os.O_RDONLY)
    try:
        (rec,) = walk(fd, os.fstat(fd).st_size, store._layout)[0]
        query = KeyQuery(unit_keys(["not stored"]), store._layout)
        found, values = np.zeros(1, bool), np.full((1, 3), np.nan)
        assert query.take(ChunkReader(), fd, rec, found, values) is None
    finally:
        os.close(fd)
