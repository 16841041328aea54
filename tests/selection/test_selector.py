"""DeitaSelector: the estimator around deita_select."""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from skdeita import BudgetNotReachedWarning, DeitaSelector
from tests._reference import reference_select

# scikit-learn's API checks run on every estimator in tests/test_common.py.


def make_frame(n=200, dim=8, seed=0, index=None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim))
    emb = centers[rng.integers(0, 10, n)] + 0.25 * rng.normal(size=(n, dim))
    return pd.DataFrame(
        {
            "instruction": [f"q{i}" for i in range(n)],
            "embedding": list(emb.astype(np.float32)),
            "evol_instruction_score": rng.integers(1, 6, n).astype(float),
            "evol_response_score": rng.uniform(1, 6, n).round(2),
        },
        index=index if index is not None else pd.RangeIndex(100, 100 + n),
    )


# -- the seed's worked example -------------------------------------------------


def test_seed_example_reproduces_distilabel_in_dataset_mode(seed_frame):
    out = DeitaSelector(data_budget=1, diversity_threshold=0.9, neighbors="dataset").fit_transform(
        seed_frame
    )
    assert out.index.tolist() == [1]
    row = out.loc[1]
    assert row["deita_score"] == 0.25
    assert row["deita_score_computed_with"] == ["evol_instruction_score", "evol_response_score"]
    assert row["nearest_neighbor_distance"] == 1.9042812683723933


def test_seed_example_keeps_best_row_first_in_paper_mode(seed_frame):
    out = DeitaSelector(data_budget=1).fit_transform(seed_frame)
    assert out.index.tolist() == [3]
    assert out["deita_score"].tolist() == [0.48999999999999994]
    assert out["nearest_neighbor_distance"].tolist() == [np.inf]


def test_seed_example_keeps_all_three_with_budget_three(seed_frame):
    # Default threshold: distance 0.1, the paper's similarity 0.9.
    out = DeitaSelector(data_budget=3).fit_transform(seed_frame)
    assert out.index.tolist() == [3, 2, 1]
    np.testing.assert_allclose(out["nearest_neighbor_distance"], [np.inf, 0.2545113, 1.9042813])


# -- behaviour -------------------------------------------------------------------


def test_subset_equals_reference_loop_and_keeps_labels():
    df = make_frame()
    out = DeitaSelector(data_budget=30, diversity_threshold=0.05).fit_transform(df)
    scores = (df["evol_instruction_score"] * df["evol_response_score"]).to_numpy()
    kept, seen = reference_select(np.stack(df["embedding"]), scores, 30, 0.05)
    assert out.index.tolist() == df.index[kept].tolist()
    np.testing.assert_allclose(
        out["nearest_neighbor_distance"], [seen[i] for i in kept], atol=1e-12
    )


def test_fit_transform_equals_fit_then_transform():
    df = make_frame()
    sel = DeitaSelector(data_budget=0.2)
    pd.testing.assert_frame_equal(sel.fit_transform(df), clone(sel).fit(df).transform(df))


def test_fit_records_the_selection():
    df = make_frame()
    sel = DeitaSelector(data_budget=25, diversity_threshold=0.01).fit(df)
    out = sel.transform(df)
    assert sel.selected_index_.tolist() == out.index.tolist()
    assert (sel.n_selected_, sel.budget_, sel.budget_reached_) == (25, 25, True)
    assert sel.n_visited_ >= 25
    assert sel.n_features_in_ == 4
    assert sel.get_feature_names_out().tolist() == list(out.columns)


def test_transform_selects_from_the_frame_it_is_given():
    sel = DeitaSelector(data_budget=10).fit(make_frame(seed=0))
    other = make_frame(seed=1, index=pd.RangeIndex(5000, 5200))
    assert sel.transform(other).index.min() >= 5000


def test_annotate_accounts_for_every_row_in_input_order():
    df = make_frame()
    sel = DeitaSelector(data_budget=20, output="annotate")
    out = sel.fit_transform(df)
    assert out.index.equals(df.index)
    assert out["deita_selected"].sum() == 20
    ranked = out.loc[out["deita_selected"]].sort_values("deita_rank")
    assert ranked.index.tolist() == sel.selected_index_.tolist()
    assert out.loc[~out["deita_selected"], "deita_rank"].isna().all()
    assert sel.get_feature_names_out().tolist() == list(out.columns)


def test_fraction_budget_scales_with_rows():
    sel = DeitaSelector(data_budget=0.1, diversity_threshold=0.0)
    assert len(sel.fit_transform(make_frame(n=200))) == 20
    assert len(sel.fit_transform(make_frame(n=95))) == 10  # ceil(9.5)


def test_zero_score_is_a_real_score():
    df = make_frame(n=3)
    df["evol_instruction_score"] = [0.0, 2.0, 3.0]
    out = DeitaSelector(output="annotate", diversity_threshold=0.0).fit_transform(df)
    assert out["deita_score"].iloc[0] == 0.0
    assert out["deita_score_computed_with"].iloc[0] == [
        "evol_instruction_score",
        "evol_response_score",
    ]


def test_one_missing_score_falls_back_to_the_other_with_a_warning():
    df = make_frame(n=4)
    df.loc[101, "evol_response_score"] = np.nan
    with pytest.warns(UserWarning, match="1 rows have only one of the two scores"):
        out = DeitaSelector(output="annotate").fit_transform(df)
    assert out.loc[101, "deita_score"] == df.loc[101, "evol_instruction_score"]
    assert out.loc[101, "deita_score_computed_with"] == ["evol_instruction_score"]


def test_both_scores_missing_raises_naming_rows():
    df = make_frame(n=5)
    df.loc[[102, 104], ["evol_instruction_score", "evol_response_score"]] = np.nan
    with pytest.raises(ValueError, match=r"Rows \[102, 104\] have no score"):
        DeitaSelector().fit(df)


def test_both_scores_missing_can_be_dropped_with_a_warning():
    df = make_frame(n=5)
    df.loc[102, ["evol_instruction_score", "evol_response_score"]] = np.nan
    sel = DeitaSelector(missing_scores="drop", output="annotate", diversity_threshold=0.0)
    with pytest.warns(UserWarning, match=r"1 rows have no score.*\[102\]"):
        out = sel.fit_transform(df)
    assert not out.loc[102, "deita_selected"]
    assert out["deita_selected"].sum() == 4


def test_per_turn_lists_score_as_sum_of_products():
    df = make_frame(n=2)
    df["evol_instruction_score"] = pd.Series([[2.0, 3.0], 4.0], index=df.index, dtype=object)
    df["evol_response_score"] = pd.Series([[5.0, 1.0], 2.0], index=df.index, dtype=object)
    out = DeitaSelector(output="annotate").fit_transform(df)
    assert out["deita_score"].tolist() == [13.0, 8.0]


def test_only_one_score_column_can_be_used():
    df = make_frame(n=10).drop(columns="evol_response_score")
    out = DeitaSelector(response_score_col=None, output="annotate").fit_transform(df)
    assert out["deita_score"].tolist() == df["evol_instruction_score"].tolist()


def test_budget_not_reached_warns_and_is_exposed():
    df = make_frame(n=50)
    sel = DeitaSelector(data_budget=40, diversity_threshold=0.5)
    with pytest.warns(BudgetNotReachedWarning, match=r"kept \d+ of 50 rows, fewer than"):
        out = sel.fit_transform(df)
    assert not sel.budget_reached_ and len(out) == sel.n_selected_ < 40


def test_empty_frame_returns_empty_output_with_columns():
    df = make_frame(n=0)
    out = DeitaSelector(data_budget=0.5).fit_transform(df)
    assert len(out) == 0
    assert {"deita_score", "deita_score_computed_with", "nearest_neighbor_distance"} <= set(
        out.columns
    )


def test_caller_frame_is_not_mutated():
    df = make_frame(n=60)
    before = copy.deepcopy(df)
    for output in ("subset", "annotate"):
        DeitaSelector(data_budget=10, output=output).fit_transform(df)
    pd.testing.assert_frame_equal(df, before)


def test_equal_scores_keep_input_order():
    df = make_frame(n=30)
    df["evol_instruction_score"] = 1.0
    df["evol_response_score"] = 1.0
    out = DeitaSelector(diversity_threshold=0.0, data_budget=30).fit_transform(df)
    assert out.index.tolist() == df.index.tolist()


def test_duplicate_index_labels_are_kept_in_output():
    df = make_frame(n=6, index=pd.Index([7, 7, 8, 8, 9, 9]))
    out = DeitaSelector(diversity_threshold=0.0, output="annotate").fit_transform(df)
    assert out.index.tolist() == [7, 7, 8, 8, 9, 9]


# -- sklearn behaviour on DataFrames -------------------------------------------


def test_fit_returns_self_and_keeps_params():
    sel = DeitaSelector(data_budget=5)
    params = sel.get_params()
    assert sel.fit(make_frame()) is sel
    assert sel.get_params() == params


def test_transform_does_not_change_fitted_state():
    sel = DeitaSelector(data_budget=5).fit(make_frame())
    state = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(sel).items()}
    sel.transform(make_frame(seed=4))
    assert {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in vars(sel).items()} == state


def test_pickle_round_trip_gives_same_output():
    df = make_frame()
    sel = DeitaSelector(data_budget=12).fit(df)
    again = pickle.loads(pickle.dumps(sel))
    pd.testing.assert_frame_equal(again.transform(df), sel.transform(df))


def test_transform_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        DeitaSelector().transform(make_frame())


def test_set_output_pandas_keeps_subset_rows():
    df = make_frame()
    out = DeitaSelector(data_budget=7).set_output(transform="pandas").fit_transform(df)
    assert len(out) == 7 and out.index.isin(df.index).all()


def test_score_prefers_a_middle_threshold_on_clustered_data():
    df = make_frame(n=400, dim=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        scores = {
            t: DeitaSelector(data_budget=20, diversity_threshold=t).fit(df).score(df)
            for t in (0.0, 0.3, 1.5)
        }
    assert scores[0.3] > scores[0.0]
    assert scores[0.3] > scores[1.5]


def test_grid_search_runs_without_y():
    df = make_frame(n=300)
    search = GridSearchCV(
        DeitaSelector(data_budget=0.1), {"diversity_threshold": [0.0, 0.3, 1.5]}, cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        search.fit(df)
    assert search.best_params_ == {"diversity_threshold": 0.3}


# -- bad input ---------------------------------------------------------------------


def test_missing_column_lists_available_ones():
    df = make_frame().rename(columns={"embedding": "embeddings"})
    with pytest.raises(
        ValueError,
        match=r"'embedding' \(embedding_col\).*Did you mean "
        r"'embeddings'.*Available columns",
    ):
        DeitaSelector().fit(df)


def test_non_dataframe_input_is_refused():
    with pytest.raises(TypeError, match="expects a pandas DataFrame"):
        DeitaSelector().fit(np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("cells", "exc", "pattern"),
    [
        ([[1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 1.0]], ValueError, r"ragged.*rows \[1\]"),
        ([[1.0, 0.0], "abc", [0.0, 1.0]], TypeError, r"found str 'abc' at rows \[1\]"),
        ([[1.0, 0.0], ["a", "b"], [0.0, 1.0]], TypeError, r"non-numeric vectors at rows \[1\]"),
        ([[1.0, 0.0], [np.nan, 1.0], [0.0, 1.0]], ValueError, r"NaN or inf at rows \[1\]"),
        ([[1.0, 0.0], [np.inf, 1.0], [0.0, 1.0]], ValueError, r"NaN or inf at rows \[1\]"),
        ([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], ValueError, r"all-zero vectors at rows \[1\]"),
        ([[1.0, 0.0], None, [0.0, 1.0]], TypeError, r"at rows \[1\]"),
    ],
)
def test_bad_embeddings_name_the_row(cells, exc, pattern):
    df = pd.DataFrame(
        {
            "embedding": cells,
            "evol_instruction_score": [1.0, 2, 3],
            "evol_response_score": [1.0, 2, 3],
        }
    )
    with pytest.raises(exc, match=pattern):
        DeitaSelector().fit(df)


def test_string_score_names_column_and_row():
    df = make_frame(n=3)
    df["evol_response_score"] = pd.Series([1.0, "high", 2.0], index=df.index, dtype=object)
    with pytest.raises(TypeError, match=r"'evol_response_score' holds str 'high' at row 101"):
        DeitaSelector().fit(df)


def test_categorical_score_column_is_refused():
    df = make_frame(n=3)
    df["evol_response_score"] = df["evol_response_score"].astype("category")
    with pytest.raises(TypeError, match="categorical dtype"):
        DeitaSelector().fit(df)


@pytest.mark.parametrize(
    "params",
    [
        {"data_budget": 0},
        {"data_budget": 1.5},
        {"diversity_threshold": -0.1},
        {"neighbors": "kept"},
        {"distance_metric": "mahalanobis"},
        {"output": "rows"},
    ],
)
def test_invalid_parameters_are_named(params):
    with pytest.raises(InvalidParameterError, match=list(params)[0]):
        DeitaSelector(**params).fit(make_frame())
