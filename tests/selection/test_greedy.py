"""The numerical core, deita_select, against the plain reference loop."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from skdeita import deita_select
from tests._reference import reference_select


def _random_case(seed: int, n: int = 300, dim: int = 6):
    """Clustered vectors with exact duplicates and tied scores."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, dim))
    emb = centers[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))
    dup_from = rng.integers(0, n, n // 10)
    dup_to = rng.integers(0, n, n // 10)
    emb[dup_to] = emb[dup_from]
    scores = rng.integers(1, 6, n).astype(float)  # many ties
    return emb, scores


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_cosine_selection_equals_reference_loop(seed, neighbors):
    emb, scores = _random_case(seed)
    budget, thr = 40 + seed, [0.02, 0.05, 0.1, 0.2][seed % 4]
    got = deita_select(
        emb,
        scores,
        data_budget=budget,
        diversity_threshold=thr,
        neighbors=neighbors,
        block_size=1 + 7 * seed,
    )
    kept, seen = reference_select(emb, scores, budget, thr, neighbors=neighbors)
    assert got.selected.tolist() == kept
    visited = got.order[: got.n_visited]
    assert sorted(visited.tolist()) == sorted(seen)
    np.testing.assert_allclose(
        got.distances[visited], [seen[i] for i in visited], rtol=0, atol=1e-12
    )
    assert np.isnan(np.delete(got.distances, visited)).all()


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "chebyshev"])
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_cdist_metrics_equal_reference_loop_exactly(metric, neighbors):
    emb, scores = _random_case(7, n=250)
    got = deita_select(
        emb,
        scores,
        data_budget=60,
        diversity_threshold=0.4,
        distance_metric=metric,
        neighbors=neighbors,
        block_size=16,
    )
    ref_metric = "cityblock" if metric == "manhattan" else metric
    kept, seen = reference_select(emb, scores, 60, 0.4, metric=ref_metric, neighbors=neighbors)
    assert got.selected.tolist() == kept
    visited = got.order[: got.n_visited]
    assert got.distances[visited].tolist() == [seen[i] for i in visited]


def test_block_size_never_changes_the_result():
    emb, scores = _random_case(3, n=500)
    results = [
        deita_select(emb, scores, data_budget=80, diversity_threshold=0.05, block_size=b)
        for b in (1, 2, 33, 500, 4096)
    ]
    for r in results[1:]:
        assert r.selected.tolist() == results[0].selected.tolist()
        np.testing.assert_array_equal(np.isnan(r.distances), np.isnan(results[0].distances))


def test_selection_on_real_embeddings_equals_reference_loop(alpaca_embeddings):
    rng = np.random.default_rng(0)
    rows = rng.choice(len(alpaca_embeddings), 3000, replace=False)
    emb = alpaca_embeddings[rows]
    scores = np.round(rng.uniform(1, 6, len(rows)) * rng.uniform(1, 6, len(rows)), 1)
    got = deita_select(emb, scores, data_budget=400, diversity_threshold=0.25)
    kept, _ = reference_select(emb, scores, 400, 0.25)
    assert got.selected.tolist() == kept
    assert got.n_visited > len(kept)  # the threshold bites on real data


def test_exact_duplicates_keep_the_first_in_selected_mode():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = deita_select(emb, [5.0, 5.0, 1.0], data_budget=3)
    assert got.selected.tolist() == [0, 2]
    assert got.distances[1] == pytest.approx(0.0, abs=1e-12)


def test_dataset_mode_drops_both_duplicates_like_distilabel():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = deita_select(emb, [5.0, 5.0, 1.0], data_budget=3, neighbors="dataset")
    assert got.selected.tolist() == [2]


def test_budget_as_fraction_rounds_up():
    emb, scores = _random_case(1, n=101)
    got = deita_select(emb, scores, data_budget=0.1, diversity_threshold=0.0)
    assert got.budget == 11 and len(got.selected) == 11


def test_no_budget_keeps_every_row_that_passes():
    emb, scores = _random_case(2, n=200)
    got = deita_select(emb, scores, data_budget=None, diversity_threshold=0.1)
    kept, _ = reference_select(emb, scores, 200, 0.1)
    assert got.selected.tolist() == kept
    assert got.n_visited == 200


def test_memory_stays_far_below_an_n_by_n_matrix():
    rng = np.random.default_rng(0)
    n = 20_000
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    scores = rng.uniform(size=n)
    tracemalloc.start()
    deita_select(emb, scores, data_budget=2000, diversity_threshold=0.3)
    deita_select(emb[:5000], scores[:5000], data_budget=200, neighbors="dataset")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * n * 8 / 50  # an n x n float64 matrix would be 3.2 GB


def test_zero_vector_is_rejected_under_cosine():
    emb = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"all-zero vectors.*positions \[1\]"):
        deita_select(emb, [1.0, 2.0, 3.0])


def test_zero_vector_is_fine_under_raw_euclidean():
    emb = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    got = deita_select(
        emb,
        [1.0, 2.0, 3.0],
        distance_metric="euclidean",
        normalize_embeddings=False,
        diversity_threshold=0.5,
    )
    assert got.selected.tolist() == [2, 1, 0]


def test_data_dependent_metric_is_refused():
    with pytest.raises(ValueError, match="mahalanobis"):
        deita_select(np.eye(3), [1.0, 2.0, 3.0], distance_metric="mahalanobis")


# -- properties ---------------------------------------------------------------

_cases = st.tuples(
    st.integers(0, 10_000),  # seed
    st.integers(1, 120),  # rows
    st.integers(2, 5),  # dims
    st.integers(1, 60),  # budget
    st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.6]),  # threshold
)


def _case(seed, n, dim):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim))
    emb[rng.integers(0, n, n // 5)] = emb[rng.integers(0, n, n // 5)]
    return emb, rng.integers(0, 4, n).astype(float)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases)
def test_property_kept_rows_are_pairwise_at_least_threshold_apart(case):
    seed, n, dim, budget, thr = case
    emb, scores = _case(seed, n, dim)
    got = deita_select(emb, scores, data_budget=budget, diversity_threshold=thr)
    assert len(got.selected) <= budget
    kept = emb[got.selected] / np.linalg.norm(emb[got.selected], axis=1, keepdims=True)
    d = cdist(kept, kept, "cosine")
    np.fill_diagonal(d, np.inf)
    assert (d >= thr - 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(_cases)
def test_property_every_rejected_row_has_a_closer_kept_row(case):
    seed, n, dim, budget, thr = case
    emb, scores = _case(seed, n, dim)
    got = deita_select(emb, scores, data_budget=budget, diversity_threshold=thr)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    rejected = np.setdiff1d(got.order[: got.n_visited], got.selected)
    if rejected.size:
        d = cdist(unit[rejected], unit[got.selected], "cosine").min(axis=1)
        assert (d < thr + 1e-9).all()


@settings(max_examples=60, deadline=None)
@given(_cases, st.integers(1, 30))
def test_property_prefix_small_budget_is_start_of_large_budget(case, extra):
    seed, n, dim, budget, thr = case
    emb, scores = _case(seed, n, dim)
    small = deita_select(emb, scores, data_budget=budget, diversity_threshold=thr)
    large = deita_select(emb, scores, data_budget=budget + extra, diversity_threshold=thr)
    assert large.selected[: len(small.selected)].tolist() == small.selected.tolist()
