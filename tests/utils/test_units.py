"""The compute core: each distinct key once, cached values reused, batches
checkpointed as they finish, isolated keys in batches of their own."""

from __future__ import annotations

import numpy as np
import pytest

from skdeita.utils._units import UnitBatch, batch_plan, compute_units, distinct, unit_keys


def plain_distinct(keys):
    """A dict over the keys' bytes, in input order."""
    first: dict[bytes, int] = {}
    inverse = []
    for k in keys.tolist():
        inverse.append(first.setdefault(k, len(first)))
    positions = [None] * len(first)
    for k, g in first.items():
        positions[g] = next(i for i, kk in enumerate(keys.tolist()) if kk == k)
    return np.array(positions, dtype=np.intp), np.array(inverse, dtype=np.intp)


@pytest.mark.parametrize("n, n_distinct", [(0, 0), (1, 1), (50, 7), (300, 300)])
def test_distinct_equals_a_dict_in_input_order(n, n_distinct):
    rng = np.random.default_rng(n)
    texts = [f"t{rng.integers(n_distinct)}" if n_distinct else "" for _ in range(n)]
    keys = unit_keys(texts)
    first, inverse = distinct(keys)
    want_first, want_inverse = plain_distinct(keys)
    np.testing.assert_array_equal(first, want_first)
    np.testing.assert_array_equal(inverse, want_inverse)


def test_unit_keys_differ_for_different_texts_and_match_for_equal_ones():
    keys = unit_keys(["a", "b", "a", "caf\udce9"])  # a lone surrogate is hashed, not raised
    assert keys.dtype == np.dtype("V16")
    assert keys[0] == keys[2] and keys[0] != keys[1] and keys[3] != keys[0]


def squares(texts, seen, batch_size=3):
    """A step computing len(text)**2, batch by batch, recording what it sees."""

    def compute(positions, isolated):
        def chunks(idx):  # positions into idx, as a step's batcher yields them
            return (
                np.arange(i, min(i + batch_size, len(idx))) for i in range(0, len(idx), batch_size)
            )

        plan = batch_plan(isolated, chunks)
        for b in plan:
            seen.append([texts[p] for p in positions[b]])
            yield UnitBatch(
                positions[b], np.array([[len(texts[p]) ** 2] for p in positions[b]], float)
            )

    return compute


def test_each_distinct_unit_is_computed_once_and_copies_share_its_value():
    texts = ["aa", "b", "aa", "ccc", "b", "aa"]
    seen = []
    res = compute_units(unit_keys(texts), squares(texts, seen), width=1, dtype=np.float64)
    assert sorted(t for batch in seen for t in batch) == ["aa", "b", "ccc"]
    np.testing.assert_array_equal(res.values[:, 0], [4, 1, 4, 9, 1, 4])
    assert res.n_computed == 3 and not res.from_cache.any() and res.errors == {}


def test_isolated_keys_are_computed_in_batches_of_one_after_the_others():
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    keys = unit_keys(texts)
    seen = []
    compute_units(keys, squares(texts, seen), width=1, dtype=np.float64, isolate=keys[[1, 3]])
    assert seen == [["a", "ccc", "eeeee"], ["bb"], ["dddd"]]


def test_a_failed_unit_fails_every_copy_and_the_others_keep_their_values():
    texts = ["ok", "bad", "ok2", "bad"]

    def compute(positions, isolated):
        values = np.array([[1.0]] * len(positions))
        errors = {int(p): ValueError("no") for p in positions if texts[p] == "bad"}
        yield UnitBatch(positions, values, errors)

    res = compute_units(unit_keys(texts), compute, width=1, dtype=np.float64)
    assert sorted(res.errors) == [1, 3]
    assert np.isnan(res.values[[1, 3], 0]).all() and (res.values[[0, 2], 0] == 1).all()


def test_copies_marks_every_unit_sharing_a_key():
    texts = ["x", "y", "x", "z", "x"]
    res = compute_units(unit_keys(texts), squares(texts, []), width=1, dtype=np.float64)
    np.testing.assert_array_equal(res.copies([2]), [True, False, True, False, True])
    np.testing.assert_array_equal(res.copies([]), [False] * 5)


def test_progress_bar_counts_only_the_units_it_computes(tmp_path, capsys):
    from skdeita.utils._disk_cache import ResultStore

    texts = [f"t{i}" for i in range(10)]
    store = ResultStore(tmp_path, "id", "test", width=1, dtype=np.float64)
    compute_units(unit_keys(texts[:6]), squares(texts[:6], []), width=1, dtype=float, store=store)
    seen = []
    res = compute_units(
        unit_keys(texts), squares(texts, seen), width=1, dtype=float, store=store, progress=True
    )
    assert sorted(t for batch in seen for t in batch) == texts[6:]
    assert res.from_cache.sum() == 6 and res.n_computed == 4
    assert "0/4" in capsys.readouterr().err  # the bar's total: the rows it computes


def test_a_failing_step_leaves_every_finished_batch_in_the_store(tmp_path):
    from skdeita.utils._disk_cache import ResultStore

    texts = [f"row {i}" for i in range(9)]
    store = ResultStore(tmp_path, "id", "test", width=1, dtype=np.float64)

    def crashing(positions, isolated):
        yield UnitBatch(positions[:3], np.ones((3, 1)))
        yield UnitBatch(positions[3:6], np.ones((3, 1)))
        raise MemoryError("out of memory on the third batch")

    with pytest.raises(MemoryError):
        compute_units(unit_keys(texts), crashing, width=1, dtype=float, store=store)
    found, _ = store.lookup(unit_keys(texts))
    np.testing.assert_array_equal(found, [True] * 6 + [False] * 3)
