"""ResultStore across processes: writers and a reader on one folder at once,
and writes that fail mid-run for real (a file-size limit, a full tmpfs, a
read-only mount)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skdeita.utils._cache_files import HEADER_BYTES, KEY_BYTES
from skdeita.utils._disk_cache import unit_keys

from .conftest import (
    CHILD_PRELUDE,
    ROOT,
    expected_values,
    finish,
    lookup_quietly,
    make_store,
    python,
    rec_files,
    texts,
)

WRITER = (
    CHILD_PRELUDE
    + """
folder, start, stop, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
warnings.simplefilter("error")
store = ResultStore(folder, "model-a", "scores", width=3, dtype="f8")
while not os.path.exists(go):
    time.sleep(0.001)
with store.writer() as writer:
    for lo in range(start, stop, 250):
        writer.add(unit_keys(texts(lo, lo + 250)), expected_values(lo, lo + 250))
        time.sleep(0.01)  # a model computing the next batch: readers get to look in between
"""
)

READER = (
    CHILD_PRELUDE
    + """
folder, go, stop_file = sys.argv[1], sys.argv[2], sys.argv[3]
warnings.simplefilter("error")  # a damage warning fails the reader
store = ResultStore(folder, "model-a", "scores", width=3, dtype="f8")
keys, want = unit_keys(texts(0, 9000)), expected_values(0, 9000)
while not os.path.exists(go):
    time.sleep(0.001)
lookups, most, partial = 0, 0, 0
while True:
    last = os.path.exists(stop_file)
    found, got = store.lookup(keys)
    assert np.array_equal(got[found], want[found]), "a reader saw a wrong value"
    assert np.isnan(got[~found]).all()
    lookups, most = lookups + 1, max(most, int(found.sum()))
    partial += int(0 < found.sum() < len(keys))
    if last:
        break
print(json.dumps({"lookups": lookups, "most": most, "partial": partial}))
"""
)


def test_two_writers_and_a_reader_on_one_folder_at_once(tmp_path):
    folder, go, stop = tmp_path / "cache", tmp_path / "go", tmp_path / "stop"
    reader = python(READER, folder, go, stop)
    writers = [
        python(WRITER, folder, 0, 6000, go),
        python(WRITER, folder, 3000, 9000, go),  # half the rows computed by both
    ]
    go.touch()
    for writer in writers:
        finish(writer)
    stop.touch()
    seen = json.loads(finish(reader))
    assert seen["lookups"] >= 2 and seen["most"] == 9000
    store = make_store(folder)
    found, got = lookup_quietly(store, unit_keys(texts(0, 9000)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, 9000))
    assert 1 <= len(rec_files(store)) <= 3
    assert not list(store.directory.glob(".*.tmp"))


FSIZE_LIMITED = (
    CHILD_PRELUDE
    + """
import resource
folder, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail: EFBIG
store = ResultStore(folder, "model-a", "scores", width=3, dtype="f8")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with store.writer() as writer:
        for lo in range(0, 5000, 500):
            writer.add(unit_keys(texts(lo, lo + 500)), expected_values(lo, lo + 500))
print(json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
"""
)
RECORD = HEADER_BYTES + 500 * (KEY_BYTES + 3 * 8)


def test_a_write_failing_mid_run_warns_once_and_keeps_earlier_records(tmp_path):
    folder = tmp_path / "cache"
    caught = json.loads(finish(python(FSIZE_LIMITED, folder, int(3.5 * RECORD))))
    assert len(caught) == 1 and caught[0].startswith("CacheWriteWarning: Writing to the cache")
    assert "File too large" in caught[0] and "the 3 batches written before" in caught[0]
    store = make_store(folder)
    (journal,) = store.directory.glob("j-*.rec")
    assert journal.stat().st_size == 3 * RECORD  # the partial record was cut off
    found, got = lookup_quietly(store, unit_keys(texts(0, 5000)))
    np.testing.assert_array_equal(found, np.arange(5000) < 1500)
    np.testing.assert_array_equal(got[found], expected_values(0, 1500))


def _run_in_a_mount(tmp_path, options: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a private user+mount namespace with a tmpfs mounted
    on ``tmp_path / "mnt"`` (no root needed); skip where that is not allowed."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("unshare/mount not available")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    shell = 'mount -t tmpfs -o "$1" tmpfs "$0" || exit 77; exec "$2" -c "$3" "$0"'
    run = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", shell, mnt, options, sys.executable,
         textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    if run.returncode == 77 or "unshare failed" in run.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    return run


FILL_THE_DISK = (
    CHILD_PRELUDE
    + """
store = ResultStore(sys.argv[1], "model-a", "scores", width=3, dtype="f8")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with store.writer() as writer:
        for lo in range(0, 20000, 500):
            writer.add(unit_keys(texts(lo, lo + 500)), expected_values(lo, lo + 500))
    size = sum(os.path.getsize(p) for p in store.directory.glob("*.rec"))
    found, got = store.lookup(unit_keys(texts(0, 20000)))
assert np.array_equal(got[found], expected_values(0, 20000)[found])
print(json.dumps({
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "found": int(found.sum()), "prefix": bool(found[: found.sum()].all()), "size": size,
}))
"""
)


def test_a_full_disk_mid_run_warns_once_and_keeps_earlier_records(tmp_path):
    # A real ENOSPC: a 256 KiB tmpfs holds about 12 of the 40 records.
    out = json.loads(_run_in_a_mount(tmp_path, "size=256k", FILL_THE_DISK).stdout)
    (warning,) = out["warnings"]
    assert warning.startswith("CacheWriteWarning") and "No space left on device" in warning
    assert 0 < out["found"] < 20000 and out["found"] % 500 == 0 and out["prefix"]
    assert out["size"] == out["found"] // 500 * RECORD  # only whole records on disk


CHECK_READ_ONLY = (
    CHILD_PRELUDE
    + """
from skdeita.exceptions import CacheError
store = ResultStore(sys.argv[1], "model-a", "scores", width=3, dtype="f8")
try:
    store.check_writable()
except CacheError as err:
    print(err)
"""
)


def test_check_writable_raises_cache_error_on_a_read_only_filesystem(tmp_path):
    out = _run_in_a_mount(tmp_path, "ro", CHECK_READ_ONLY).stdout
    assert "cannot be created: Read-only file system" in out


MERGE_PAST_THE_LIMIT = (
    CHILD_PRELUDE
    + """
import resource
folder, limit = sys.argv[1], int(sys.argv[2])
store = ResultStore(folder, "model-a", "scores", width=3, dtype="f8")
with store.writer(compact=False) as writer:  # a dead writer's journal: 3 records
    for lo in range(0, 1500, 500):
        writer.add(unit_keys(texts(lo, lo + 500)), expected_values(lo, lo + 500))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with store.writer() as writer:  # 2 records fit; merging 5 does not
        for lo in range(1500, 2500, 500):
            writer.add(unit_keys(texts(lo, lo + 500)), expected_values(lo, lo + 500))
print(json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
"""
)


def test_a_merge_that_fails_warns_once_and_leaves_every_file_valid(tmp_path):
    folder = tmp_path / "cache"
    caught = json.loads(finish(python(MERGE_PAST_THE_LIMIT, folder, int(4.5 * RECORD))))
    assert len(caught) == 1 and caught[0].startswith("CacheWriteWarning: Merging the cache")
    store = make_store(folder)
    assert [name[:2] for name in rec_files(store)] == ["j-", "j-"]
    assert not list(store.directory.glob(".*.tmp"))  # the partial merge was removed
    found, got = lookup_quietly(store, unit_keys(texts(0, 2500)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, 2500))
