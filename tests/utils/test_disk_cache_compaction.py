"""ResultStore compaction (bit-for-bit merges, a bounded file count, one
compactor at a time, dead journals merged, streamed) and the memory a lookup
needs."""

from __future__ import annotations

import fcntl
import json
import os

import numpy as np
import pytest

from skdeita.utils import _cache_files
from skdeita.utils._cache_files import ChunkReader, walk
from skdeita.utils._disk_cache import unit_keys

from .conftest import (
    CHILD_PRELUDE,
    expected_values,
    finish,
    lookup_quietly,
    make_store,
    python,
    rec_files,
    texts,
    write_rows,
)


def stored_pairs(store) -> list[tuple[bytes, bytes]]:
    """Every (key, value bytes) held by intact records in the folder, sorted."""
    pairs = []
    layout = store._layout
    for path in store.directory.glob("*.rec"):
        fd = os.open(path, os.O_RDONLY)
        try:
            records, problem = walk(fd, os.fstat(fd).st_size, layout)
            assert problem is None
            for rec in records:
                assert ChunkReader().body_crc(fd, rec) == rec.crc
                keys = os.pread(fd, rec.n * 16, rec.body)
                values = os.pread(fd, rec.n * rec.row_bytes, rec.values_at)
                pairs += [
                    (
                        keys[i * 16 : (i + 1) * 16],
                        values[i * rec.row_bytes : (i + 1) * rec.row_bytes],
                    )
                    for i in range(rec.n)
                ]
        finally:
            os.close(fd)
    return sorted(pairs)


def test_compaction_keeps_every_value_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache_files, "MERGED_ROWS", 700)  # several merged records per file
    store = make_store(tmp_path, width=4, dtype="float32")
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3000, 4)).astype(np.float32)
    values[::97] = [np.nan, -0.0, np.inf, np.float32(1e-44)]
    keys = unit_keys(texts(0, 3000))
    for part in np.array_split(rng.permutation(3000), 12):
        with store.writer(compact=False) as writer:  # 12 dead journals
            for piece in np.array_split(part, 3):
                writer.add(keys[piece], values[piece])
    before = stored_pairs(store)
    with store.writer() as writer:  # merges them
        writer.add(unit_keys(["one more"]), np.zeros((1, 4), np.float32))
    assert rec_files(store)[0].startswith("c-") and len(rec_files(store)) == 1
    after = stored_pairs(store)
    assert sorted(before + stored_pairs_of_new_row(store)) == after
    found, got = lookup_quietly(store, keys)
    assert found.all() and got.tobytes() == values.tobytes()


def stored_pairs_of_new_row(store):
    return [(unit_keys(["one more"]).tobytes(), np.zeros(4, np.float32).tobytes())]


def test_compaction_bounds_the_file_count(store):
    # 40 runs that each write a few batches and close: files stay O(log runs).
    for run in range(40):
        write_rows(store, run * 60, run * 60 + 50 + run % 3 * 5, batch=20)
    assert len(rec_files(store)) <= 6
    found, got = lookup_quietly(store, unit_keys(texts(0, 2400)))
    want = np.arange(2400) % 60 < 50 + (np.arange(2400) // 60) % 3 * 5
    np.testing.assert_array_equal(found, want)
    np.testing.assert_array_equal(got[found], expected_values(0, 2400)[want])


def test_a_lone_one_record_journal_is_renamed_not_copied(store):
    with store.writer() as writer:
        writer.add(unit_keys(texts(0, 10)), expected_values(0, 10))
        inode = os.stat(writer.path).st_ino
    (merged,) = store.directory.glob("c-*.rec")
    assert merged.stat().st_ino == inode


def test_a_busy_compaction_lock_leaves_the_journal_for_the_next_writer(store):
    store.check_writable()
    holder = os.open(store.directory / ".compact.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process compacting
    try:
        write_rows(store, 0, 100, batch=50)
        write_rows(store, 100, 200, batch=50)
        assert [name[:2] for name in rec_files(store)] == ["j-", "j-"]
    finally:
        os.close(holder)
    write_rows(store, 200, 300, batch=50)  # merges both dead journals and its own
    assert [name[:2] for name in rec_files(store)] == ["c-"]
    found, got = lookup_quietly(store, unit_keys(texts(0, 300)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, 300))


PEAK_OF = (
    CHILD_PRELUDE
    + """
def high_water_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])

folder, task = sys.argv[1], sys.argv[2]
store = ResultStore(folder, "model-a", "scores", width=int(sys.argv[3]), dtype="f4")
n = int(sys.argv[4])
keys = unit_keys(texts(0, n))
if task == "close":
    writer = store.writer()
    writer.add(keys[:1000], np.ones((1000, store.width), np.float32))
open("/proc/self/clear_refs", "w").write("5")  # restart the high-water mark here
base = high_water_kb()
if task == "close":
    writer.close()
else:
    found, values = store.lookup(keys)
    assert found.all()
print(json.dumps({"peak_mb": (high_water_kb() - base) / 1024}))
"""
)


def peak_mb(folder, task: str, width: int, n: int) -> float:
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    return json.loads(finish(python(PEAK_OF, folder, task, width, n)))["peak_mb"]


def write_embeddings(store, n: int, batch: int) -> float:
    """``n`` rows in dead journals; returns the raw bytes (keys + values) in MB."""
    keys = unit_keys(texts(0, n))
    for lo in range(0, n, 10 * batch):
        with store.writer(compact=False) as writer:
            for start in range(lo, min(lo + 10 * batch, n), batch):
                stop = min(start + batch, n)
                writer.add(keys[start:stop], np.ones((stop - start, store.width), np.float32))
    return n * (16 + store.width * 4) / 2**20


@pytest.mark.slow
def test_compaction_streams_instead_of_loading_files(tmp_path):
    store = make_store(tmp_path, width=1024, dtype="float32")
    raw = write_embeddings(store, 16_000, batch=1000)  # 66 MB in 2 journals
    peak = peak_mb(tmp_path, "close", 1024, 16_000)
    assert rec_files(store)[0].startswith("c-") and len(rec_files(store)) == 1
    assert peak < 0.5 * raw, f"merging {raw:.0f} MB took {peak:.0f} MB"


@pytest.mark.slow
def test_a_lookup_needs_about_its_output_in_memory(tmp_path):
    store = make_store(tmp_path, width=16, dtype="float32")
    raw = write_embeddings(store, 300_000, batch=3000)  # 23 MB in 10 journals
    peak = peak_mb(tmp_path, "lookup", 16, 300_000)
    assert peak <= 1.5 * raw, f"looking up {raw:.0f} MB took {peak:.0f} MB"
