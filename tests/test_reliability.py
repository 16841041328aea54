"""Reliability: messy input gets a documented error or a correct result, never
anything else; nothing is mutated or lost; results are reproducible; memory
stays bounded."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
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
