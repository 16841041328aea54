"""ComplexityScorer and QualityScorer as scikit-learn estimators: feature names,
fitting, cloning, parameter validation and the exported defaults."""

from __future__ import annotations

import copy

import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import skdeita
from skdeita import ComplexityScorer, QualityScorer

from .conftest import GOOD_ROWS, MISSING_MODEL, complexity, quality, rows_frame

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


# -- scikit-learn API --------------------------------------------------------------


def test_get_feature_names_out_adds_the_output_column(complexity_dir, quality_dir):
    df = rows_frame()
    assert complexity(complexity_dir).fit(df).get_feature_names_out().tolist() == [
        "instruction",
        "response",
        "source",
        "evol_instruction_score",
    ]
    names = quality(quality_dir, output_col="q").fit(df).get_feature_names_out(["a", "b"])
    assert names.tolist() == ["a", "b", "q"]


def test_transform_before_fit_is_not_fitted():
    with pytest.raises(NotFittedError):
        ComplexityScorer(MISSING_MODEL).transform(GOOD_ROWS)


def test_clone_keeps_the_parameters(quality_dir):
    scorer = quality(quality_dir, batch_size=5, max_length=100, on_error="nan")
    cloned = clone(scorer)
    assert cloned is not scorer
    assert cloned.get_params() == scorer.get_params()
    assert copy.deepcopy(scorer).get_params() == scorer.get_params()


@pytest.mark.parametrize(
    "params",
    [
        {"batch_size": 0},
        {"on_error": "zero"},
        {"max_length": 4},
        {"dtype": "int8"},
        {"trust_remote_code": "yes"},
    ],
    ids=lambda p: next(iter(p)),
)
def test_invalid_parameters_are_rejected(params):
    for make in (ComplexityScorer, QualityScorer):
        scorer = make(MISSING_MODEL, show_progress_bar=False, **params)
        with pytest.raises(InvalidParameterError, match=next(iter(params))):
            scorer.fit(GOOD_ROWS)


def test_scorers_are_exported():
    assert skdeita.ComplexityScorer is ComplexityScorer
    assert skdeita.QualityScorer is QualityScorer
    assert ComplexityScorer().model == "hkust-nlp/deita-complexity-scorer"
    assert QualityScorer().model == "hkust-nlp/deita-quality-scorer"
    assert ComplexityScorer().output_col == "evol_instruction_score"
    assert QualityScorer().output_col == "evol_response_score"
