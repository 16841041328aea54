"""End to end: Pipeline, GridSearchCV, caching, pickling, PairRM into selection."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FunctionTransformer, Pipeline, make_pipeline

from skdeita import (
    BudgetNotReachedWarning,
    DeitaSelector,
    EmbeddingTransformer,
    PairRMRanker,
    best_candidate,
    metrics,
)
from skdeita.datasets import load_sample
from skdeita.embedding._backends import SentenceTransformerEncoder
from skdeita.pipeline import DeitaPipeline

pytest.importorskip("sentence_transformers")
TEMPLATE = "{instruction}\n\n{response}"


@pytest.fixture(scope="module")
def pool():
    return load_sample()


@pytest.fixture
def encoder_calls(monkeypatch):
    """Count texts reaching the real model, across every clone."""
    calls: list[int] = []
    real = SentenceTransformerEncoder.iter_encode

    def counting(self, texts, batches, **kwargs):
        def counted():
            for batch in batches:
                calls.append(len(batch))
                yield batch

        return real(self, texts, counted(), **kwargs)

    monkeypatch.setattr(SentenceTransformerEncoder, "iter_encode", counting)
    return calls


def pipeline(cache=None, **selector):
    return make_pipeline(
        EmbeddingTransformer(template=TEMPLATE, cache=cache, show_progress_bar=False),
        DeitaSelector(**{"data_budget": 60, "show_progress_bar": False, **selector}),
    )


def test_pipeline_curates_raw_rows_and_keeps_labels(pool):
    out = pipeline().fit_transform(pool)
    assert len(out) == 60 and out.index.isin(pool.index).all()
    assert not out["kind"].isin(["duplicate", "weak"]).any()
    # No two kept rows are near-duplicates of each other.
    emb = np.stack(out["embedding"])
    sims = emb @ emb.T
    np.fill_diagonal(sims, 0)
    assert sims.max() <= 0.9 + 1e-6


def test_grid_search_without_y_picks_a_middle_threshold(pool, tmp_path):
    grid = {"deitaselector__diversity_threshold": [0.0, 0.1, 0.3, 0.8]}
    search = GridSearchCV(pipeline(cache=tmp_path, data_budget=0.2), grid, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        search.fit(pool)
    assert search.best_params_["deitaselector__diversity_threshold"] in (0.1, 0.3)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] < scores.max() and scores[-1] < scores.max()


@pytest.mark.parametrize(
    "scoring",
    [
        metrics.quality_coverage_scorer,
        {
            "coverage": metrics.quality_coverage_scorer,
            "fill": metrics.budget_fill_scorer,
            "quality": metrics.mean_selected_score_scorer,
        },
    ],
)
def test_grid_search_accepts_skdeita_scorers(pool, scoring, tmp_path):
    refit = "coverage" if isinstance(scoring, dict) else True
    search = GridSearchCV(
        pipeline(cache=tmp_path),
        {"deitaselector__diversity_threshold": [0.05, 0.2]},
        cv=2,
        scoring=scoring,
        refit=refit,
    )
    search.fit(pool.head(120))
    assert 0.0 < search.best_score_ <= 1.0  # a coverage
    if isinstance(scoring, dict):
        fill = search.cv_results_["mean_test_fill"]
        assert ((0.0 < fill) & (fill <= 1.0)).all()
        assert (search.cv_results_["mean_test_quality"] >= 1.0).all()  # scores 1-6 squared


def test_memory_and_cache_embed_each_distinct_text_once(pool, tmp_path, encoder_calls):
    texts = pool.head(90)
    pipe = Pipeline(
        [
            (
                "embed",
                EmbeddingTransformer(
                    template=TEMPLATE, cache=tmp_path / "emb", show_progress_bar=False
                ),
            ),
            ("select", DeitaSelector(data_budget=0.3, show_progress_bar=False)),
        ],
        memory=str(tmp_path / "pipe"),
    )
    search = GridSearchCV(pipe, {"select__diversity_threshold": [0.05, 0.1, 0.2]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        search.fit(texts)
    distinct = texts.apply(lambda r: TEMPLATE.format(**r), axis=1).nunique()
    assert sum(encoder_calls) == distinct


def test_embed_once_then_search_only_the_selector(pool, encoder_calls):
    embedded = EmbeddingTransformer(template=TEMPLATE, show_progress_bar=False).fit_transform(pool)
    calls_after_embedding = sum(encoder_calls)
    search = GridSearchCV(
        DeitaSelector(data_budget=0.2), {"diversity_threshold": [0.05, 0.1, 0.2]}, cv=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        search.fit(embedded)
    assert sum(encoder_calls) == calls_after_embedding
    assert search.best_estimator_.n_selected_ > 0


def test_clone_pickle_set_output_and_feature_names_through_pipeline(pool):
    pipe = pipeline().set_output(transform="pandas")
    out = pipe.fit_transform(pool)
    assert pipe.get_feature_names_out().tolist() == list(out.columns)
    again = pickle.loads(pickle.dumps(pipe))
    pd.testing.assert_frame_equal(again.transform(pool), out)
    assert clone(pipe).get_params()["deitaselector__data_budget"] == 60


@pytest.mark.pairrm
def test_pairrm_ranking_feeds_selection_without_llm_scores(tiny_ranker_dir):
    rows = pd.DataFrame(
        {
            "input": [
                "Write a poem about the sea.",
                "Give tips to sleep well.",
                "Write a poem about the sea at night.",
            ],
            "candidates": [
                ["The sea at night.", "Waves.", "Salt and wind."],
                ["Keep a schedule.", "Sleep."],
                ["Night sea.", "Dark water."],
            ],
        },
        index=["a", "b", "c"],
    )
    pipe = make_pipeline(
        PairRMRanker(str(tiny_ranker_dir), return_scores=True, show_progress_bar=False),
        FunctionTransformer(best_candidate),
        EmbeddingTransformer(template=TEMPLATE, show_progress_bar=False),
        DeitaSelector(
            data_budget=2,
            instruction_score_col=None,
            response_score_col="pairrm_quality",
            diversity_threshold=0.05,
        ),
    )
    out = pipe.fit_transform(rows)
    assert out.index.isin(["a", "b", "c"]).all() and len(out) == 2
    assert out["deita_score_computed_with"].iloc[0] == ["pairrm_quality"]
    assert out["deita_score"].is_monotonic_decreasing
    assert out["pairrm_quality"].between(1, 6).all()  # the tiny ranker's scores saturate
    assert set(out["response"]) <= {
        "The sea at night.",
        "Waves.",
        "Salt and wind.",
        "Keep a schedule.",
        "Sleep.",
        "Night sea.",
        "Dark water.",
    }


def test_grid_search_on_real_embeddings_avoids_both_extremes(alpaca_embeddings):
    # 19 models answered the same 805 instructions: near-duplicates abound.
    rng = np.random.default_rng(0)
    rows = rng.choice(len(alpaca_embeddings), 3000, replace=False)
    df = pd.DataFrame(
        {
            "embedding": list(alpaca_embeddings[rows]),
            "evol_instruction_score": rng.uniform(1, 6, 3000),
            "evol_response_score": rng.uniform(1, 6, 3000),
        }
    )
    grid = {"diversity_threshold": [0.0, 0.1, 0.3, 0.5, 0.8]}
    search = GridSearchCV(DeitaSelector(data_budget=0.1), grid, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        search.fit(df)
    assert 0.0 < search.best_params_["diversity_threshold"] < 0.8


# -- DeitaPipeline checks every step through the estimator contract -----------


NO_MODEL = "/nonexistent/skdeita-model"  # loading it would be a ModelNotFoundError


def raw_rows():
    return pd.DataFrame(
        {
            "instruction": ["a", "b", "c"],
            "response": ["x", "y", "z"],
            "evol_instruction_score": [1.0, 2.0, 3.0],
            "evol_response_score": [1.0, 1.0, 1.0],
        }
    )


def test_deita_pipeline_checks_every_parameter_before_any_column():
    pipe = DeitaPipeline(
        [
            ("embed", EmbeddingTransformer(NO_MODEL, template="{prompt}")),  # no such column
            ("select", DeitaSelector(instruction_score_col=None, response_score_col=None)),
        ]
    )
    with pytest.raises(ValueError, match="At least one of instruction_score_col"):
        pipe.fit(raw_rows())


def test_deita_pipeline_checks_the_scores_before_the_embedder_runs():
    rows = raw_rows()
    rows.loc[1, ["evol_instruction_score", "evol_response_score"]] = None
    pipe = DeitaPipeline(
        [("embed", EmbeddingTransformer(NO_MODEL, template=TEMPLATE)), ("select", DeitaSelector())]
    )
    with pytest.raises(ValueError, match=r"Rows \[1\] have no score"):
        pipe.fit_transform(rows)


def test_deita_pipeline_checks_a_dask_dataframes_meta_before_any_step_runs():
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(raw_rows(), npartitions=1)
    pipe = DeitaPipeline(
        [
            ("embed", EmbeddingTransformer(NO_MODEL, template=TEMPLATE)),
            ("select", DeitaSelector(response_score_col="quality")),
        ]
    )
    with pytest.raises(ValueError, match=r"'quality' \(response_score_col\)"):
        pipe.fit(ddf)
