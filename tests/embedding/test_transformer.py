"""EmbeddingTransformer on the real packaged MiniLM and tiny random models."""

from __future__ import annotations

import copy
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skdeita import DeitaSelector, EmbeddingTransformer, ModelNotFoundError

torch = pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")

TEXTS = [
    "How do I reverse a list in Python?",
    "Give me a recipe for sourdough bread.",
    "How do I reverse a list in Python?",  # exact duplicate
    "Explain the difference between TCP and UDP in networking.",
    "Écris un poème sur la mer. 海の詩を書いてください。",  # non-ASCII
]


@pytest.fixture(scope="module")
def reference_model(minilm_path):
    return st.SentenceTransformer(minilm_path, device="cpu")


@pytest.fixture(scope="module")
def fitted(minilm_path):
    """One loaded transformer for the tests that only read from it."""
    return EmbeddingTransformer(show_progress_bar=False).fit(pd.DataFrame({"text": TEXTS}))


def frame(texts=TEXTS, **extra) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, **extra}, index=[f"r{i}" for i in range(len(texts))])


@pytest.fixture
def spy_on_encoder(monkeypatch):
    """Count the texts that reach the real model (the model still runs).

    Loaded models are shared by clones, so the spy is undone after the test.
    """

    def spy(transformer) -> list[int]:
        calls: list[int] = []
        encoder = transformer._get_model()
        real = type(encoder).iter_encode

        def counting(texts, batches, **kwargs):
            def counted():
                for batch in batches:
                    calls.append(len(batch))
                    yield batch

            return real(encoder, texts, counted(), **kwargs)

        monkeypatch.setattr(encoder, "iter_encode", counting)
        return calls

    return spy


# -- exactness against the real model -------------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
def test_output_equals_sentence_transformer_encode(minilm_path, reference_model, normalize):
    emb = EmbeddingTransformer(normalize_embeddings=normalize, show_progress_bar=False)
    out = emb.fit_transform(frame())
    expected = reference_model.encode(TEXTS, normalize_embeddings=normalize)
    got = np.stack(out["embedding"].to_list())
    assert got.dtype == np.float32 and got.shape == (5, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_default_model_resolves_to_packaged_copy(fitted, minilm_path):
    assert minilm_path in fitted.model_identity_
    assert fitted.embedding_dim_ == 384 and fitted.device_ == "cpu"


def test_dedupe_is_deprecated_and_changes_nothing(fitted):
    on = fitted.transform(frame())
    with pytest.warns(FutureWarning, match="dedupe was deprecated"):
        off = clone(fitted).set_params(dedupe=False).fit(frame())
    np.testing.assert_array_equal(
        np.stack(on["embedding"]), np.stack(off.transform(frame())["embedding"])
    )


def test_dedupe_embeds_each_distinct_text_once(fitted, spy_on_encoder):
    calls = spy_on_encoder(fitted)
    fitted.transform(frame())
    assert calls == [4]


def test_cache_hit_returns_identical_arrays_without_model_calls(tmp_path, spy_on_encoder):
    first = EmbeddingTransformer(cache=tmp_path, show_progress_bar=False).fit(frame())
    before = np.stack(first.transform(frame())["embedding"])
    again = clone(first).fit(frame())  # a clone, as in a grid-search fold
    calls = spy_on_encoder(again)
    after = np.stack(again.transform(frame())["embedding"])
    assert calls == []
    np.testing.assert_array_equal(before, after)
    calls_more = spy_on_encoder(again)
    again.transform(frame(["A text never seen before."]))
    assert calls_more == [1]


def test_cache_accepts_joblib_memory(minilm_path, tmp_path):
    joblib = pytest.importorskip("joblib")
    memory = joblib.Memory(tmp_path, verbose=0)
    EmbeddingTransformer(cache=memory).fit(frame()).transform(frame())
    assert list((tmp_path / "skdeita-embeddings").glob("*/*.rec"))


def test_cache_is_keyed_by_normalisation(tiny_bert_dir, tmp_path):
    # MiniLM normalises by itself; the tiny BERT's mean pooling does not.
    kw = dict(model=str(tiny_bert_dir), backend="transformers", cache=tmp_path)
    raw = EmbeddingTransformer(**kw).fit(frame()).transform(frame())
    unit = EmbeddingTransformer(**kw, normalize_embeddings=True).fit(frame()).transform(frame())
    norms = np.linalg.norm(np.stack(unit["embedding"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert not np.allclose(np.linalg.norm(np.stack(raw["embedding"]), axis=1), 1.0)


def test_pickle_holds_no_weights_and_still_embeds(fitted):
    blob = pickle.dumps(fitted)
    assert len(blob) < 20_000  # the MiniLM weights are 90 MB
    again = pickle.loads(blob)
    np.testing.assert_allclose(
        np.stack(again.transform(frame())["embedding"]),
        np.stack(fitted.transform(frame())["embedding"]),
        atol=1e-6,
    )


def test_pickle_with_weights_when_asked(fitted):
    heavy = clone(fitted).set_params(store_weights_in_pickle=True).fit(frame())
    assert len(pickle.dumps(heavy)) > 10_000_000


def test_model_object_is_not_pickled_silently(reference_model):
    emb = EmbeddingTransformer(model=reference_model).fit(frame())
    np.testing.assert_allclose(
        np.stack(emb.transform(frame())["embedding"]), reference_model.encode(TEXTS), atol=1e-5
    )
    with pytest.raises(TypeError, match="store_weights_in_pickle=True"):
        pickle.dumps(emb)


def test_model_loads_lazily_and_transform_before_fit_is_not_fitted():
    emb = EmbeddingTransformer(model="/nonexistent/model")  # no error: nothing loaded
    with pytest.raises(NotFittedError):
        emb.transform(frame())


def test_template_joins_columns_and_keeps_index(fitted, reference_model):
    df = pd.DataFrame(
        {
            "instruction": ["Sort a list.", "Boil an egg."],
            "response": ["Use sorted().", "Ten minutes."],
        },
        index=[10, 20],
    )
    emb = clone(fitted).set_params(template="{instruction}\n\n{response}").fit(df)
    out = emb.transform(df)
    assert out.index.tolist() == [10, 20] and list(out.columns[:2]) == ["instruction", "response"]
    expected = reference_model.encode(
        ["Sort a list.\n\nUse sorted().", "Boil an egg.\n\nTen minutes."]
    )
    np.testing.assert_allclose(np.stack(out["embedding"]), expected, atol=1e-5)


def test_series_and_list_inputs(fitted):
    from_list = fitted.transform(TEXTS[:2])
    from_series = fitted.transform(pd.Series(TEXTS[:2], name="prompt"))
    assert list(from_list.columns) == ["text", "embedding"]
    assert list(from_series.columns) == ["prompt", "embedding"]
    np.testing.assert_array_equal(
        np.stack(from_list["embedding"]), np.stack(from_series["embedding"])
    )


def test_wide_output_with_feature_names_and_set_output(fitted):
    wide = clone(fitted).set_params(output="wide").set_output(transform="pandas")
    out = wide.fit(frame()).transform(frame())
    assert out.shape == (5, 1 + 384)
    assert out.columns[1] == "embedding_000" and out.columns[-1] == "embedding_383"
    assert wide.get_feature_names_out().tolist() == list(out.columns)


def test_pipeline_with_selector_keeps_original_labels(fitted):
    df = frame(evol_instruction_score=[3.0, 2, 1, 4, 5], evol_response_score=[1.0, 1, 1, 1, 1])
    pipe = make_pipeline(clone(fitted), DeitaSelector(data_budget=3))
    out = pipe.fit_transform(df)
    # r2 duplicates r0 and scores lower: it is never kept.
    assert out.index.tolist() == ["r4", "r3", "r0"]


def test_caller_frame_is_not_mutated(fitted):
    df = frame()
    before = copy.deepcopy(df)
    fitted.transform(df)
    pd.testing.assert_frame_equal(df, before)


def test_empty_input_returns_empty_frame_with_output_column(fitted):
    out = fitted.transform(frame([]))
    assert len(out) == 0 and "embedding" in out.columns


def test_long_text_is_truncated_to_max_length(fitted, reference_model):
    long_text = "word " * 3000
    short = clone(fitted).set_params(max_length=16).fit(frame())
    out = short.transform([long_text, "word " * 100])
    np.testing.assert_allclose(out["embedding"][0], out["embedding"][1], atol=1e-6)
    assert reference_model.max_seq_length == 256  # the user's model is untouched


# -- raw transformers backend on tiny random models ---------------------------------


def _hidden_states(path, text, max_length=64):
    """Final hidden states of one unpadded text, computed by hand."""
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(path)
    model = tf.AutoModel.from_pretrained(path).eval()
    ids = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).last_hidden_state[0].numpy()


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_transformers_pooling_equals_manual_computation_bert(tiny_bert_dir, pooling):
    emb = EmbeddingTransformer(
        str(tiny_bert_dir), backend="transformers", pooling=pooling, batch_size=3
    ).fit(frame())
    got = np.stack(emb.transform(frame())["embedding"])
    pick = {"mean": lambda h: h.mean(axis=0), "cls": lambda h: h[0], "last": lambda h: h[-1]}
    expected = np.stack([pick[pooling](_hidden_states(tiny_bert_dir, t)) for t in TEXTS])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_last_token_pooling_of_causal_lm_is_padding_side_independent(tiny_causal_dir):
    emb = EmbeddingTransformer(
        str(tiny_causal_dir), backend="transformers", pooling="last", batch_size=5
    ).fit(frame())
    assert emb._get_model().tokenizer.padding_side in ("left", "right")
    got = np.stack(emb.transform(frame())["embedding"])
    expected = np.stack([_hidden_states(tiny_causal_dir, t)[-1] for t in TEXTS])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_kwargs_reach_the_model(tiny_bert_dir):
    emb = EmbeddingTransformer(
        str(tiny_bert_dir), backend="transformers", model_kwargs={"is_decoder": True}
    ).fit(frame())
    assert emb._get_model().model.config.is_decoder is True


def test_transformers_backend_truncates_past_position_limit(tiny_bert_dir):
    emb = EmbeddingTransformer(str(tiny_bert_dir), backend="transformers").fit(frame())
    out = emb.transform(["token " * 5000])  # far past max_position_embeddings=64
    assert np.isfinite(out["embedding"][0]).all()
    assert emb._get_model().max_length == 64


# -- bad input -------------------------------------------------------------------------


def test_missing_text_column_lists_available(fitted):
    with pytest.raises(ValueError, match=r"'text' \(text_col\).*Available columns: \['prompt'\]"):
        fitted.transform(pd.DataFrame({"prompt": ["a"]}))


def test_missing_template_field_is_named(fitted):
    emb = clone(fitted).set_params(template="{instruction} {answer}")
    with pytest.raises(ValueError, match=r"'answer' \(template field \{answer\}\)"):
        emb.fit(pd.DataFrame({"instruction": ["a"], "response": ["b"]}))


def test_missing_text_names_rows(fitted):
    with pytest.raises(ValueError, match=r"missing text \(None/NaN\) at rows \['r1'\]"):
        fitted.transform(frame(["a", None, "c"]))


def test_missing_text_can_be_embedded_as_empty(fitted, reference_model):
    out = clone(fitted).set_params(on_missing="empty").fit(frame()).transform(frame(["a", np.nan]))
    np.testing.assert_allclose(out["embedding"]["r1"], reference_model.encode([""])[0], atol=1e-5)


def test_non_string_text_is_refused(fitted):
    with pytest.raises(TypeError, match=r"must hold strings; found int at rows \['r1'\]"):
        fitted.transform(frame(["a", 5]))


def test_bad_input_fails_before_loading_a_model():
    emb = EmbeddingTransformer(model="/nonexistent/model")
    with pytest.raises(ValueError, match="missing text"):
        emb.fit(frame(["a", None]))


@pytest.mark.parametrize("params", [{"backend": "onnx"}, {"pooling": "max"}, {"batch_size": 0}])
def test_invalid_parameters_are_named(params):
    with pytest.raises(InvalidParameterError, match=list(params)[0]):
        EmbeddingTransformer(**params).fit(frame())


def test_unknown_model_offline_says_how_to_get_it():
    emb = EmbeddingTransformer(model="some-org/not-a-cached-model", local_files_only=True)
    with pytest.raises(ModelNotFoundError, match="pass a local directory"):
        emb.fit(frame())


def test_local_model_dir_without_weights_names_what_is_missing(tiny_bert_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="missing model.safetensors or pytorch_model.bin"):
        EmbeddingTransformer(str(broken), backend="transformers").fit(frame())


def test_trust_remote_code_is_off_by_default():
    assert EmbeddingTransformer().trust_remote_code is False


def test_half_precision_weights_still_give_float32_outputs(tiny_bert_dir):
    # The GPU setting, checked on CPU: bfloat16 weights, float32 embeddings.
    full = EmbeddingTransformer(str(tiny_bert_dir), backend="transformers").fit(frame())
    half = EmbeddingTransformer(str(tiny_bert_dir), backend="transformers", dtype="bfloat16").fit(
        frame()
    )
    assert next(half._get_model().model.parameters()).dtype == torch.bfloat16
    a = np.stack(full.transform(frame())["embedding"])
    b = np.stack(half.transform(frame())["embedding"])
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert (cos > 0.99).all()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_identical_texts_get_identical_bits_in_any_batching(minilm_path, batch_size):
    texts = ["A long text about bread and ovens and flour. " * 4, "short", "mid text here"]
    pool = pd.DataFrame({"text": [texts[0], texts[1], texts[2], texts[1], texts[0], texts[0]]})
    out = EmbeddingTransformer(batch_size=batch_size, show_progress_bar=False).fit_transform(pool)
    vectors = np.stack(out["embedding"])
    for copies in ([0, 4, 5], [1, 3]):
        assert all(np.array_equal(vectors[copies[0]], vectors[k]) for k in copies[1:])
