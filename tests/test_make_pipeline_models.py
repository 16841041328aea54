"""make_deita_pipeline's models: the dtype per device, and every model found
before the first one loads (issue 23)."""

from __future__ import annotations

import pandas as pd
import pytest

from skdeita import ModelNotFoundError, make_deita_pipeline
from skdeita.utils import _model_cache

pytestmark = pytest.mark.scoring
pytest.importorskip("sentence_transformers")

MODEL_STEPS = ("complexity", "quality", "embedding")


def _dtypes(pipe) -> dict:
    return {name: step.dtype for name, step in pipe.steps if name in MODEL_STEPS}


@pytest.mark.parametrize(("device", "dtype"), [("cpu", "float32"), ("cuda", "bfloat16")])
def test_the_dtype_defaults_per_device(device, dtype):
    pipe = make_deita_pipeline(10, device=device)
    assert _dtypes(pipe) == dict.fromkeys(MODEL_STEPS, dtype)


def test_an_explicit_dtype_reaches_the_scorers_and_the_embedder():
    pipe = make_deita_pipeline(10, device="cuda", dtype="float32")
    assert _dtypes(pipe) == dict.fromkeys(MODEL_STEPS, "float32")


def test_an_unknown_dtype_is_named_before_any_model_loads(tiny_scorer_pair):
    pipe = make_deita_pipeline(
        2, complexity_model=tiny_scorer_pair[0], quality_model=tiny_scorer_pair[1], dtype="int8"
    )
    with pytest.raises(ValueError, match="'dtype' parameter of ComplexityScorer"):
        pipe.fit(pd.DataFrame({"instruction": ["q"], "response": ["r"]}))


def test_a_bad_second_model_fails_before_the_first_model_loads(tiny_scorer_pair, tmp_path):
    _model_cache.clear_model_cache()
    typo = tmp_path / "models" / "qualty"
    pipe = make_deita_pipeline(
        2, complexity_model=tiny_scorer_pair[0], quality_model=str(typo), device="cpu"
    )
    rows = pd.DataFrame({"instruction": ["q", "p"], "response": ["r", "s"]})
    with pytest.raises(ModelNotFoundError, match=f"QualityScorer model='{typo}': no such model"):
        pipe.fit_transform(rows)
    assert getattr(pipe.named_steps["complexity"], "_model", None) is None
    assert not _model_cache._LOADED  # nothing was loaded, by any step


def test_a_bad_embedding_model_fails_before_the_scorers_load(tiny_scorer_pair, tmp_path):
    _model_cache.clear_model_cache()
    spoiled = tmp_path / "embedder"
    spoiled.mkdir()
    (spoiled / "config.json").write_text("{}")
    pipe = make_deita_pipeline(
        2,
        complexity_model=tiny_scorer_pair[0],
        quality_model=tiny_scorer_pair[1],
        embedding_model=str(spoiled),
    )
    rows = pd.DataFrame({"instruction": ["q"], "response": ["r"]})
    lacks = "EmbeddingTransformer model directory .* is missing a tokenizer"
    with pytest.raises(ModelNotFoundError, match=lacks):
        pipe.fit(rows)
    assert not _model_cache._LOADED
