"""Reliability of DeitaSelector on generated messy frames: messy input gets a
documented error or a correct result, never anything else; nothing is mutated
or lost."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from skdeita import DeitaSelector

# -- generated messy frames ----------------------------------------------------

_vector = st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=3, max_size=3)
_embedding_cell = st.one_of(
    _vector,  # mostly valid
    _vector,
    _vector.map(np.asarray),
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=2, max_size=4),  # ragged
    st.just([0.0, 0.0, 0.0]),  # zero vector
    st.just([np.nan, 1.0, 2.0]),
    st.just([np.inf, 1.0, 2.0]),
    st.none(),
    st.text(max_size=5),
    st.just(["a", "b", "c"]),
)
_score_cell = st.one_of(
    st.floats(0, 6, allow_nan=False),
    st.floats(0, 6, allow_nan=False),
    st.integers(0, 6),
    st.just(0.0),
    st.none(),
    st.just(np.nan),
    st.just(np.inf),
    st.text(max_size=4),
    st.lists(st.floats(0, 6, allow_nan=False), min_size=1, max_size=3),
    st.booleans(),
)


@st.composite
def messy_frames(draw):
    n = draw(st.integers(0, 12))
    messy = draw(st.booleans())  # half the frames are clean, to exercise results too
    cell = _embedding_cell if messy else _vector
    frame = pd.DataFrame(
        {
            "embedding": pd.Series([draw(cell) for _ in range(n)], dtype=object),
            "evol_instruction_score": pd.Series(
                [draw(_score_cell) for _ in range(n)], dtype=object
            ),
            "evol_response_score": pd.Series([draw(_score_cell) for _ in range(n)], dtype=object),
            "text": [draw(st.text(max_size=20)) for _ in range(n)],
        }
    )
    index_kind = draw(st.sampled_from(["range", "duplicates", "strings"]))
    if index_kind == "duplicates" and n:
        frame.index = [i // 2 for i in range(n)]
    elif index_kind == "strings":
        frame.index = [f"id-{i}" for i in range(n)]
    if draw(st.booleans()):  # clean numeric score columns half of the time
        for col in ("evol_instruction_score", "evol_response_score"):
            frame[col] = [draw(st.floats(0, 6, allow_nan=False)) for _ in range(n)]
    return frame


_valid_params = st.fixed_dictionaries(
    {
        "data_budget": st.one_of(st.integers(1, 15), st.floats(0.01, 1.0), st.none()),
        "diversity_threshold": st.one_of(st.floats(0, 2.5), st.just(0.1)),
        "neighbors": st.sampled_from(["selected", "dataset"]),
        "output": st.sampled_from(["subset", "annotate"]),
        "missing_scores": st.sampled_from(["raise", "drop"]),
        "distance_metric": st.sampled_from(["cosine", "euclidean", "manhattan"]),
    }
)
_bad_params = st.fixed_dictionaries(
    {
        "data_budget": st.one_of(st.integers(-1, 0), st.floats(1.01, 3), st.just("10")),
        "diversity_threshold": st.floats(-1, -0.01),
        "neighbors": st.just("kept"),
        "distance_metric": st.just("mahalanobis"),
    }
).flatmap(lambda bad: st.sampled_from(sorted(bad.items())).map(lambda kv: dict([kv])))
_params = st.one_of(_valid_params, _valid_params, _valid_params, _bad_params)

NAMED = (
    "embedding",
    "evol_instruction_score",
    "evol_response_score",
    "Rows",
    "rows",
    "row",
    "parameter",
    "X ",
)


def _documented(exc: Exception) -> bool:
    """A skdeita validation error: the right type, naming what is wrong."""
    if isinstance(exc, InvalidParameterError):
        return True
    return isinstance(exc, TypeError | ValueError) and any(k in str(exc) for k in NAMED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=messy_frames(), params=_params)
def test_selector_gives_a_documented_error_or_a_valid_result(frame, params):
    before = copy.deepcopy(frame)
    selector = DeitaSelector(**params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = selector.fit_transform(frame)
        except Exception as exc:  # noqa: BLE001 - the point is what escapes
            event(f"error: {type(exc).__name__}")
            assert _documented(exc), f"undocumented {type(exc).__name__}: {exc}"
            pd.testing.assert_frame_equal(frame, before)
            return
    event("selected")
    pd.testing.assert_frame_equal(frame, before)  # never mutated
    budget = selector.budget_
    if params["output"] == "annotate":
        assert len(out) == len(frame) and list(out.index) == list(frame.index)
        kept = int(out["deita_selected"].sum())
    else:
        kept = len(out)
        assert set(out.index) <= set(frame.index)
    assert kept == selector.n_selected_ <= budget
    if params["data_budget"] is not None and kept < budget:  # fewer rows are explained
        assert any("fewer than the budget" in str(w.message) for w in caught)


def test_every_row_is_accounted_for_in_annotate_mode():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "embedding": list(rng.normal(size=(50, 4))),
            "evol_instruction_score": rng.uniform(1, 6, 50),
            "evol_response_score": rng.uniform(1, 6, 50),
        }
    )
    df.loc[[3, 7], ["evol_instruction_score", "evol_response_score"]] = np.nan
    with pytest.warns(UserWarning):
        out = DeitaSelector(
            data_budget=10, output="annotate", missing_scores="drop", diversity_threshold=0.3
        ).fit_transform(df)
    visited = out["nearest_neighbor_distance"].notna()
    # Each row is kept, rejected (distance below the threshold), dropped for
    # missing scores, or not reached because the budget was filled.
    kept = out["deita_selected"]
    rejected = visited & ~kept
    assert (out.loc[rejected, "nearest_neighbor_distance"] < 0.3).all()
    assert out.loc[[3, 7], "deita_score"].isna().all() and not kept[[3, 7]].any()
    assert kept.sum() == 10
