"""deita_select validates exactly as DeitaSelector (issue 13): a bad parameter,
array or row is the same error, of the same type, naming what is wrong."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skdeita import deita_select

from .conftest import _EMB, _SCORES, _select_with


def _with_row(emb, position, row):
    rows = [list(r) for r in emb]
    rows[position] = row
    return rows


# -- 1. deita_select validates exactly as DeitaSelector --------------------------------

_PARAMETER_CASES = [
    ({"data_budget": 0}, ValueError),
    ({"data_budget": -3}, ValueError),
    ({"data_budget": True}, TypeError),
    ({"data_budget": False}, ValueError),
    ({"data_budget": 1.5}, ValueError),
    ({"data_budget": "10"}, ValueError),
    ({"data_budget": float("nan")}, ValueError),
    ({"data_budget": float("inf")}, ValueError),
    ({"diversity_threshold": float("nan")}, ValueError),
    ({"diversity_threshold": -0.1}, ValueError),
    ({"diversity_threshold": float("inf")}, ValueError),
    ({"diversity_threshold": True}, TypeError),
    ({"diversity_threshold": "0.1"}, ValueError),
    ({"distance_metric": "nope"}, ValueError),
    ({"distance_metric": "mahalanobis"}, ValueError),
    ({"distance_metric": "seuclidean"}, ValueError),
    ({"neighbors": "kept"}, ValueError),
    ({"block_size": 0}, ValueError),
    ({"normalize_embeddings": "yes"}, ValueError),
]


@pytest.mark.parametrize("target", ["function", "estimator"])
@pytest.mark.parametrize(("params", "exc_type"), _PARAMETER_CASES, ids=repr)
def test_a_bad_selection_parameter_is_the_same_error_naming_it(target, params, exc_type):
    (name,) = params
    with pytest.raises(exc_type, match=name) as info:
        _select_with(target, params)
    assert type(info.value) is type(_error_of("function", params))
    assert type(info.value) is type(_error_of("estimator", params))


def _error_of(target, params=None, **data):
    try:
        _select_with(target, params, **data)
    except (TypeError, ValueError) as exc:
        return exc
    raise AssertionError(f"{target} accepted {params} {list(data)}")


_NAN_ROW, _INF_ROW, _ZERO_ROW = [np.nan, 1.0, 0.0], [0.0, np.inf, 1.0], [0.0, 0.0, 0.0]
# (data, exception, the function's names, the estimator's names)
_DATA_CASES = {
    "ragged vectors": (
        {"emb": _with_row(_EMB, 1, [1.0, 0.0])},
        ValueError,
        ["embeddings", "ragged", "positions [1]"],
        ["'embedding'", "ragged", "rows ['b']"],
    ),
    "text in a vector": (
        {"emb": _with_row(_EMB, 2, ["1", "0", "0"])},
        TypeError,
        ["embeddings", "positions [2]"],
        ["'embedding'", "rows ['c']"],
    ),
    "boolean vectors": (
        {"emb": [[True, False, True]] * 5},
        TypeError,
        ["embeddings", "positions [0, 1, 2, 3, 4]"],
        ["'embedding'", "rows ['a', 'b', 'c', 'd', 'e']"],
    ),
    "None in a vector": (
        {"emb": _with_row(_EMB, 4, [None, 1.0, 0.0])},
        TypeError,
        ["embeddings", "positions [4]"],
        ["'embedding'", "rows ['e']"],
    ),
    "NaN row": (
        {"emb": _with_row(_EMB, 2, _NAN_ROW)},
        ValueError,
        ["embeddings", "NaN", "positions [2]"],
        ["'embedding'", "NaN", "rows ['c']"],
    ),
    "inf row": (
        {"emb": _with_row(_EMB, 3, _INF_ROW)},
        ValueError,
        ["embeddings", "inf", "positions [3]"],
        ["'embedding'", "inf", "rows ['d']"],
    ),
    "all-zero row": (
        {"emb": _with_row(_EMB, 1, _ZERO_ROW)},
        ValueError,
        ["embeddings", "all-zero", "positions [1]"],
        ["'embedding'", "all-zero", "rows ['b']"],
    ),
    "text scores": (
        {"scores": pd.Series(["5", "4", "3", "2", "1"], dtype=object).to_numpy()},
        TypeError,
        ["scores", "str"],
        ["'evol_instruction_score'", "str"],
    ),
    "boolean scores": (
        {"scores": np.array([True, False, True, False, True])},
        TypeError,
        ["scores", "bool"],
        ["'evol_instruction_score'", "boolean"],
    ),
    "complex scores": (
        {"scores": _SCORES + 1j},
        TypeError,
        ["scores", "complex"],
        ["'evol_instruction_score'", "complex"],
    ),
    "NaN score": (
        {"scores": np.array([5.0, np.nan, 3.0, 2.0, 1.0]), "response": [1, np.nan, 1, 1, 1]},
        ValueError,
        ["scores", "positions [1]"],
        ["evol_instruction_score", "['b']"],
    ),
    "inf score": (
        {"scores": np.array([5.0, np.inf, 3.0, 2.0, 1.0])},
        ValueError,
        ["scores", "positions [1]"],
        ["'evol_instruction_score'", "rows ['b']"],
    ),
    "integer scores beyond 2**53": (
        {"scores": np.array([2**53 + 1, 2**53, 3, 2, 1], dtype=np.int64)},
        ValueError,
        ["scores", "2**53", "positions [0]"],
        ["'evol_instruction_score'", "2**53", "rows ['a']"],
    ),
}


@pytest.mark.parametrize("case", sorted(_DATA_CASES))
def test_bad_data_is_the_same_error_from_the_function_and_the_estimator(case):
    data, exc_type, function_names, estimator_names = _DATA_CASES[case]
    fn_data = {k: v for k, v in data.items() if k != "response"}
    from_function = _error_of("function", **fn_data)
    from_estimator = _error_of("estimator", **data)
    assert type(from_function) is exc_type and type(from_estimator) is exc_type
    for name in function_names:
        assert name in str(from_function), str(from_function)
    for name in estimator_names:
        assert name in str(from_estimator), str(from_estimator)


@pytest.mark.parametrize("target", ["function", "estimator"])
@pytest.mark.parametrize(
    ("reference", "names"),
    [
        (np.ones((2, 4)), ["reference", "4 dimensions"]),
        (np.ones(3), ["reference", "2-D"]),
        (np.array([[1.0, 0.0, 0.0], [np.nan, 1.0, 0.0]]), ["reference", "positions [1]"]),
        (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), ["reference", "all-zero"]),
    ],
    ids=["wrong dimension", "1-D", "NaN row", "zero row"],
)
def test_a_bad_reference_is_a_value_error_naming_it(target, reference, names):
    with pytest.raises(ValueError) as info:
        _select_with(target, {"reference": reference})
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("embeddings", "scores", "exc_type", "names"),
    [
        (np.ones(5), _SCORES, ValueError, ["embeddings", "2-D", "(5,)"]),
        (np.ones((5, 3, 1)), _SCORES, ValueError, ["embeddings", "2-D", "(5, 3, 1)"]),
        (np.array([[1, "a", 2]] * 5, dtype=object), _SCORES, TypeError, ["embeddings"]),
        (np.array([["1", "2"]] * 5), _SCORES, TypeError, ["embeddings", "numeric"]),
        (_EMB, _SCORES[:3], ValueError, ["scores", "(3,)"]),
        (_EMB, _SCORES[:, None], ValueError, ["scores", "(5, 1)"]),
    ],
    ids=["1-D", "3-D", "object array", "text array", "short scores", "2-D scores"],
)
def test_deita_select_names_the_array_that_is_malformed(embeddings, scores, exc_type, names):
    with pytest.raises(exc_type) as info:
        deita_select(embeddings, scores)
    for name in names:
        assert name in str(info.value)


def test_deita_select_takes_a_dataframe_of_dimensions_as_a_matrix():
    frame = pd.DataFrame(_EMB, columns=["x", "y", "z"])
    assert (
        deita_select(frame, _SCORES).selected.tolist()
        == deita_select(_EMB, _SCORES).selected.tolist()
    )
