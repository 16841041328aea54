"""The output columns, built in one place for pandas and for each Dask partition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skdeita import DeitaSelector
from skdeita.selection._output import Marks, added_columns, annotate


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
        for reference in (None, np.ones((1, 3))):
            selector = DeitaSelector(4, output=output, reference=reference)
            out = selector.fit_transform(X)
            assert list(out.columns) == [*X.columns, *added_columns(output, reference is not None)]
            assert selector.get_feature_names_out().tolist() == list(out.columns)


def test_annotate_writes_the_marks_and_leaves_other_rows_empty():
    X = frame(n=5)
    scores = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    marks = Marks(
        visited=np.array([4, 3, 1]),
        visit=np.array([1, 2, 3]),
        distances=np.array([np.inf, 0.05, 0.5]),
        blocked_by=np.array([None, 54, None], dtype=object),
        blocked_by_reference=None,
        kept=np.array([4, 1]),
        ranks=np.array([1, 2]),
    )
    out = annotate(X, scores, np.full(5, None, dtype=object), marks)
    assert out["deita_status"].tolist() == ["over_budget", "kept", "excluded", "blocked", "kept"]
    assert out["deita_blocked_by"].tolist() == [None, None, None, 54, None]
    assert out["deita_rank"].tolist() == [pd.NA, 2, pd.NA, pd.NA, 1]
    assert out["deita_visit"].tolist() == [pd.NA, 3, pd.NA, 2, 1]
    np.testing.assert_array_equal(
        out["nearest_neighbor_distance"], [np.nan, 0.5, np.nan, 0.05, np.inf]
    )
    assert "deita_score" not in X.columns  # the caller's frame is left alone


def test_the_reference_column_is_added_with_a_reference_only():
    assert "deita_blocked_by_reference" not in added_columns("annotate")
    assert "deita_blocked_by_reference" in added_columns("annotate", reference=True)
    assert added_columns("subset", reference=True) == added_columns("subset")
