"""Numbers at the edges (issue 13): every finite input gives the mathematically
right selection, and what cannot be computed is an error naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector, deita_select

from .conftest import _SCORES, _select_with, _selection_frame

# -- 2. numbers ---------------------------------------------------------------------


def _nan_metric(u, v):
    return float("nan")


def _text_metric(u, v):
    return "far"


@pytest.mark.parametrize("target", ["function", "estimator"])
@pytest.mark.parametrize("metric", [_nan_metric, _text_metric], ids=["NaN", "text"])
def test_a_callable_metric_that_returns_no_number_is_an_error_naming_it(target, metric):
    with pytest.raises(ValueError, match=metric.__name__):
        _select_with(target, {"distance_metric": metric})


def test_a_score_product_that_overflows_is_an_error_not_a_reordering():
    frame = _selection_frame(instruction=[1e200, 2e200, 1.0, 1.0, 1.0], response=[1e200] * 5)
    with pytest.raises(ValueError, match=r"overflows float64 at rows \['a', 'b'\]"):
        DeitaSelector().fit(frame)


def test_huge_scores_keep_their_order_in_deita_select():
    scores = np.array([1e308, -1e308, 1.7e308, 0.0, -1.7e308])
    result = deita_select(np.eye(5), scores, diversity_threshold=0.0)
    assert result.selected.tolist() == [2, 0, 3, 1, 4]


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e170, 1e300])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_cosine_selection_does_not_depend_on_the_scale(scale, normalize, neighbors):
    rng = np.random.default_rng(4)
    emb = rng.normal(size=(60, 5))
    emb[7] = emb[3]  # duplicates too
    scores = rng.integers(0, 4, 60).astype(float)  # ties too
    kwargs = dict(diversity_threshold=0.35, normalize_embeddings=normalize, neighbors=neighbors)
    base = deita_select(emb, scores, **kwargs)
    scaled = deita_select(emb * scale, scores, **kwargs)
    assert scaled.selected.tolist() == base.selected.tolist()
    np.testing.assert_allclose(scaled.distances, base.distances, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e170, 1e300])
@pytest.mark.parametrize("metric", ["euclidean", "minkowski"])
def test_unnormalised_euclidean_selection_is_exact_at_any_finite_scale(scale, metric):
    """The squares under/overflow at 1e-170 and 1e170; the distances must not."""
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(60, 5))
    scores = rng.uniform(size=60)
    kwargs = dict(distance_metric=metric, normalize_embeddings=False, neighbors="dataset")
    base = deita_select(emb, scores, diversity_threshold=0.9, **kwargs)
    scaled = deita_select(emb * scale, scores, diversity_threshold=0.9 * scale, **kwargs)
    assert 0 < len(base.selected) < 60
    assert scaled.selected.tolist() == base.selected.tolist()
    np.testing.assert_allclose(scaled.distances / scale, base.distances, rtol=1e-9)


def test_a_distance_beyond_float64_is_an_error_naming_the_metric():
    emb = np.array([[1.5e308, 0.0], [-1.5e308, 0.0]])
    with pytest.raises(ValueError, match="distance_metric='euclidean' overflowed"):
        deita_select(emb, [2.0, 1.0], distance_metric="euclidean", normalize_embeddings=False)


def test_jensenshannon_on_signed_vectors_says_what_it_needs():
    with pytest.raises(ValueError, match="jensenshannon.*non-negative"):
        deita_select(
            np.array([[1.0, -1.0], [0.5, 0.5]]), [2.0, 1.0], distance_metric="jensenshannon"
        )


def test_subnormal_vectors_select_like_their_directions():
    tiny = 5e-324  # the smallest subnormal float64
    emb = np.array([[tiny, 0.0], [0.0, tiny], [tiny, tiny], [2 * tiny, tiny], [1.0, 0.0]])
    directions = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [1.0, 0.0]])
    for neighbors in ("selected", "dataset"):
        got = deita_select(emb, _SCORES, diversity_threshold=0.01, neighbors=neighbors)
        want = deita_select(directions, _SCORES, diversity_threshold=0.01, neighbors=neighbors)
        assert got.selected.tolist() == want.selected.tolist()


@pytest.mark.parametrize("block_size", [1, 2, 1024])
def test_tied_scores_are_visited_in_input_order(block_size):
    emb = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0], [0.001, 1.0]])
    result = deita_select(emb, [1.0, 1.0, 1.0, 1.0], block_size=block_size)
    assert result.order.tolist() == [0, 1, 2, 3]
    assert result.selected.tolist() == [0, 2]


def test_threshold_zero_keeps_exact_duplicates():
    rng = np.random.default_rng(6)
    emb = np.repeat(rng.normal(size=(20, 37)), 3, axis=0)  # 1 - a.a rounds below 0 for some
    for neighbors in ("selected", "dataset"):
        result = deita_select(emb, np.arange(60.0), diversity_threshold=0.0, neighbors=neighbors)
        assert len(result.selected) == 60 and (result.distances >= 0).all()


@pytest.mark.parametrize("n", [25, 50, 100, 300])
@pytest.mark.parametrize("fraction", [0.07, 0.14, 0.28, 0.56])
def test_a_fraction_budget_is_the_fraction_as_written(n, fraction):
    """0.07 x 100 is 7.000000000000001 in float64; the budget is 7 rows, not 8."""
    exact = -(-round(fraction * 100) * n // 100)
    assert deita_select(np.eye(n), np.ones(n), data_budget=fraction).budget == exact
    frame = pd.DataFrame(
        {"embedding": list(np.eye(n)), "evol_instruction_score": 1.0, "evol_response_score": 1.0}
    )
    assert DeitaSelector(fraction).fit(frame).budget_ == exact


def test_per_turn_scores_must_be_numbers_not_text():
    frame = _selection_frame(instruction=[["4", "5"]] + [[1.0, 1.0]] * 4, response=[[1.0, 1.0]] * 5)
    with pytest.raises(TypeError, match="'evol_instruction_score' at row 'a'"):
        DeitaSelector().fit(frame)
