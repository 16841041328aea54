"""The walk's pieces: the nearest other row search and the distances by rank."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from skdeita.selection._greedy import RowSource
from skdeita.selection._walk import Distances, nearest_other_rows


def plain_nearest(emb, candidates, scored):
    """Distance from each candidate row to its nearest other scored row."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = []
    for i in candidates:
        others = [j for j in scored if j != i]
        out.append(cdist(unit[i : i + 1], unit[others], "cosine").min() if others else np.inf)
    return np.array(out)


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("subset", [False, True])
def test_nearest_other_row_equals_a_plain_loop_for_any_chunk(chunk, subset):
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(30, 6))
    emb[7] = emb[3]  # an exact duplicate elsewhere is a neighbour at distance 0
    scored = np.array([0, 2, 3, 5, 7, 11, 12, 20, 29]) if subset else None
    candidates = np.array([3, 7, 12, 29, 2])
    source = RowSource(list(emb), normalize=True)
    vectors = source.take(candidates)
    got = nearest_other_rows(
        vectors, (np.arange(5), candidates), source, scored, "cosine", True, chunk
    )
    want = plain_nearest(emb, candidates, range(30) if scored is None else scored)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] == got[1] == 0.0


def test_partitions_give_the_whole_inputs_nearest_row():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(24, 4))
    whole = RowSource(list(emb), normalize=True)
    candidates = np.array([1, 9, 17])
    vectors = whole.take(candidates)
    expected = nearest_other_rows(
        vectors, (np.arange(3), candidates), whole, None, "cosine", True, 5
    )
    got = np.full(3, np.inf)
    for start in (0, 10, 20):  # partitions of 10, 10 and 4 rows
        part = RowSource(list(emb[start : start + 10]), normalize=True)
        mine = (candidates >= start) & (candidates < start + 10)
        own = (np.flatnonzero(mine), candidates[mine] - start)
        np.minimum(got, nearest_other_rows(vectors, own, part, None, "cosine", True, 5), out=got)
    np.testing.assert_array_equal(got, expected)


def test_distances_are_stored_by_rank():
    order = np.array([4, 0, 3, 1, 2])
    store = Distances(order)
    store[order[0:2]] = [0.5, 0.25]
    store[order[2:3]] = [0.75]
    np.testing.assert_array_equal(store.by_rank(0), [0.5, 0.25, 0.75])


def test_kept_only_distances_keep_those_reaching_the_threshold():
    order = np.arange(4)
    store = Distances(order, kept_only=0.3)
    store[order[:4]] = [np.inf, 0.1, 0.3, 0.29]
    np.testing.assert_array_equal(store.by_rank(2), [np.inf, 0.3])
    with pytest.raises(RuntimeError, match="kept 3 rows but recorded 2"):
        store.by_rank(3)


def test_distances_out_of_walk_order_are_refused():
    order = np.arange(6)
    store = Distances(order)
    store[order[:2]] = [1.0, 1.0]
    with pytest.raises(RuntimeError, match="out of order"):
        store[order[3:4]] = [1.0]
