"""ComplexityScorer, QualityScorer, IFDScorer and EmbeddingTransformer with
backend="vllm" equal backend="transformers" row for row (1e-4), for any batch
size and row order, single rows and conversations (ShareGPT and OpenAI), with
truncation, the failure policy, the cache and pickles as the transformers
backend has them.

The transformers outputs are computed first (module fixtures): loading a
model on a device releases the others (one model per device), so the vLLM
engines then start once per module.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("vllm")
pytest.importorskip("torch")

from skdeita import ComplexityScorer, EmbeddingTransformer, IFDScorer, QualityScorer  # noqa: E402
from skdeita._testing import make_tiny_llama_scorer  # noqa: E402

from .conftest import INSTRUCTIONS, TOL  # noqa: E402

pytestmark = pytest.mark.vllm

RESPONSES = [f"Answer number {i}: " + "use sorted(xs) " * (i % 4 + 1) for i in range(10)]


def rows() -> pd.DataFrame:
    return pd.DataFrame(
        {"instruction": INSTRUCTIONS, "response": RESPONSES},
        index=[f"r{i}" for i in (3, 0, 7, 9, 1, 8, 2, 6, 5, 4)],
    )


def conversations(openai: bool) -> pd.DataFrame:
    key, u, a = ("role", "user", "assistant") if openai else ("from", "human", "gpt")
    text = "content" if openai else "value"
    convs = []
    for i in range(0, 10, 2):
        convs.append(
            [
                {key: u, text: INSTRUCTIONS[i]},
                {key: a, text: RESPONSES[i]},
                {key: u, text: INSTRUCTIONS[i + 1]},
            ]
        )
    return pd.DataFrame({"conversations": convs}, index=[f"c{i}" for i in range(5)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_llama_scorer(
        tmp_path_factory.mktemp("vllm-estimators"), seed=5, head_dim=64, bury_digits=True
    )


def scorer(cls, path, backend, **kw):
    return cls(str(path), device="cpu", backend=backend, show_progress_bar=False, **kw)


@pytest.fixture(scope="module")
def expected(model_dir):
    """The transformers backend's outputs, computed before any engine starts."""
    df = rows()
    return {
        "complexity": scorer(ComplexityScorer, model_dir, "transformers").fit_transform(df),
        "quality": scorer(QualityScorer, model_dir, "transformers").fit_transform(df),
        "cut": scorer(QualityScorer, model_dir, "transformers", max_length=60).fit_transform(df),
        "sharegpt": scorer(
            QualityScorer, model_dir, "transformers", messages_col="conversations"
        ).fit_transform(conversations(openai=False)),
    }


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_complexity_on_vllm_equals_transformers_at_any_batch_size(model_dir, expected, batch_size):
    df = rows().sample(frac=1.0, random_state=batch_size)
    out = scorer(ComplexityScorer, model_dir, "vllm", batch_size=batch_size).fit_transform(df)
    np.testing.assert_allclose(
        out["evol_instruction_score"].loc[expected["complexity"].index],
        expected["complexity"]["evol_instruction_score"],
        rtol=0,
        atol=TOL,
    )


def test_quality_on_vllm_equals_transformers(model_dir, expected):
    out = scorer(QualityScorer, model_dir, "vllm").fit_transform(rows())
    want = expected["quality"]["evol_response_score"]
    np.testing.assert_allclose(out["evol_response_score"], want, rtol=0, atol=TOL)
    assert np.ptp(want) > 0.05  # the scores are not flat


def test_truncation_keeps_the_cue_and_equals_transformers(model_dir, expected):
    from skdeita.exceptions import TruncationWarning

    with pytest.warns(TruncationWarning):
        out = scorer(QualityScorer, model_dir, "vllm", max_length=60).fit_transform(rows())
    want = expected["cut"]["evol_response_score"]
    np.testing.assert_allclose(out["evol_response_score"], want, rtol=0, atol=TOL)


@pytest.mark.parametrize("openai", [False, True])
def test_conversations_on_vllm_equal_transformers(model_dir, expected, openai):
    est = scorer(QualityScorer, model_dir, "vllm", messages_col="conversations")
    out = est.fit_transform(conversations(openai))
    got = np.concatenate(out["evol_response_score"].tolist())
    want = np.concatenate(expected["sharegpt"]["evol_response_score"].tolist())
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_cache_and_pickle_without_the_engine(model_dir, expected, tmp_path):
    est = scorer(ComplexityScorer, model_dir, "vllm", cache=tmp_path).fit(rows())
    first = est.transform(rows())
    blob = pickle.dumps(est)
    assert len(blob) < 20_000  # parameters only: no engine, no weights
    again = pickle.loads(blob)
    second = again.transform(rows())
    assert again.cache_stats_["rows_from_cache"] == 10
    pd.testing.assert_frame_equal(first, second)
    # backend is part of the cache key: the transformers backend's entries differ
    tf = scorer(ComplexityScorer, model_dir, "transformers", cache=tmp_path).fit(rows())
    assert tf._cache_identity() != est._cache_identity()


def test_bad_backend_kwargs_fail_before_any_engine_starts(model_dir):
    est = scorer(
        ComplexityScorer, model_dir, "vllm", backend_kwargs={"gpu_memory_utilisation": 0.5}
    )
    with pytest.raises(ValueError, match="gpu_memory_utilisation"):
        est.fit(rows())
    assert est._model is None


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory):
    return make_tiny_llama_scorer(tmp_path_factory.mktemp("vllm-embedder"), seed=6, head_dim=64)


@pytest.fixture(scope="module")
def expected_embeddings(embedder_dir):
    conv = conversations(openai=False)
    out = {}
    for pooling in ("last", "mean"):
        est = EmbeddingTransformer(
            str(embedder_dir),
            backend="transformers",
            pooling=pooling,
            messages_col="conversations",
            conversation_template="vicuna_v1.1",
            device="cpu",
            show_progress_bar=False,
        )
        out[pooling] = np.stack(est.fit_transform(conv)["embedding"])
    return out


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_embeddings_on_vllm_equal_transformers(embedder_dir, expected_embeddings, pooling):
    est = EmbeddingTransformer(
        str(embedder_dir),
        backend="vllm",
        pooling=pooling,
        messages_col="conversations",
        conversation_template="vicuna_v1.1",
        batch_size=2,
        device="cpu",
        show_progress_bar=False,
    )
    got = np.stack(est.fit_transform(conversations(openai=True))["embedding"])
    np.testing.assert_allclose(got, expected_embeddings[pooling], rtol=0, atol=TOL)


def test_ifd_on_vllm_equals_transformers(model_dir):
    df = rows()
    want = IFDScorer(str(model_dir), device="cpu", show_progress_bar=False).fit_transform(df)
    got = IFDScorer(
        str(model_dir), device="cpu", backend="vllm", show_progress_bar=False
    ).fit_transform(df)
    np.testing.assert_allclose(got["ifd_score"], want["ifd_score"], rtol=1e-4)
