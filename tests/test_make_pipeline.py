"""make_deita_pipeline: a raw pool to a curated subset, on tiny local scorers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from skdeita import (
    ComplexityScorer,
    DeitaSelector,
    EmbeddingTransformer,
    QualityScorer,
    make_deita_pipeline,
)
from skdeita.datasets import load_sample
from skdeita.exceptions import BudgetNotReachedWarning, TruncationWarning
from skdeita.scoring import _first_token

pytestmark = pytest.mark.scoring
pytest.importorskip("sentence_transformers")


@pytest.fixture
def scorers(tiny_scorer_pair):
    return tiny_scorer_pair


@pytest.fixture(scope="module")
def pool():
    return load_sample()[["instruction", "response"]].head(30)


def quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TruncationWarning)
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        return fn(*args)


def test_steps_are_deitas_method_in_order():
    pipe = make_deita_pipeline(10)
    names = [name for name, _ in pipe.steps]
    kinds = [type(step) for _, step in pipe.steps]
    assert names == ["complexity", "quality", "embedding", "selection"]
    assert kinds == [ComplexityScorer, QualityScorer, EmbeddingTransformer, DeitaSelector]
    assert pipe.named_steps["complexity"].model == "hkust-nlp/deita-complexity-scorer"
    assert pipe.named_steps["quality"].model == "hkust-nlp/deita-quality-scorer"
    assert pipe.named_steps["selection"].diversity_threshold == 0.1


def test_pipeline_equals_the_steps_run_by_hand(scorers, pool, minilm_path):
    c, q = scorers
    pipe = make_deita_pipeline(8, complexity_model=c, quality_model=q, show_progress_bar=False)
    got = quiet(pipe.fit_transform, pool)
    by_hand = pool
    for step in (
        ComplexityScorer(c, show_progress_bar=False),
        QualityScorer(q, show_progress_bar=False),
        EmbeddingTransformer(template="{instruction}\n\n{response}", show_progress_bar=False),
        DeitaSelector(8),
    ):
        by_hand = quiet(step.fit_transform, by_hand)
    pd.testing.assert_frame_equal(got, by_hand)
    assert len(got) == 8 and got.index.isin(pool.index).all()


def test_swapping_the_two_scorers_changes_the_scores(scorers, pool):
    c, q = scorers
    right = quiet(make_deita_pipeline(30, complexity_model=c, quality_model=q).fit_transform, pool)
    swapped = quiet(
        make_deita_pipeline(30, complexity_model=q, quality_model=c).fit_transform, pool
    )
    assert not np.allclose(
        right["evol_instruction_score"].sort_index(), swapped["evol_instruction_score"].sort_index()
    )


def test_conversations_go_through_the_pipeline(scorers):
    c, q = scorers
    sharegpt = pd.DataFrame(
        {
            "conversations": [
                [
                    {"from": "human", "value": "Sort [3, 1, 2]."},
                    {"from": "gpt", "value": "[1, 2, 3]"},
                    {"from": "human", "value": "And reversed?"},
                    {"from": "gpt", "value": "[3, 2, 1]"},
                ],
                [{"from": "human", "value": "Bake bread."}, {"from": "gpt", "value": "Knead."}],
            ]
        }
    )
    openai = sharegpt.assign(
        conversations=[
            [
                {"role": "user" if m["from"] == "human" else "assistant", "content": m["value"]}
                for m in conv
            ]
            for conv in sharegpt["conversations"]
        ]
    )
    pipe = make_deita_pipeline(2, complexity_model=c, quality_model=q, messages_col="conversations")
    a = quiet(pipe.fit_transform, sharegpt)
    b = quiet(pipe.fit_transform, openai)
    assert [len(v) for v in a["evol_instruction_score"].sort_index()] == [2, 1]
    pd.testing.assert_series_equal(a["deita_score"], b["deita_score"])
    expected = [
        float(np.dot(ci, qi))
        for ci, qi in zip(a["evol_instruction_score"], a["evol_response_score"], strict=True)
    ]
    np.testing.assert_allclose(a["deita_score"], expected)


def test_grid_search_scores_each_row_once_with_a_cache(scorers, pool, tmp_path, monkeypatch):
    c, q = scorers
    calls = []
    real = _first_token.first_token_scores

    def counting(lm, sequences, token_ids):
        calls.append(len(sequences))
        return real(lm, sequences, token_ids)

    monkeypatch.setattr("skdeita.scoring._first_token.first_token_scores", counting)
    pipe = make_deita_pipeline(
        0.5, complexity_model=c, quality_model=q, cache=tmp_path, show_progress_bar=False
    )
    search = GridSearchCV(pipe, {"selection__diversity_threshold": [0.05, 0.2]}, cv=2, refit=False)
    quiet(search.fit, pool)
    # Each distinct prompt of each scorer once, whatever the folds and thresholds.
    distinct = pool["instruction"].nunique() + len(
        pool[["instruction", "response"]].drop_duplicates()
    )
    assert sum(calls) == distinct
