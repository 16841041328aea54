"""Reliability of PairRMRanker on generated messy inputs and candidates: a
documented error or valid ranks; the caller's frame is never mutated."""

from __future__ import annotations

import copy
import warnings

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_candidate_cell = st.one_of(
    st.lists(st.text(min_size=1, max_size=15), min_size=1, max_size=4),
    st.lists(st.text(min_size=1, max_size=15), min_size=1, max_size=4),
    st.just([]),
    st.none(),
    st.just("a bare string"),
    st.lists(st.one_of(st.text(max_size=5), st.none(), st.integers()), min_size=1, max_size=3),
)


@pytest.fixture(scope="module")
def fitted_ranker(tiny_ranker_dir):
    from skdeita import PairRMRanker

    frame = pd.DataFrame({"input": ["a"], "candidates": [["x", "y"]]})
    return PairRMRanker(str(tiny_ranker_dir), show_progress_bar=False).fit(frame)


@pytest.mark.pairrm
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    inputs=st.lists(st.one_of(st.text(max_size=20), st.none()), min_size=0, max_size=4),
    data=st.data(),
    on_invalid=st.sampled_from(["raise", "skip"]),
)
def test_ranker_gives_a_documented_error_or_valid_ranks(fitted_ranker, inputs, data, on_invalid):
    cands = [data.draw(_candidate_cell) for _ in inputs]
    frame = pd.DataFrame(
        {"input": pd.Series(inputs, dtype=object), "candidates": pd.Series(cands, dtype=object)}
    )
    before = copy.deepcopy(frame)
    ranker = fitted_ranker.set_params(on_invalid=on_invalid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            out = ranker.transform(frame)
        except (TypeError, ValueError) as exc:
            assert "rows" in str(exc).lower() or "Rows" in str(exc)
            pd.testing.assert_frame_equal(frame, before)
            return
    pd.testing.assert_frame_equal(frame, before)
    assert list(out.index) == list(frame.index)
    for c, ranks, ranked in zip(
        frame["candidates"], out["ranks"], out["ranked_candidates"], strict=True
    ):
        if ranks is None:
            continue
        assert sorted(ranked) == sorted(c) and min(ranks) == 1 and len(ranks) == len(c)
