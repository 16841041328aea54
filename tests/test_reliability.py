"""Reliability: messy input gets a documented error or a correct result, never
anything else; nothing is mutated or lost; results are reproducible; memory
stays bounded."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.utils._param_validation import InvalidParameterError

from skdeita import DeitaSelector, deita_select

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


# -- determinism -------------------------------------------------------------------

_RUN = """
import hashlib, sys, numpy as np, pandas as pd
from skdeita import DeitaSelector
rng = np.random.default_rng(3)
df = pd.DataFrame({"embedding": list(rng.normal(size=(3000, 16)).astype(np.float32)),
                   "evol_instruction_score": rng.integers(1, 6, 3000).astype(float),
                   "evol_response_score": rng.integers(1, 6, 3000).astype(float)})
out = DeitaSelector(data_budget=400, output="annotate").fit_transform(df)
cols = ["deita_score", "nearest_neighbor_distance", "deita_selected", "deita_rank"]
print(hashlib.sha256(pd.util.hash_pandas_object(out[cols]).values.tobytes()).hexdigest())
"""


def test_same_input_gives_identical_output_across_processes():
    runs = {
        subprocess.run(
            [sys.executable, "-c", _RUN], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(runs) == 1


def test_row_permutation_gives_the_same_selected_set_without_ties():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "embedding": list(rng.normal(size=(400, 8))),
            "evol_instruction_score": rng.uniform(1, 6, 400),
            "evol_response_score": rng.uniform(1, 6, 400),
        }
    )
    sel = DeitaSelector(data_budget=60, diversity_threshold=0.2)
    first = sel.fit_transform(df).index.tolist()
    shuffled = sel.fit_transform(df.sample(frac=1.0, random_state=7)).index.tolist()
    assert shuffled == first  # same rows, in the same (score) order


def test_ties_keep_input_order_so_a_permutation_changes_which_tie_wins():
    df = pd.DataFrame(
        {
            "embedding": [[1.0, 0.0], [1.0, 0.01]],
            "evol_instruction_score": [2.0, 2.0],
            "evol_response_score": [1.0, 1.0],
        }
    )
    sel = DeitaSelector(data_budget=1)
    assert sel.fit_transform(df).index.tolist() == [0]
    assert sel.fit_transform(df.iloc[::-1]).index.tolist() == [1]


# -- memory -----------------------------------------------------------------------------

_RSS = """
import json, numpy as np
from skdeita import deita_select
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmHWM"))
n, d = 200_000, 384
rng = np.random.default_rng(0)
centers = rng.standard_normal((n // 50, d), dtype=np.float32)
emb = np.empty((n, d), dtype=np.float32)
for s in range(0, n, 50_000):
    emb[s:s + 50_000] = centers[rng.integers(0, len(centers), 50_000)]
    emb[s:s + 50_000] += 0.2 * rng.standard_normal((50_000, d), dtype=np.float32)
scores = rng.uniform(size=n)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
res = deita_select(emb, scores, data_budget=2000)
print(json.dumps({"peak": hwm(), "matrix": emb.nbytes, "kept": len(res.selected)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc peak RSS")
def test_selection_peak_memory_stays_under_twice_the_matrix():
    out = subprocess.run([sys.executable, "-c", _RSS], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["kept"] == 2000
    assert r["peak"] < 2 * r["matrix"], r


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


# =====================================================================================
# Round 2 (issue 13): the promise at the edges. A bad parameter, number, text, file
# or option is a clear error naming it, raised before any model loads; every finite
# input gives the mathematically right selection; nothing is left half-written.
# =====================================================================================

NO_MODEL = "/nonexistent/skdeita-model"  # any attempt to load it is a ModelNotFoundError
LOAD_ERRORS = ("Could not load model", "not available offline", "Traceback")

_EMB = np.array(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
)
_SCORES = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
_LABELS = ["a", "b", "c", "d", "e"]


def _with_row(emb, position, row):
    rows = [list(r) for r in emb]
    rows[position] = row
    return rows


def _selection_frame(emb=None, instruction=None, response=None) -> pd.DataFrame:
    emb = _EMB if emb is None else emb
    return pd.DataFrame(
        {
            "embedding": pd.Series([r for r in emb], dtype=object, index=_LABELS),
            "evol_instruction_score": pd.Series(
                _SCORES if instruction is None else instruction, index=_LABELS
            ),
            "evol_response_score": pd.Series(
                np.ones(5) if response is None else response, index=_LABELS
            ),
        }
    )


def _select_with(target: str, params=None, emb=None, scores=None, response=None):
    """Run the function or the estimator on the same data and parameters."""
    params = dict(params or {})
    if target == "function":
        return deita_select(
            _EMB if emb is None else emb, _SCORES if scores is None else scores, **params
        )
    frame = _selection_frame(emb, scores, response)
    return DeitaSelector(show_progress_bar=False, **params).fit_transform(frame)


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


# -- 3. text: templates and invalid Unicode ----------------------------------------------

_BAD_TEMPLATES = [
    ("{instruction}\n\n{response", 15, "not a valid format string"),
    ("{instruction}} and", 13, "not a valid format string"),
    ("stray } {instruction}", 6, "not a valid format string"),
    ("{instruction} {}", 14, "positional field"),
    ("{0}", 0, "positional field"),
    ("Q: {instruction:>20}", 3, "format spec"),
    ("Q: {instruction!r}", 3, "conversion"),
    ("Q: {instruction.upper}", 3, "attribute"),
]


@pytest.mark.parametrize(("template", "position", "what"), _BAD_TEMPLATES)
def test_a_bad_embedding_template_names_the_parameter_and_position_before_loading(
    template, position, what
):
    from skdeita import EmbeddingTransformer

    frame = pd.DataFrame({"instruction": ["q"], "response": ["r"]})
    with pytest.raises(ValueError) as info:
        EmbeddingTransformer(NO_MODEL, template=template).fit(frame)
    message = str(info.value)
    assert message.startswith("template=") and f"at position {position}" in message
    assert what in message


@pytest.mark.parametrize(("template", "position", "what"), _BAD_TEMPLATES[:4])
def test_a_bad_ifd_prompt_template_names_the_parameter_and_position(template, position, what):
    from skdeita import IFDScorer

    frame = pd.DataFrame({"instruction": ["q"], "response": ["r"]})
    with pytest.raises(ValueError) as info:
        IFDScorer(NO_MODEL, prompt_template=template.replace("response", "instruction")).fit(frame)
    assert "prompt_template=" in str(info.value) and f"at position {position}" in str(info.value)


_SURROGATE = "lone \ud800 surrogate"


def _texts(*values) -> pd.Series:
    # pandas' Arrow strings reject a lone surrogate outright; object columns hold it.
    return pd.Series(list(values), dtype=object, index=["r0", "r1"])


def _surrogate_cases():
    from skdeita import ComplexityScorer, EmbeddingTransformer, PairRMRanker, QualityScorer

    conv_ok = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    conv_bad = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SURROGATE}]
    conv_bad_user = [{"role": "user", "content": _SURROGATE}]
    return {
        "embedder text_col": (
            EmbeddingTransformer(NO_MODEL),
            {"text": _texts("ok", _SURROGATE)},
            ["'text'", "['r1']"],
        ),
        "embedder template": (
            EmbeddingTransformer(NO_MODEL, template="{instruction} {response}"),
            {"instruction": _texts("q", "q"), "response": _texts(_SURROGATE, "r")},
            ["'response'", "['r0']"],
        ),
        "embedder messages": (
            EmbeddingTransformer(NO_MODEL, messages_col="m"),
            {"m": _texts(conv_ok, conv_bad)},
            ["'m'", "['r1']"],
        ),
        "ranker input": (
            PairRMRanker(NO_MODEL),
            {"input": _texts("ok", _SURROGATE), "candidates": _texts(["a", "b"], ["c", "d"])},
            ["'input'", "['r1']"],
        ),
        "ranker candidates": (
            PairRMRanker(NO_MODEL),
            {"input": _texts("ok", "ok"), "candidates": _texts(["a", _SURROGATE], ["c", "d"])},
            ["'candidates'", "'r0'"],
        ),
        "complexity instruction": (
            ComplexityScorer(NO_MODEL),
            {"instruction": _texts("ok", _SURROGATE)},
            ["'instruction'", "['r1']"],
        ),
        "complexity messages": (
            ComplexityScorer(NO_MODEL, messages_col="m"),
            {"m": _texts(conv_bad_user, conv_ok)},
            ["'m'", "['r0']"],
        ),
        "quality response": (
            QualityScorer(NO_MODEL),
            {"instruction": _texts("q", "q"), "response": _texts("ok", _SURROGATE)},
            ["'response'", "['r1']"],
        ),
        "quality messages": (
            QualityScorer(NO_MODEL, messages_col="m"),
            {"m": _texts(conv_ok, conv_bad)},
            ["'m'", "['r1']"],
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "embedder text_col",
        "embedder template",
        "embedder messages",
        pytest.param("ranker input", marks=pytest.mark.pairrm),
        pytest.param("ranker candidates", marks=pytest.mark.pairrm),
        "complexity instruction",
        "complexity messages",
        "quality response",
        "quality messages",
    ],
)
def test_a_lone_surrogate_is_named_by_row_before_any_model_loads(case):
    estimator, columns, names = _surrogate_cases()[case]
    frame = pd.DataFrame(columns)
    with pytest.raises(ValueError, match="not valid Unicode") as info:
        estimator.fit(frame)  # fits load nothing before the check; NO_MODEL would fail
    for name in names:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="not valid Unicode"):
        estimator.fit_transform(frame)


def test_an_ifd_scorer_names_a_lone_surrogate_before_loading():
    from skdeita import IFDScorer

    frame = pd.DataFrame({"instruction": _texts("q", "q"), "response": _texts("ok", _SURROGATE)})
    with pytest.raises(ValueError, match=r"'response'.*not valid Unicode.*\['r1'\]"):
        IFDScorer(NO_MODEL).fit_transform(frame)


# -- 4. validation before load: the helpers and transform --------------------------------


@pytest.mark.pairrm
@pytest.mark.parametrize(
    ("call", "exc_type", "fragment"),
    [
        (lambda r: r.compare(["q"], [_SURROGATE], ["b"]), ValueError, "candidates_a"),
        (lambda r: r.compare([_SURROGATE], ["a"], ["b"]), ValueError, "inputs"),
        (lambda r: r.compare([None], ["a"], ["b"]), TypeError, "inputs"),
        (lambda r: r.compare(["q"], ["a", "b"], ["c"]), ValueError, "same length"),
        (lambda r: r.compare(["q"], ["a"], [3]), TypeError, "candidates_b"),
        (lambda r: r.score_candidates(["q"], [["a", _SURROGATE]]), ValueError, "candidates"),
        (lambda r: r.score_candidates(["q"], [[]]), ValueError, "no candidates"),
        (lambda r: r.score_candidates(["q"], ["ab"]), TypeError, "list of strings"),
        (lambda r: r.score_candidates(["q"], [["a", None]]), TypeError, "list of strings"),
        (lambda r: r.score_candidates(["q", "r"], [["a"]]), ValueError, "same length"),
        (lambda r: r.score_candidates([1], [["a"]]), TypeError, "inputs"),
    ],
)
def test_ranker_helpers_check_their_input_before_loading(call, exc_type, fragment):
    from skdeita import PairRMRanker

    with pytest.raises(exc_type, match=re.escape(fragment)):
        call(PairRMRanker(NO_MODEL))


@pytest.mark.pairrm
def test_ranker_helpers_would_load_the_model_on_good_input():
    """The control of the test above: a good call reaches the (missing) model."""
    from skdeita import ModelNotFoundError, PairRMRanker

    with pytest.raises(ModelNotFoundError):
        PairRMRanker(NO_MODEL).score_candidates(["q"], [["a", "b"]])


@pytest.mark.pairrm
@pytest.mark.xfail(
    strict=True,
    reason="PairRMRanker.compare/score_candidates do not validate the estimator's "
    "parameters (nor a bare str as a list) before loading: fix in pairrm/_ranker.py, "
    "then drop this mark",
)
@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.set_params(batch_size=0).score_candidates(["q"], [["a"]]),
        lambda r: r.compare("qq", "ab", "cd"),
    ],
    ids=["bad parameter", "bare strings"],
)
def test_ranker_helpers_check_parameters_and_bare_strings_before_loading(call):
    from skdeita import PairRMRanker

    with pytest.raises((TypeError, ValueError)) as info:
        call(PairRMRanker(NO_MODEL))
    assert not isinstance(info.value, OSError)


def _fitted_without_model(estimator, frame):
    """``estimator`` fitted on ``frame``, then pointed at a model that does not
    exist (as a pickle moved to a machine without the model)."""
    import pickle

    fitted = pickle.loads(pickle.dumps(estimator.fit(frame)))
    return fitted.set_params(model=NO_MODEL)


@pytest.fixture(scope="module")
def unloadable_estimators(minilm_path, tiny_ranker_dir):
    """Fitted estimators whose model is gone, with one good frame each."""
    from skdeita import ComplexityScorer, EmbeddingTransformer, PairRMRanker, QualityScorer

    text = pd.DataFrame({"text": ["a"]})
    rank = pd.DataFrame({"input": ["a"], "candidates": [["x", "y"]]})
    pair = pd.DataFrame({"instruction": ["a"], "response": ["b"]})
    return {
        "embedder": (_fitted_without_model(EmbeddingTransformer(minilm_path), text), text),
        "ranker": (_fitted_without_model(PairRMRanker(str(tiny_ranker_dir)), rank), rank),
        "complexity": (ComplexityScorer(NO_MODEL).fit(pair), pair),
        "quality": (QualityScorer(NO_MODEL).fit(pair), pair),
    }


def _one(value) -> pd.Series:
    return pd.Series([value], dtype=object)


_BAD_TRANSFORM_INPUT = {
    "embedder": [
        (lambda f: f.rename(columns={"text": "txt"}), ValueError, "'text' (text_col)"),
        (lambda f: f.assign(text=pd.Series([None], dtype=object)), ValueError, "missing"),
        (lambda f: f.assign(text=[3]), TypeError, "must hold strings"),
        (lambda f: f.assign(text=pd.Series([_SURROGATE], dtype=object)), ValueError, "Unicode"),
        (lambda f: f.to_numpy(), TypeError, "must hold strings"),
    ],
    "ranker": [
        (lambda f: f.drop(columns="input"), ValueError, "'input' (input_col)"),
        (lambda f: f.assign(candidates=[[]]), ValueError, "missing/empty candidate"),
        (lambda f: f.assign(candidates=["x"]), TypeError, "list of strings"),
        (lambda f: f.assign(input=pd.Series([_SURROGATE], dtype=object)), ValueError, "Unicode"),
    ],
    "complexity": [
        (lambda f: f.drop(columns="instruction"), ValueError, "'instruction'"),
        (lambda f: f.assign(instruction=pd.Series([None], dtype=object)), ValueError, "missing"),
        (
            lambda f: f.assign(instruction=pd.Series([_SURROGATE], dtype=object)),
            ValueError,
            "Unicode",
        ),
    ],
    "quality": [
        (lambda f: f.drop(columns="response"), ValueError, "'response'"),
        (lambda f: f.assign(response=[1.5]), TypeError, "must hold strings"),
        (lambda f: f.assign(response=pd.Series([_SURROGATE], dtype=object)), ValueError, "Unicode"),
    ],
}


@pytest.mark.pairrm
@pytest.mark.parametrize(
    ("name", "case"),
    [(name, i) for name, cases in _BAD_TRANSFORM_INPUT.items() for i in range(len(cases))],
)
def test_transform_checks_its_input_before_loading_the_model(unloadable_estimators, name, case):
    from skdeita import ModelNotFoundError

    estimator, good = unloadable_estimators[name]
    spoil, exc_type, fragment = _BAD_TRANSFORM_INPUT[name][case]
    with pytest.raises(exc_type, match=re.escape(fragment)):
        estimator.transform(spoil(good.copy()))
    with pytest.raises(ModelNotFoundError):  # the control: good input reaches the load
        estimator.transform(good)


# -- 5. the command line ---------------------------------------------------------------


def _cli(argv, capsys):
    from skdeita.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.fixture
def cli_files(tmp_path):
    """Inputs for the command line: good ones and one of each kind of bad file."""

    def jsonl(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    texts = [
        {
            "instruction": f"question {i}",
            "response": f"answer {i}",
            "evol_instruction_score": 1.0 + i,
            "evol_response_score": 2.0,
        }
        for i in range(4)
    ]
    files = {
        "texts": jsonl("texts.jsonl", texts),
        "raw": jsonl("raw.jsonl", [{k: r[k] for k in ("instruction", "response")} for r in texts]),
        "rank": jsonl("rank.jsonl", [{"input": "q", "candidates": ["a", "b"]}] * 3),
        "rank_empty": jsonl("rank_empty.jsonl", [{"input": "q", "candidates": []}]),
        "nan_score": jsonl(
            "nan_score.jsonl",
            texts[:2] + [{**texts[2], "evol_instruction_score": None, "evol_response_score": None}],
        ),
        "not_object": jsonl("not_object.jsonl", [texts[0], [1, 2]]),
    }
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(texts[0]) + "\n\n" + '{"instruction": "q",\n')
    files["bad_json"] = bad
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(json.dumps(texts[0]) + "\n" + '{"instruction": "a \\ud800 b"}\n')
    files["surrogate"] = surrogate
    not_utf8 = tmp_path / "latin1.jsonl"
    not_utf8.write_bytes(json.dumps(texts[0]).encode() + b'\n{"instruction": "caf\xe9"}\n')
    files["not_utf8"] = not_utf8
    csv = tmp_path / "pool.csv"
    csv.write_text(
        "embedding,evol_instruction_score,evol_response_score\n"
        '"[1.0, 0.0]",1,1\n"[0.0, 1.0]",2,2\n"oops",3,3\n'
    )
    files["bad_csv"] = csv
    (tmp_path / "pool.txt").write_text("x")
    files["txt"] = tmp_path / "pool.txt"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    (tmp_path / "out.jsonl").mkdir()  # a folder with a file's name
    return files


_SELECT = ["select", "{texts}", "-o", "{out}", "--budget", "2", "--model", NO_MODEL]
_CURATE = [
    "curate",
    "{raw}",
    "-o",
    "{out}",
    "--budget",
    "2",
    "--complexity-model",
    NO_MODEL,
    "--quality-model",
    NO_MODEL,
    "--embedding-model",
    NO_MODEL,
]
_RANK = ["rank", "{rank}", "-o", "{out}", "--model", NO_MODEL]


def _argv(base, extra=(), **replace):
    argv = list(base) + list(extra)
    for key, value in replace.items():
        argv[argv.index("{" + key + "}")] = value
    return argv


# (argv, what the one-line error must say)
_CLI_CASES = {
    "select --budget inf": (_argv(_SELECT, ["--budget", "inf"]), "--budget"),
    "select --budget nan": (_argv(_SELECT, ["--budget", "nan"]), "--budget"),
    "select --budget 0": (_argv(_SELECT, ["--budget", "0"]), "--budget"),
    "select --budget 1.5": (_argv(_SELECT, ["--budget", "1.5"]), "--budget"),
    "select --budget ten": (_argv(_SELECT, ["--budget", "ten"]), "--budget"),
    "select --threshold -0.1": (_argv(_SELECT, ["--threshold", "-0.1"]), "--threshold"),
    "select --threshold nan": (_argv(_SELECT, ["--threshold", "nan"]), "--threshold"),
    "select --metric nope": (_argv(_SELECT, ["--metric", "nope"]), "distance_metric"),
    "select --metric mahalanobis": (_argv(_SELECT, ["--metric", "mahalanobis"]), "distance_metric"),
    "select empty score columns": (
        _argv(_SELECT, ["--instruction-score-col", "", "--response-score-col", ""]),
        "--instruction-score-col",
    ),
    "select --embedding-col ''": (_argv(_SELECT, ["--embedding-col", ""]), "--embedding-col"),
    "select unclosed template": (
        _argv(_SELECT, ["--text-template", "{instruction}\n{response"]),
        "--text-template='{instruction}\\n{response' is not a valid format string",
    ),
    "select stray brace template": (
        _argv(_SELECT, ["--text-template", "x} {instruction}"]),
        "at position 1",
    ),
    "select positional template": (_argv(_SELECT, ["--text-template", "{}"]), "positional"),
    "select format spec template": (
        _argv(_SELECT, ["--text-template", "{instruction:>9}"]),
        "format spec",
    ),
    "select template naming no column": (
        _argv(_SELECT, ["--text-template", "{nope}"]),
        "'nope' (template field {nope})",
    ),
    "select missing score column": (
        _argv(_SELECT, ["--instruction-score-col", "complexity"]),
        "'complexity' (instruction_score_col)",
    ),
    "select missing messages column": (_argv(_SELECT, ["--messages-col", "conv"]), "'conv'"),
    "select NaN score": (_argv(_SELECT, texts="{nan_score}"), "no score"),
    "select malformed JSONL": (_argv(_SELECT, texts="{bad_json}"), "line 3 is not valid JSON"),
    "select JSONL line not an object": (_argv(_SELECT, texts="{not_object}"), "line 2: expected"),
    "select lone surrogate in JSONL": (_argv(_SELECT, texts="{surrogate}"), "line 2: a \\uD800"),
    "select JSONL not UTF-8": (_argv(_SELECT, texts="{not_utf8}"), "line 2 is not UTF-8"),
    "select missing file": (_argv(_SELECT, texts="{tmp}/missing.jsonl"), "no such file"),
    "select unknown extension": (_argv(_SELECT, texts="{txt}"), "unknown file type '.txt'"),
    "select CSV embedding not JSON": (
        _argv(_SELECT, texts="{bad_csv}"),
        "not a JSON list at row 2 (line 4",
    ),
    "select output is a folder": (_argv(_SELECT, out="{tmp}/full"), "existing folder"),
    "select output folder with a file name": (
        _argv(_SELECT, out="{tmp}/out.jsonl"),
        "existing folder",
    ),
    "select output in a missing folder": (
        _argv(_SELECT, out="{tmp}/nowhere/out.jsonl"),
        "does not exist",
    ),
    "select output is the input": (_argv(_SELECT, out="{texts}"), "is the input file"),
    "select output unknown extension": (_argv(_SELECT, out="{tmp}/o.txt"), "unknown file type"),
    "curate --budget inf": (_argv(_CURATE, ["--budget", "inf"]), "--budget"),
    "curate --threshold -1": (_argv(_CURATE, ["--threshold", "-1"]), "--threshold"),
    "curate --metric nope": (_argv(_CURATE, ["--metric", "nope"]), "distance_metric"),
    "curate --batch-size 0": (_argv(_CURATE, ["--batch-size", "0"]), "--batch-size"),
    "curate --instruction-col nope": (
        _argv(_CURATE, ["--instruction-col", "prompt"]),
        "'prompt' (instruction_col)",
    ),
    "curate --response-col ''": (_argv(_CURATE, ["--response-col", ""]), "--response-col"),
    "curate --text-template unclosed": (
        _argv(_CURATE, ["--text-template", "{instruction"]),
        "at position 0",
    ),
    "curate --device nonsense": (_argv(_CURATE, ["--device", "gpu0"]), "--device='gpu0'"),
    "curate --device cuda:7": (_argv(_CURATE, ["--device", "cuda:7"]), "--device='cuda:7'"),
    "curate missing text column": (_argv(_CURATE, raw="{rank}"), "'instruction'"),
    "curate lone surrogate": (_argv(_CURATE, raw="{surrogate}"), "line 2"),
    "curate malformed JSONL": (_argv(_CURATE, raw="{bad_json}"), "line 3"),
    "curate output is a folder": (_argv(_CURATE, out="{tmp}/full"), "existing folder"),
    "curate output is the input": (_argv(_CURATE, out="{raw}"), "is the input file"),
    "rank missing input column": (_argv(_RANK, ["--input-col", "prompt"]), "'prompt'"),
    "rank empty candidates column": (_argv(_RANK, ["--candidates-col", ""]), "candidates_col"),
    "rank empty candidate list": (_argv(_RANK, rank="{rank_empty}"), "empty candidate list"),
    "rank --device nonsense": (_argv(_RANK, ["--device", "gpu0"]), "--device='gpu0'"),
    "rank malformed JSONL": (_argv(_RANK, rank="{bad_json}"), "line 3"),
    "rank output is the input": (_argv(_RANK, out="{rank}"), "is the input file"),
    "rank output in a missing folder": (_argv(_RANK, out="{tmp}/no/o.jsonl"), "does not exist"),
}


def _fill(argv, files, tmp_path):
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp_path)}
    names.setdefault("out", str(tmp_path / "curated.jsonl"))
    filled = []
    for arg in argv:
        for key, value in names.items():
            arg = arg.replace("{" + key + "}", value)
        filled.append(arg)
    return filled


@pytest.mark.parametrize("case", sorted(_CLI_CASES))
def test_cli_rejects_bad_input_in_one_line_with_exit_2_before_any_model(
    case, cli_files, tmp_path, capsys
):
    argv, fragment = _CLI_CASES[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _cli(_fill(argv, cli_files, tmp_path), capsys)
    assert code == 2, err
    assert err.startswith("skdeita") and "\n" not in err, err
    assert fragment in err, err
    assert not any(marker in err for marker in LOAD_ERRORS), err  # nothing was loaded
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing was written


@pytest.mark.parametrize("base", [_SELECT, _CURATE, _RANK], ids=["select", "curate", "rank"])
def test_cli_good_input_reaches_the_missing_model(base, cli_files, tmp_path, capsys):
    """The control of the test above: without the defect the command goes on to
    load the (missing) model, so each error above came before any load."""
    code, err = _cli(_fill(base, cli_files, tmp_path), capsys)
    assert code == 2
    assert err.splitlines()[-1].startswith("skdeita: error:")
    assert any(marker in err for marker in LOAD_ERRORS[:2]), err
    assert not (tmp_path / "curated.jsonl").exists()


@pytest.fixture(scope="module")
def big_pool(tmp_path_factory):
    """120,000 rows with 2-D embeddings: a second or two of reading and writing."""
    folder = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    emb = np.round(rng.normal(size=(120_000, 2)), 3).tolist()
    scores = rng.integers(1, 6, size=(120_000, 2)).tolist()
    lines = (
        f'{{"embedding": [{a}, {b}], "evol_instruction_score": {c}, "evol_response_score": {d}}}\n'
        for (a, b), (c, d) in zip(emb, scores, strict=True)
    )
    (folder / "pool.jsonl").write_text("".join(lines))
    return folder / "pool.jsonl"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_while_writing_leaves_no_output_and_no_temporary_file(big_pool, tmp_path, signame):
    import os
    import signal
    import time

    out = tmp_path / "curated.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skdeita", "select", str(big_pool), "-o", str(out)]
        + ["--budget", "1000", "--threshold", "0", "--annotate", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.002)  # wait for the temporary file: the write has begun
    assert proc.poll() is None, "the command ended before writing; use a bigger input"
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert list(tmp_path.iterdir()) == []  # neither the output nor a .tmp file


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ImportError("The scorers need the 'torch' package. Install it with: pip install x"), 2),
        (OSError("disk full"), 2),
        ("scoring", 1),
    ],
    ids=["missing extra", "OS error", "scoring error"],
)
def test_cli_reports_a_failure_inside_the_run_in_one_line(
    error, code, cli_files, tmp_path, capsys, monkeypatch
):
    from skdeita.cli import _select
    from skdeita.exceptions import ScoringError

    def fail(steps, frame):
        raise (
            ScoringError("ComplexityScorer could not score row 'r1'")
            if error == "scoring"
            else error
        )

    monkeypatch.setattr(_select, "run_pipeline", fail)
    got, err = _cli(_fill(_SELECT, cli_files, tmp_path), capsys)
    assert got == code
    assert err.startswith("skdeita: error:") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "curated.jsonl").exists()


def test_make_deita_pipeline_checks_the_selection_parameters_before_loading():
    from skdeita import make_deita_pipeline

    pipe = make_deita_pipeline(
        0, complexity_model=NO_MODEL, quality_model=NO_MODEL, embedding_model=NO_MODEL
    )
    with pytest.raises(ValueError, match="data_budget"):
        pipe.fit(pd.DataFrame({"instruction": ["q"], "response": ["r"]}))
