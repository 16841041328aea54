"""Reliability of EmbeddingTransformer on generated messy text: a documented
error or one vector per row; the caller's frame is never mutated."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# -- the model-backed estimators -----------------------------------------------------

_text_cell = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="日本語éß🙂ðŁ", min_size=1, max_size=10),
    st.just("word " * 600),  # past the 256-token limit
    st.none(),
    st.just(np.nan),
    st.integers(),
    st.floats(allow_nan=False),
)


@pytest.fixture(scope="module")
def fitted_embedder():
    pytest.importorskip("sentence_transformers")
    from skdeita import EmbeddingTransformer

    return EmbeddingTransformer(show_progress_bar=False).fit(pd.DataFrame({"text": ["a"]}))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(cells=st.lists(_text_cell, max_size=6), on_missing=st.sampled_from(["raise", "empty"]))
def test_embedder_gives_a_documented_error_or_one_vector_per_row(
    fitted_embedder, cells, on_missing
):
    frame = pd.DataFrame({"text": pd.Series(cells, dtype=object)})
    before = copy.deepcopy(frame)
    emb = fitted_embedder.set_params(on_missing=on_missing)
    try:
        out = emb.transform(frame)
    except (TypeError, ValueError) as exc:
        assert "'text'" in str(exc) and "rows" in str(exc)
    else:
        assert list(out.index) == list(frame.index)
        vectors = np.stack(out["embedding"].to_list()) if len(out) else np.empty((0, 384))
        assert vectors.shape == (len(frame), 384) and np.isfinite(vectors).all()
    pd.testing.assert_frame_equal(frame, before)
