"""ResultStore: round trips, lookups against a plain reference, several writers,
order independence, bad input and an unwritable folder (real files throughout).

Crashes and damaged files: test_disk_cache_damage.py; processes at once,
compaction and failed writes: test_disk_cache_processes.py."""

from __future__ import annotations

import hashlib
import os
import re
import shutil

import joblib
import numpy as np
import pytest

from skdeita.exceptions import CacheError
from skdeita.utils._disk_cache import ResultStore, unit_keys

from .conftest import expected_values, lookup_quietly, make_store, rec_files, texts, write_rows


def test_round_trip_is_bit_for_bit(tmp_path):
    store = make_store(tmp_path, width=5, dtype="float32")
    rng = np.random.default_rng(0)
    keys = unit_keys(texts(0, 500))
    values = rng.standard_normal((500, 5)).astype(np.float32)
    values[3] = [np.inf, -np.inf, -0.0, np.float32(1e-45), np.nan]  # odd bits survive too
    with store.writer() as writer:
        writer.add(keys[:200], values[:200])
        writer.add(keys[200:], values[200:])
    found, got = lookup_quietly(store, keys)
    assert found.all()
    assert got.dtype == np.float32 and got.shape == (500, 5)
    assert got.tobytes() == values.tobytes()


def test_lookup_mixes_present_absent_and_repeated_keys(store):
    write_rows(store, 0, 1000, batch=128)
    rng = np.random.default_rng(1)
    wanted = rng.integers(0, 2000, size=3000)  # half absent, many repeated
    found, got = lookup_quietly(store, unit_keys([f"unit {i}" for i in wanted]))
    present = wanted < 1000
    np.testing.assert_array_equal(found, present)
    np.testing.assert_array_equal(got[present], expected_values(0, 1000)[wanted[present]])
    assert np.isnan(got[~present]).all()


def reference_lookup(written: dict[bytes, np.ndarray], keys, width):
    """A plain dict: what every lookup must return (no sorting, no chunks)."""
    found = np.array([k.tobytes() in written for k in keys])
    values = np.full((len(keys), width), np.nan)
    for i, key in enumerate(keys):
        if key.tobytes() in written:
            values[i] = written[key.tobytes()]
    return found, values


def test_lookup_equals_a_dict_reference_with_shared_key_prefixes(store):
    # Keys that share their first 8 bytes (what the sorted search compares
    # first) and differ only in the last 8: the full key must decide.
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, size=(400, 16), dtype=np.uint8)
    raw[200:, :8] = raw[:200, :8]
    raw[300:, :8] = raw[0, :8]
    keys = raw.view("V16").ravel()
    values = rng.standard_normal((400, 3))
    stored = rng.permutation(400)[:250]
    with store.writer() as writer:
        for part in np.array_split(stored, 7):
            writer.add(keys[part], values[part])
    written = {keys[i].tobytes(): values[i] for i in stored}
    query = keys[rng.integers(0, 400, size=900)]
    found, got = lookup_quietly(store, query)
    ref_found, ref_values = reference_lookup(written, query, 3)
    np.testing.assert_array_equal(found, ref_found)
    np.testing.assert_array_equal(got, ref_values)


def test_lookup_of_an_empty_or_missing_store_finds_nothing(tmp_path):
    store = make_store(tmp_path / "never-written")
    found, got = store.lookup(unit_keys(["a", "b"]))
    assert not found.any() and got.shape == (2, 3) and np.isnan(got).all()
    found, got = store.lookup(unit_keys([]))
    assert found.shape == (0,) and got.shape == (0, 3)


def test_several_writers_open_at_once_all_land(store):
    first, second = store.writer(), store.writer()
    first.add(unit_keys(texts(0, 50)), expected_values(0, 50))
    second.add(unit_keys(texts(50, 120)), expected_values(50, 120))
    first.add(unit_keys(texts(120, 130)), expected_values(120, 130))
    second.close()
    first.close()
    found, got = lookup_quietly(store, unit_keys(texts(0, 130)))
    assert found.all()
    np.testing.assert_array_equal(got, expected_values(0, 130))


def test_result_does_not_depend_on_batches_or_write_order(tmp_path):
    one, other = make_store(tmp_path / "one"), make_store(tmp_path / "other")
    write_rows(one, 0, 600, batch=600)
    order = np.random.default_rng(3).permutation(600)
    for part in np.array_split(order, 9):
        with other.writer() as writer:
            writer.add(unit_keys([f"unit {i}" for i in part]), expected_values(0, 600)[part])
    query = unit_keys(texts(0, 700))[np.random.default_rng(4).permutation(700)]
    a, b = lookup_quietly(one, query), lookup_quietly(other, query)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].tobytes() == b[1].tobytes()


@pytest.mark.parametrize("first_writer", ["small", "large"])
def test_a_key_written_twice_with_different_bits_resolves_to_the_smaller_bytes(store, first_writer):
    # Two processes computed one unit at once and their floats differ in the
    # last bit: every lookup must pick the same one, before and after merging.
    key = unit_keys(["unit 7"])
    small, large = np.array([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 3.0000000000000004]])
    assert small.tobytes() < large.tobytes()
    order = [small, large] if first_writer == "small" else [large, small]
    writers = [store.writer(), store.writer()]
    for writer, values in zip(writers, order, strict=True):
        writer.add(key, values)
    found, got = lookup_quietly(store, key)  # two live journals
    assert found.all() and got.tobytes() == small.tobytes()
    for writer in writers:
        writer.close()
    assert len(rec_files(store)) == 1  # merged into one file, both records kept
    found, got = lookup_quietly(store, key)
    assert got.tobytes() == small.tobytes()


def test_a_key_held_twice_in_one_batch_resolves_to_the_smaller_bytes(store):
    keys = unit_keys(["x", "x", "y"])
    rows = np.array([[2.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    smaller = min(rows[0], rows[1], key=lambda row: row.tobytes())  # 2.0: its bytes are smaller
    with store.writer() as writer:
        writer.add(keys, rows)
    found, got = lookup_quietly(store, unit_keys(["x", "y"]))
    np.testing.assert_array_equal(got, [smaller, rows[2]])


def test_stores_of_other_identities_never_share_rows(tmp_path):
    write_rows(make_store(tmp_path, identity="model-a"), 0, 10, batch=10)
    other = make_store(tmp_path, identity="model-b")
    found, _ = lookup_quietly(other, unit_keys(texts(0, 10)))
    assert not found.any()


def test_folder_is_named_by_kind_and_identity_digest(tmp_path):
    store = ResultStore(tmp_path, "model-a", "embeddings", width=4, dtype="float32")
    digest = hashlib.sha256(b"model-a").hexdigest()[:24]
    assert store.directory == tmp_path / "skdeita-embeddings" / digest


def test_from_param_accepts_none_a_path_and_a_joblib_memory(tmp_path):
    kw = dict(width=1, dtype="float64")
    assert ResultStore.from_param(None, "m", "scores", **kw) is None
    assert ResultStore.from_param(joblib.Memory(None), "m", "scores", **kw) is None
    by_memory = ResultStore.from_param(joblib.Memory(tmp_path, verbose=0), "m", "scores", **kw)
    by_path = ResultStore.from_param(str(tmp_path), "m", "scores", **kw)
    assert by_memory.directory == by_path.directory
    assert by_memory.directory.parent.parent == tmp_path


def test_unit_keys_are_sha256_prefixes_of_utf8_with_surrogates():
    items = ["héllo", "\ud800 lone surrogate", ""]
    keys = unit_keys(items)
    assert keys.dtype == np.dtype("V16") and keys.shape == (3,)
    for key, text in zip(keys, items, strict=True):
        want = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:16]
        assert key.tobytes() == want


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda s: s.lookup([b"0" * 16]), TypeError, "keys must be a 1-d numpy array"),
        (lambda s: s.lookup(np.zeros(2, "V8")), TypeError, "keys must be a 1-d numpy array"),
        (
            lambda s: s.writer().add(unit_keys(["a"]), np.zeros((1, 2))),
            ValueError,
            "values must have shape (1, 3)",
        ),
        (
            lambda s: s.writer().add(unit_keys(["a"]), np.array([["x", "y", "z"]])),
            TypeError,
            "cannot be stored as float64",
        ),
        (lambda s: unit_keys(["a", 3]), TypeError, "items[1] must be a str"),
    ],
)
def test_bad_input_names_the_parameter(store, call, error, words):
    with pytest.raises(error, match=re.escape(words)):
        call(store)
    assert not store.directory.exists()  # nothing written


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(cache=3), TypeError, "cache must be None, a folder path or a joblib.Memory"),
        (dict(kind="../up"), ValueError, "kind must be a simple folder name"),
        (dict(width=0), ValueError, "width must be a positive int"),
        (dict(dtype="int64"), TypeError, "dtype must be a floating dtype"),
        (dict(identity=b"m"), TypeError, "identity must be a str"),
    ],
)
def test_bad_store_parameters_are_named(tmp_path, kwargs, error, words):
    params = dict(cache=tmp_path, identity="m", kind="scores", width=1, dtype="f8") | kwargs
    cache = params.pop("cache")
    with pytest.raises(error, match=words):
        ResultStore.from_param(cache, params.pop("identity"), params.pop("kind"), **params)


def test_add_after_close_is_an_error_and_close_is_idempotent(store):
    writer = store.writer()
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add(unit_keys(["a"]), np.zeros((1, 3)))


def test_a_writer_that_adds_nothing_leaves_no_file(store):
    store.check_writable()
    with store.writer() as writer:
        writer.add(unit_keys([]), np.zeros((0, 3)))
    assert rec_files(store) == []


def test_check_writable_creates_the_folder(store):
    store.check_writable()
    assert store.directory.is_dir()
    assert os.listdir(store.directory) == []  # the probe file is gone


def test_check_writable_raises_cache_error_when_the_folder_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = make_store(blocker)
    with pytest.raises(CacheError, match=f"{re.escape(str(blocker))}.* cannot be created"):
        store.check_writable()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_raises_cache_error_for_a_read_only_folder(store):
    store.directory.mkdir(parents=True)
    store.directory.chmod(0o500)
    try:
        with pytest.raises(CacheError, match="cannot be written"):
            store.check_writable()
    finally:
        store.directory.chmod(0o700)


def test_shards_of_skdeita_0_1_in_the_same_folder_are_left_alone(tmp_path):
    # skdeita 0.1 wrote one .npz shard per call into the same folder scheme.
    store = make_store(tmp_path, identity="model-a")
    store.directory.mkdir(parents=True)
    legacy = store.directory / "0123456789abcdef0123.npz"
    np.savez(legacy, keys=unit_keys(["old"]), vectors=np.ones((1, 3)))
    before = legacy.read_bytes()
    write_rows(store, 0, 5, batch=5)
    found, _ = lookup_quietly(store, unit_keys(["old", "unit 1"]))
    np.testing.assert_array_equal(found, [False, True])
    assert legacy.read_bytes() == before
    shutil.rmtree(tmp_path / "skdeita-scores")
