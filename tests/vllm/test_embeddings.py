"""VLLMEncoder equals TransformersEncoder (last and mean pooling).

A tiny float32 Llama as the causal-LM embedder; one vLLM pooling engine per
pooling, shared by the tests of that pooling.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vllm")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from skdeita._testing import make_tiny_llama_scorer  # noqa: E402
from skdeita.embedding._backends import TransformersEncoder  # noqa: E402
from skdeita.embedding._vllm import VLLMEncoder  # noqa: E402

from .conftest import INSTRUCTIONS, TOL  # noqa: E402

pytestmark = pytest.mark.vllm

MAX_LENGTH = 48
# The last text is longer than MAX_LENGTH tokens: both encoders cut it.
TEXTS = INSTRUCTIONS + ["The sea is wide and the wind at night is cold. " * 12]


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory):
    return make_tiny_llama_scorer(tmp_path_factory.mktemp("vllm-embedder"), seed=5, head_dim=64)


@pytest.fixture(scope="module", params=["last", "mean"])
def encoders(request, embedder_dir):
    """(VLLMEncoder, TransformersEncoder) with one pooling; one engine at a time."""
    common = dict(
        device="cpu",
        dtype="float32",
        max_length=MAX_LENGTH,
        pooling=request.param,
        trust_remote_code=False,
        local_files_only=True,
        model_kwargs=None,
    )
    ours = VLLMEncoder(embedder_dir, **common)
    reference = TransformersEncoder(embedder_dir, **common)
    yield ours, reference
    ours.close()


@pytest.mark.parametrize("batch_size", [1, 4, len(TEXTS)])
def test_embeddings_equal_the_transformers_encoder(encoders, batch_size):
    ours, reference = encoders
    expected = reference.encode(TEXTS, batch_size=4, normalize=False, progress=False)
    got = ours.encode(TEXTS, batch_size=batch_size, normalize=False, progress=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), ours.dim)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_vectors_are_not_normalized_unless_asked(encoders):
    # vLLM's embedding output is L2-normalised by default.
    ours, _ = encoders
    norms = np.linalg.norm(
        ours.encode(TEXTS, batch_size=4, normalize=False, progress=False), axis=1
    )
    assert not np.allclose(norms, 1.0)


def test_normalized_embeddings_equal_the_transformers_encoder(encoders):
    ours, reference = encoders
    expected = reference.encode(TEXTS, batch_size=4, normalize=True, progress=False)
    got = ours.encode(TEXTS, batch_size=3, normalize=True, progress=False)
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_iter_encode_yields_the_callers_batches_in_order(encoders):
    ours, _ = encoders
    whole = ours.encode(TEXTS, batch_size=len(TEXTS), normalize=False, progress=False)
    batches = [np.array([7, 2]), np.array([10]), np.array([0, 9, 4, 1]), np.array([3, 5, 6, 8])]
    seen = list(ours.iter_encode(TEXTS, iter(batches), normalize=False))
    assert [p.tolist() for p, _ in seen] == [b.tolist() for b in batches]
    for positions, vectors in seen:
        assert vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, whole[positions], atol=TOL, rtol=0)


def test_texts_are_cut_to_max_length_before_vllm(encoders):
    ours, reference = encoders
    ids = ours.token_ids(TEXTS[-1])
    assert len(ids) == MAX_LENGTH
    full = reference.tokenizer(TEXTS[-1], truncation=True, max_length=MAX_LENGTH)["input_ids"]
    assert ids == full


def test_dimension_and_identity(encoders, embedder_dir):
    ours, reference = encoders
    assert ours.dim == reference.dim
    assert ours.identity.startswith("vllm-embed|") and f"|{ours.pooling}|" in ours.identity


def test_model_kwargs_are_refused(embedder_dir):
    with pytest.raises(ValueError, match="backend_kwargs"):
        VLLMEncoder(embedder_dir, model_kwargs={"attn_implementation": "eager"})
