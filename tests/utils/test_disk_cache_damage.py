"""ResultStore after crashes and damage: a writer SIGKILLed mid-run, cut-off,
corrupted and foreign files, and a live writer's unfinished tail (real files,
real processes, real signals)."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import warnings
import zlib

import numpy as np
import pytest

from skdeita.exceptions import CacheDamagedWarning
from skdeita.utils._cache_files import HEADER_BYTES, KEY_BYTES
from skdeita.utils._disk_cache import unit_keys

from .conftest import (
    CHILD_PRELUDE,
    expected_values,
    lookup_quietly,
    make_store,
    python,
    rec_files,
    texts,
    wait_for,
    write_rows,
)

BATCH = 2000
RECORD_BYTES = HEADER_BYTES + BATCH * (KEY_BYTES + 3 * 8)  # width 3 float64

WRITE_FOREVER = (
    CHILD_PRELUDE
    + """
store = ResultStore(sys.argv[1], "model-a", "scores", width=3, dtype="f8")
writer = store.writer()
for start in range(0, 10**9, 2000):
    writer.add(unit_keys(texts(start, start + 2000)), expected_values(start, start + 2000))
"""
)


def journal_sizes(store) -> list[int]:
    return [p.stat().st_size for p in store.directory.glob("j-*.rec")]


def damage_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, CacheDamagedWarning)]


def test_records_written_before_a_sigkill_are_all_readable(store):
    proc = python(WRITE_FOREVER, store.directory.parent.parent)
    # Watch the folder, not the clock: kill once 5 records are in the journal.
    wait_for(lambda: sum(journal_sizes(store)) >= 5 * RECORD_BYTES, what="5 records")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    complete = sum(journal_sizes(store)) // RECORD_BYTES  # whole records in the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found, got = store.lookup(unit_keys(texts(0, (complete + 3) * BATCH)))
    # Exactly the complete records count: the batch being written (if any) is absent.
    assert found.sum() == complete * BATCH >= 5 * BATCH
    assert found[: complete * BATCH].all()
    np.testing.assert_array_equal(got[found], expected_values(0, complete * BATCH))
    assert len(damage_warnings(caught)) <= 1  # only if the kill cut a record


def test_a_dead_journals_complete_records_are_used_and_its_cut_tail_is_not(store):
    write_rows(store, 0, 5 * BATCH, batch=BATCH, compact=False)
    (journal,) = store.directory.glob("j-*.rec")
    os.truncate(journal, 3 * RECORD_BYTES + RECORD_BYTES // 2)  # a write cut short
    with pytest.warns(CacheDamagedWarning, match=f"{journal}.*cut-off record") as caught:
        found, got = store.lookup(unit_keys(texts(0, 5 * BATCH)))
    assert len(damage_warnings(caught)) == 1
    np.testing.assert_array_equal(found, np.arange(5 * BATCH) < 3 * BATCH)
    np.testing.assert_array_equal(got[found], expected_values(0, 3 * BATCH))
    assert np.isnan(got[~found]).all()
    # Moved aside, its intact rows kept in a new file: no second warning, same rows.
    assert journal.with_name(journal.name + ".damaged").exists()
    again, _ = lookup_quietly(store, unit_keys(texts(0, 5 * BATCH)))
    np.testing.assert_array_equal(again, found)


def test_a_file_overwritten_with_garbage_is_skipped_with_one_warning(store):
    write_rows(store, 0, 3 * BATCH, batch=BATCH)
    (merged,) = store.directory.glob("c-*.rec")
    size = merged.stat().st_size
    merged.write_bytes(np.random.default_rng(0).bytes(size))
    with pytest.warns(CacheDamagedWarning, match=f"{merged}.*not a skdeita result file") as got:
        found, _ = store.lookup(unit_keys(texts(0, 3 * BATCH)))
    assert len(damage_warnings(got)) == 1
    assert not found.any()
    assert rec_files(store) == []  # moved aside, nothing intact to keep
    assert not lookup_quietly(store, unit_keys(texts(0, 3 * BATCH)))[0].any()


def test_a_flipped_byte_costs_only_its_records_rows(store):
    write_rows(store, 0, 4 * BATCH, batch=BATCH, compact=False)
    (journal,) = store.directory.glob("j-*.rec")
    data = bytearray(journal.read_bytes())
    data[2 * RECORD_BYTES + RECORD_BYTES - 5] ^= 0x01  # a value bit in the third record
    journal.write_bytes(bytes(data))
    with pytest.warns(CacheDamagedWarning, match="checksum does not match"):
        found, got = store.lookup(unit_keys(texts(0, 4 * BATCH)))
    third = (np.arange(4 * BATCH) >= 2 * BATCH) & (np.arange(4 * BATCH) < 3 * BATCH)
    np.testing.assert_array_equal(found, ~third)
    np.testing.assert_array_equal(got[found], expected_values(0, 4 * BATCH)[~third])


def test_a_file_of_another_identity_is_skipped_with_one_warning(tmp_path):
    other = make_store(tmp_path, identity="model-b")
    write_rows(other, 0, 100, batch=100)
    store = make_store(tmp_path, identity="model-a")
    store.directory.mkdir(parents=True)
    (src,) = other.directory.glob("*.rec")
    shutil.copy(src, store.directory / "c-copied.rec")
    with pytest.warns(CacheDamagedWarning, match="c-copied.rec was written for another identity"):
        found, _ = store.lookup(unit_keys(texts(0, 100)))
    assert not found.any()
    assert (store.directory / "c-copied.rec.damaged").exists()


def test_a_file_of_another_format_version_is_skipped_with_one_warning(store):
    write_rows(store, 0, 100, batch=100)
    (merged,) = store.directory.glob("c-*.rec")
    data = bytearray(merged.read_bytes())
    data[8:12] = struct.pack("<I", 2)  # a future format, its header CRC made right
    data[68:72] = struct.pack("<I", zlib.crc32(bytes(data[:68])))
    merged.write_bytes(bytes(data))
    with pytest.warns(CacheDamagedWarning, match="format version 2") as caught:
        found, _ = store.lookup(unit_keys(texts(0, 100)))
    assert len(damage_warnings(caught)) == 1 and not found.any()


def test_files_not_named_like_records_are_ignored(store):
    write_rows(store, 0, 10, batch=10)
    (store.directory / "notes.txt").write_text("hello")
    (store.directory / "old.npz").write_bytes(b"PK\x03\x04")
    (store.directory / "x.rec.damaged").write_bytes(b"junk")
    found, _ = lookup_quietly(store, unit_keys(texts(0, 10)))
    assert found.all()


def test_a_file_that_vanishes_after_listing_is_skipped_silently(store, monkeypatch):
    write_rows(store, 0, 50, batch=50)  # c-A.rec
    stale = rec_files(store)
    write_rows(store, 50, 100, batch=50)  # merged with c-A into c-B: c-A is gone
    assert not set(stale) & set(rec_files(store))
    listings = iter([stale])  # the first listing was taken before the merge
    real_names = type(store)._names
    monkeypatch.setattr(store, "_names", lambda: next(listings, None) or real_names(store))
    found, got = lookup_quietly(store, unit_keys(texts(0, 100)))
    assert found.all()  # listed again, the merged file read
    np.testing.assert_array_equal(got, expected_values(0, 100))


LIVE_WRITER_WITH_TAIL = (
    CHILD_PRELUDE
    + """
store = ResultStore(sys.argv[1], "model-a", "scores", width=3, dtype="f8")
writer = store.writer()
writer.add(unit_keys(texts(0, 100)), expected_values(0, 100))
writer.add(unit_keys(texts(100, 200)), expected_values(100, 200))
# The start of a third record, as if the process were inside a write.
with open(writer.path, "ab") as fh:
    fh.write(b"SKDTSTOR" + b"\\0" * 30)
print("ready", flush=True)
time.sleep(120)
"""
)


def test_a_live_writers_unfinished_tail_is_not_damage_until_it_dies(store):
    proc = python(LIVE_WRITER_WITH_TAIL, store.directory.parent.parent)
    try:
        assert proc.stdout.readline().strip() == "ready"
        (journal,) = store.directory.glob("j-*.rec")
        found, _ = lookup_quietly(store, unit_keys(texts(0, 200)))  # no warning
        assert found.all() and journal.exists()
        with store.writer() as writer:  # a closing writer does not merge a live journal
            writer.add(unit_keys(texts(500, 510)), expected_values(500, 510))
        assert journal.exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with pytest.warns(CacheDamagedWarning, match=f"{journal.name} ends in a cut-off record"):
        found, got = store.lookup(unit_keys(texts(0, 200)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, 200))
    assert lookup_quietly(store, unit_keys(texts(0, 200)))[0].all()  # kept, reported once


def test_a_child_killed_while_writing_is_followed_by_a_clean_merge(store):
    proc = python(WRITE_FOREVER, store.directory.parent.parent)
    wait_for(lambda: sum(journal_sizes(store)) >= 3 * RECORD_BYTES, what="3 records")
    proc.kill()
    proc.wait(timeout=30)
    complete = sum(journal_sizes(store)) // RECORD_BYTES
    with warnings.catch_warnings(record=True):  # a cut record, if any, is reported
        warnings.simplefilter("always")
        with store.writer() as writer:  # merges the dead journal
            writer.add(unit_keys(["new"]), np.zeros((1, 3)))
    assert len(rec_files(store)) == 1 and not list(store.directory.glob("j-*.rec"))
    found, got = lookup_quietly(store, unit_keys(texts(0, complete * BATCH)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, complete * BATCH))
