"""Validation before load (issue 13): a bad template, invalid Unicode or bad input
to a helper or to transform is a clear error naming it, raised before any model
loads."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from .conftest import NO_MODEL

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
@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda r: r.set_params(batch_size=0).score_candidates(["q"], [["a"]]), "batch_size"),
        (lambda r: r.set_params(dtype="float16", fp16=True).compare(["q"], ["a"], ["b"]), "fp16"),
        (lambda r: r.compare("qq", ["a", "b"], ["c", "d"]), "inputs must be a list"),
        (lambda r: r.compare(["q"], "a", ["b"]), "candidates_a must be a list"),
        (lambda r: r.score_candidates(["q"], "ab"), "candidates must be a list"),
    ],
    ids=["bad parameter", "fp16 and dtype", "bare inputs", "bare candidates_a", "bare rows"],
)
def test_ranker_helpers_check_parameters_and_bare_strings_before_loading(call, names):
    from skdeita import PairRMRanker

    with pytest.raises((TypeError, ValueError), match=names) as info:
        call(PairRMRanker(NO_MODEL))
    assert not isinstance(info.value, OSError)  # NO_MODEL was never looked at


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


# -- the pipeline -------------------------------------------------------------------


def test_make_deita_pipeline_checks_the_selection_parameters_before_loading():
    from skdeita import make_deita_pipeline

    pipe = make_deita_pipeline(
        0, complexity_model=NO_MODEL, quality_model=NO_MODEL, embedding_model=NO_MODEL
    )
    with pytest.raises(ValueError, match="data_budget"):
        pipe.fit(pd.DataFrame({"instruction": ["q"], "response": ["r"]}))
