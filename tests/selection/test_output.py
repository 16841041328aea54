"""The output columns, built in one place for pandas and for each Dask partition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skdeita import DeitaSelector
from skdeita.selection._output import added_columns, annotate


def frame(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "embedding": list(rng.normal(size=(n, 3))),
            "evol_instruction_score": rng.uniform(1, 6, n),
            "evol_response_score": rng.uniform(1, 6, n),
        },
        index=pd.RangeIndex(50, 50 + n),
    )


def test_the_selector_adds_exactly_the_declared_columns():
    X = frame()
    for output in ("subset", "annotate"):
        out = DeitaSelector(4, output=output).fit_transform(X)
        assert list(out.columns) == [*X.columns, *added_columns(output)]


def test_annotate_marks_unvisited_rows_nan_and_unkept_rows_na():
    X = frame(n=5)
    out = annotate(
        X, np.arange(5.0), np.array([["a"]] * 5, dtype=object)[:, 0], np.array([3, 1]),
        np.array([np.inf, 0.05]), np.array([3]), np.array([1]),
    )  # fmt: skip
    assert out["nearest_neighbor_distance"].tolist()[1] == 0.05
    assert np.isnan(out["nearest_neighbor_distance"].to_numpy()[[0, 2, 4]]).all()
    assert out["deita_selected"].tolist() == [False, False, False, True, False]
    assert out["deita_rank"].dtype == "Int64"
    assert out["deita_rank"].isna().tolist() == [True, True, True, False, True]
    assert "deita_score" not in X.columns  # the caller's frame is left alone
