"""ComplexityScorer and QualityScorer against DEITA's own one-row ``generate`` loop.

The reference below follows DEITA's transformers path (hkust-nlp/deita,
``src/deita/selection/scorer/base.py``; reference-semantics.md section 6)
row by row, with its own copy of the two templates: it shares no code with
skdeita, so a drift in skdeita's templates, digit ids, padding or batching
shows up as a score difference. The scorer models are tiny random Llamas
whose tokenizer is trained at build time (digit ids nothing like Llama's).
"""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
import re
import shutil
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import skdeita
from skdeita import ComplexityScorer, DeitaSelector, QualityScorer
from skdeita.exceptions import (
    ModelNotFoundError,
    ScoringError,
    ScoringFailedWarning,
    TruncationWarning,
)
from skdeita.utils import _model_cache

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# DEITA's templates, copied by hand from reference-semantics.md section 6
# (doubled and trailing spaces included). Not imported from skdeita on purpose.
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the "
    "following user query. \n##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response "
    "corresponding to the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} "
    "\n##Quality: "
)
TOL = 1e-4

# Rows of very different lengths (every prompt fits the tiny model's 192 tokens;
# the fixture checks it), some with bare digit tokens for the repetition penalty.
ROWS = [
    ("Sort a list.", "Use sorted(xs)."),
    ("How do I sort a list in Python? " * 3, "Use sorted(xs) or xs.sort() for a list. " * 2),
    ("Hi", "Hello"),
    (
        "Explain photosynthesis to a ten year old child in simple words please. "
        "Give three tips for a good night of sleep and a calm morning routine.",
        "Plants eat light.",
    ),
    ("Write a short poem about the sea.", "The sea is wide, the wind at night."),
    ("a1b2c3 x=123456", "1 2 3 4 5 6 a1b2c3"),
    ("Translate good morning into Spanish.", "buenos dias"),
    ("The capital of France is Paris; the capital of Japan is Tokyo, 1998. " * 3, "Yes."),
    ("Numbers: 0 1 2 3 4 5 6 a6b5c4", "score 6 of 6"),
    ("What is 2+2?", "4"),
]
LABELS = ["r3", "r0", "r7", "r9", "r1", "r8", "r2", "r6", "r5", "r4"]


def rows_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instruction": [r[0] for r in ROWS],
            "response": [r[1] for r in ROWS],
            "source": list("abcdefghij"),
        },
        index=pd.Index(LABELS, name="id"),
    )


# -- DEITA's one-row procedure, written independently of skdeita ---------------


@lru_cache(maxsize=8)
def load_reference(path: str):
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    return tokenizer, model


def deita_score(path, template: str, **fields) -> float:
    """DEITA's ``infer_score`` on one prompt: generate, first scores, E[digit]."""
    tokenizer, model = load_reference(str(path))
    prompt = template.format(**fields)
    input_ids = tokenizer.encode(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            input_ids,
            max_new_tokens=2,
            num_return_sequences=1,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.eos_token_id,
        )
    logits = out.scores[0][0]
    ids = [tokenizer.convert_tokens_to_ids(d) for d in ("1", "2", "3", "4", "5", "6")]
    picked = logits[ids].double().numpy()
    probs = np.exp(picked - picked.max())
    probs /= probs.sum()
    return float(np.sum(probs * np.arange(1, 7)))


def reference_complexity(path, instructions) -> np.ndarray:
    return np.array([deita_score(path, COMPLEXITY_TEMPLATE, instruction=t) for t in instructions])


def reference_quality(path, instructions, responses) -> np.ndarray:
    return np.array(
        [
            deita_score(path, QUALITY_TEMPLATE, instruction=t, output=r)
            for t, r in zip(instructions, responses, strict=True)
        ]
    )


def forward_softmax_score(path, template: str, **fields) -> float:
    """The same E[digit] from one plain forward pass (no logits processors)."""
    tokenizer, model = load_reference(str(path))
    ids = tokenizer.encode(template.format(**fields), return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1]
    digits = [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    probs = torch.softmax(logits[digits].double(), dim=0).numpy()
    return float(probs @ np.arange(1, 7))


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def complexity_dir(tmp_path_factory) -> Path:
    from skdeita._testing import make_tiny_llama_scorer

    return make_tiny_llama_scorer(tmp_path_factory.mktemp("deita-complexity"), seed=0)


@pytest.fixture(scope="session")
def quality_dir(tmp_path_factory) -> Path:
    from skdeita._testing import make_tiny_llama_scorer

    return make_tiny_llama_scorer(tmp_path_factory.mktemp("deita-quality"), seed=1)


@pytest.fixture(scope="session")
def penalty_dir(tmp_path_factory) -> Path:
    from skdeita._testing import make_tiny_llama_scorer

    return make_tiny_llama_scorer(
        tmp_path_factory.mktemp("deita-penalty"),
        seed=2,
        generation_config={"repetition_penalty": 1.3},
    )


@pytest.fixture(scope="session")
def sampling_dir(complexity_dir, tmp_path_factory) -> Path:
    """The complexity scorer with a sampling generation config (temperature, top-k)."""
    dest = tmp_path_factory.mktemp("deita-sampling") / "model"
    shutil.copytree(complexity_dir, dest)
    config = json.loads((dest / "generation_config.json").read_text())
    config.update({"do_sample": True, "temperature": 0.5, "top_k": 200})
    (dest / "generation_config.json").write_text(json.dumps(config))
    return dest


@pytest.fixture(scope="session")
def no_digit_dir(complexity_dir, tmp_path_factory) -> Path:
    """The complexity scorer with the token "3" renamed away in its vocabulary."""
    dest = tmp_path_factory.mktemp("deita-no-digit") / "model"
    shutil.copytree(complexity_dir, dest)
    spec = json.loads((dest / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["\u2462"] = vocab.pop("3")
    spec["model"]["merges"] = [m for m in spec["model"]["merges"] if "3" not in m]
    (dest / "tokenizer.json").write_text(json.dumps(spec))
    return dest


@pytest.fixture(scope="session")
def reference(complexity_dir, quality_dir) -> dict:
    """DEITA's loop on ROWS: complexity (seed 0 model) and quality (seed 1 model)."""
    df = rows_frame()
    tokenizer, _ = load_reference(str(quality_dir))
    longest = max(
        len(tokenizer.encode(QUALITY_TEMPLATE.format(instruction=t, output=r))) for t, r in ROWS
    )
    assert longest < 192, "the test rows must fit the tiny model's context"
    return {
        "complexity": reference_complexity(complexity_dir, df["instruction"]),
        "quality": reference_quality(quality_dir, df["instruction"], df["response"]),
    }


def complexity(path, **kwargs) -> ComplexityScorer:
    return ComplexityScorer(str(path), device="cpu", show_progress_bar=False, **kwargs)


def quality(path, **kwargs) -> QualityScorer:
    return QualityScorer(str(path), device="cpu", show_progress_bar=False, **kwargs)


@pytest.fixture(scope="session")
def complexity_out(complexity_dir) -> pd.DataFrame:
    return complexity(complexity_dir).fit_transform(rows_frame())


@pytest.fixture(scope="session")
def quality_out(quality_dir) -> pd.DataFrame:
    return quality(quality_dir).fit_transform(rows_frame())


@contextlib.contextmanager
def counting_model_runs(scorer):
    """Batch sizes of every run of the loaded model's transformer body.

    A forward pre-hook on the decoder (``model.get_decoder()``) sees every
    forward, whether the scorer goes through ``generate`` or calls the model
    directly; an empty list means the model did not run.
    """
    decoder = scorer._get_model().model.get_decoder()
    runs: list[int] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        runs.append(int(ids.shape[0]))

    handle = decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield runs
    finally:
        handle.remove()


@pytest.fixture
def loads(monkeypatch):
    """Wrap both transformers loaders: record the kwargs of every call."""
    calls = {"tokenizer": [], "model": []}
    tok_load = transformers.AutoTokenizer.from_pretrained
    model_load = transformers.AutoModelForCausalLM.from_pretrained

    def tok_wrapper(*args, **kwargs):
        calls["tokenizer"].append(kwargs)
        return tok_load(*args, **kwargs)

    def model_wrapper(*args, **kwargs):
        calls["model"].append(kwargs)
        return model_load(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok_wrapper)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model_wrapper)
    return calls


@pytest.fixture
def record_loads(loads):
    """``loads``, with the process-wide model cache emptied before and after."""
    _model_cache.clear_model_cache()
    yield loads
    _model_cache.clear_model_cache()


def inject_failure(monkeypatch, path, bad_prompt: str):
    """Make the scoring step raise RuntimeError for one prompt (and any batch holding it).

    No real per-row failure can be produced on CPU with a tiny model, so the
    batch computation is wrapped: the scorer's isolation and failure policy
    are what is tested.
    """
    from skdeita.scoring import _deita

    tokenizer, _ = load_reference(str(path))
    bad_ids = tokenizer.encode(bad_prompt)
    original = _deita.expected_digit_scores

    def failing(lm, sequences, digit_ids):
        if any(list(s) == bad_ids for s in sequences):
            raise RuntimeError("injected failure: CUDA out of memory")
        return original(lm, sequences, digit_ids)

    monkeypatch.setattr(_deita, "expected_digit_scores", failing)


# -- DEITA's math --------------------------------------------------------------


def test_templates_are_deita_character_for_character():
    from skdeita.scoring import _deita

    assert _deita.COMPLEXITY_TEMPLATE == COMPLEXITY_TEMPLATE
    assert _deita.QUALITY_TEMPLATE == QUALITY_TEMPLATE


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8, 64])
def test_complexity_equals_deita_loop_at_any_batch_size(complexity_dir, reference, batch_size):
    out = complexity(complexity_dir, batch_size=batch_size).fit_transform(rows_frame())
    np.testing.assert_allclose(
        out["evol_instruction_score"].to_numpy(), reference["complexity"], rtol=0, atol=TOL
    )


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8, 64])
def test_quality_equals_deita_loop_at_any_batch_size(quality_dir, reference, batch_size):
    out = quality(quality_dir, batch_size=batch_size).fit_transform(rows_frame())
    np.testing.assert_allclose(
        out["evol_response_score"].to_numpy(), reference["quality"], rtol=0, atol=TOL
    )


def test_reference_scores_are_not_flat(reference):
    # Guards the tests above: flat scores would hide a wrong digit id or position.
    for values in reference.values():
        assert np.ptp(values) > 0.05
        assert ((values > 1) & (values < 6)).all()


def test_scores_do_not_depend_on_row_order_or_batch_neighbours(complexity_dir, complexity_out):
    shuffled = rows_frame().sample(frac=1.0, random_state=3)
    assert shuffled.index.tolist() != LABELS
    out = complexity(complexity_dir, batch_size=3).fit_transform(shuffled)
    assert out.index.tolist() == shuffled.index.tolist()
    np.testing.assert_allclose(
        out["evol_instruction_score"].loc[LABELS].to_numpy(),
        complexity_out["evol_instruction_score"].to_numpy(),
        rtol=0,
        atol=1e-5,
    )


def test_single_row_scored_alone_equals_its_score_in_a_batch(quality_dir, quality_out):
    df = rows_frame()
    alone = quality(quality_dir).fit_transform(df.iloc[[7]])
    assert alone["evol_response_score"].iloc[0] == pytest.approx(
        quality_out["evol_response_score"].iloc[7], abs=1e-5
    )


def test_output_keeps_index_order_and_input_columns(complexity_out):
    df = rows_frame()
    assert complexity_out.index.equals(df.index)
    assert complexity_out.index.name == "id"
    assert complexity_out.columns.tolist() == [*df.columns, "evol_instruction_score"]
    pd.testing.assert_frame_equal(complexity_out[df.columns], df)


def test_caller_frame_is_not_mutated(quality_dir):
    df = rows_frame()
    before = df.copy(deep=True)
    out = quality(quality_dir).fit_transform(df)
    assert out is not df
    pd.testing.assert_frame_equal(df, before)
    assert "evol_response_score" not in df.columns


def test_output_column_is_float(complexity_out, quality_out):
    assert complexity_out["evol_instruction_score"].dtype == np.float64
    assert quality_out["evol_response_score"].dtype == np.float64


def test_output_col_parameter_names_the_column(complexity_dir):
    out = complexity(complexity_dir, output_col="cx").fit_transform(rows_frame().iloc[:2])
    assert "cx" in out.columns and "evol_instruction_score" not in out.columns


# -- complexity vs quality -------------------------------------------------------


def test_quality_scorer_uses_quality_template_not_complexity(quality_dir, quality_out):
    df = rows_frame()
    wrong = reference_complexity(quality_dir, df["instruction"])
    got = quality_out["evol_response_score"].to_numpy()
    assert np.abs(got - wrong).max() > 0.05


def test_two_seeds_give_different_scores(complexity_out, quality_dir):
    # The complexity scorer run on the quality model (seed 1) must not give the
    # seed-0 scores: a scorer that ignored its model would.
    other = complexity(quality_dir).fit_transform(rows_frame())
    diff = other["evol_instruction_score"] - complexity_out["evol_instruction_score"]
    assert diff.abs().max() > 0.05


def test_quality_score_changes_when_only_the_response_changes(quality_dir, quality_out):
    df = rows_frame()
    df["response"] = ["Nothing at all, sorry." for _ in range(len(df))]
    out = quality(quality_dir).fit_transform(df)
    diff = out["evol_response_score"] - quality_out["evol_response_score"]
    assert diff.abs().max() > 0.01
    expected = reference_quality(quality_dir, df["instruction"], df["response"])
    np.testing.assert_allclose(out["evol_response_score"], expected, rtol=0, atol=TOL)


def test_complexity_score_ignores_the_response(complexity_dir, complexity_out):
    df = rows_frame()
    df["response"] = ["Nothing at all, sorry." for _ in range(len(df))]
    out = complexity(complexity_dir).fit_transform(df)
    np.testing.assert_allclose(
        out["evol_instruction_score"], complexity_out["evol_instruction_score"], atol=1e-6
    )


def test_custom_columns_are_read(quality_dir, quality_out):
    df = rows_frame().rename(columns={"instruction": "q", "response": "a"})
    out = quality(quality_dir, instruction_col="q", response_col="a").fit_transform(df)
    np.testing.assert_allclose(
        out["evol_response_score"], quality_out["evol_response_score"], atol=1e-6
    )


@pytest.mark.parametrize("config", ["repetition_penalty", "sampling"])
def test_generation_config_processors_are_honoured(penalty_dir, sampling_dir, config):
    # DEITA reads generate's first scores: after the model's generation config's
    # logits processors, which a plain forward pass does not apply.
    path = {"repetition_penalty": penalty_dir, "sampling": sampling_dir}[config]
    df = rows_frame()
    got = complexity(path, batch_size=4).fit_transform(df)["evol_instruction_score"].to_numpy()
    np.testing.assert_allclose(got, reference_complexity(path, df["instruction"]), atol=TOL)
    plain = np.array(
        [forward_softmax_score(path, COMPLEXITY_TEMPLATE, instruction=t) for t in df["instruction"]]
    )
    # A repetition penalty only moves rows whose prompt holds a bare digit token.
    assert np.abs(got - plain).max() > 1e-3


@pytest.mark.parametrize("batch_size", [1, 3])
def test_generate_fallback_path_equals_deita_loop(
    monkeypatch, record_loads, complexity_dir, penalty_dir, batch_size
):
    # Models outside the fast path's architectures are scored through generate
    # on left-padded batches; force that path on the tiny Llamas.
    first_token = pytest.importorskip("skdeita.scoring._first_token")
    monkeypatch.setattr(first_token, "_PLAIN_HEAD_MODELS", frozenset())
    df = rows_frame()
    for path in (complexity_dir, penalty_dir):
        got = complexity(path, batch_size=batch_size).fit_transform(df)["evol_instruction_score"]
        expected = reference_complexity(path, df["instruction"])
        np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=TOL)


def test_default_output_columns_feed_deita_selector(complexity_out, quality_out):
    df = complexity_out.copy()
    df["evol_response_score"] = quality_out["evol_response_score"]
    rng = np.random.default_rng(0)
    df["embedding"] = list(rng.normal(size=(len(df), 4)))
    out = DeitaSelector(output="annotate", diversity_threshold=0.0).fit_transform(df)
    expected = df["evol_instruction_score"] * df["evol_response_score"]
    np.testing.assert_allclose(out["deita_score"].loc[df.index], expected, rtol=1e-12)


# -- truncation ----------------------------------------------------------------


@pytest.fixture
def captured_prompts(monkeypatch):
    """The token ids of every prompt the scorer hands to its batch scoring step."""
    from skdeita.scoring import _deita

    seen: list[list[int]] = []
    original = _deita.expected_digit_scores

    def wrapper(lm, sequences, digit_ids):
        seen.extend(list(s) for s in sequences)
        return original(lm, sequences, digit_ids)

    monkeypatch.setattr(_deita, "expected_digit_scores", wrapper)
    return seen


def cue_ids(path, template: str) -> list[int]:
    """The last tokens of a filled template: its closing cue ("##Complexity: ")."""
    tokenizer, _ = load_reference(str(path))
    ids = tokenizer.encode(template.format(instruction="Hello", output="Hello"))
    return ids[-5:]


def truncation_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "instruction": [
                "Sort a list.",
                "Explain photosynthesis to a ten year old child in simple words please. " * 3,
                "Hi",
                "Give three tips for a good night of sleep and a calm morning routine. " * 3,
            ],
            "response": ["Use sorted(xs).", "Plants eat light. " * 20, "Hello", "Sleep."],
        },
        index=["short", "long1", "tiny", "long2"],
    )


@pytest.mark.parametrize("kind", ["complexity", "quality"])
def test_truncation_warns_with_count_and_keeps_cue(
    complexity_dir, quality_dir, captured_prompts, kind
):
    path, make, template = {
        "complexity": (complexity_dir, complexity, COMPLEXITY_TEMPLATE),
        "quality": (quality_dir, quality, QUALITY_TEMPLATE),
    }[kind]
    tokenizer, _ = load_reference(str(path))
    df = truncation_frame()
    full = [
        len(tokenizer.encode(template.format(instruction=t, output=r)))
        for t, r in zip(df["instruction"], df["response"], strict=True)
    ]
    max_length = 90
    n_long = sum(n > max_length for n in full)
    assert n_long == 2 and min(full) < max_length
    scorer = make(path, max_length=max_length).fit(df)
    with pytest.warns(TruncationWarning) as record:
        out = scorer.transform(df)
    seen = captured_prompts
    messages = [str(w.message) for w in record if issubclass(w.category, TruncationWarning)]
    assert len(messages) == 1
    assert re.search(rf"\b{n_long} prompts\b", messages[0]), messages[0]
    assert "max_length=90" in messages[0]
    assert np.isfinite(out[scorer.output_col]).all()
    cue = cue_ids(path, template)
    prefix = tokenizer.encode(template.split("{")[0])[:-1]
    assert len(seen) == len(df)
    for ids in seen:
        assert len(ids) <= max_length
        assert ids[-len(cue) :] == cue
        assert ids[: len(prefix)] == prefix


def test_truncation_leaves_rows_that_fit_unchanged(complexity_dir):
    df = truncation_frame()
    with pytest.warns(TruncationWarning):
        cut = complexity(complexity_dir, max_length=60).fit_transform(df)
    whole = complexity(complexity_dir).fit_transform(df)
    fits = ["short", "tiny"]
    np.testing.assert_allclose(
        cut.loc[fits, "evol_instruction_score"],
        whole.loc[fits, "evol_instruction_score"],
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        whole.loc[fits, "evol_instruction_score"],
        reference_complexity(complexity_dir, df.loc[fits, "instruction"]),
        atol=TOL,
    )
    longs = ["long1", "long2"]
    assert (
        cut.loc[longs, "evol_instruction_score"] != whole.loc[longs, "evol_instruction_score"]
    ).all()


def test_no_truncation_warning_when_every_prompt_fits(complexity_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        complexity(complexity_dir).fit_transform(rows_frame())


def test_default_max_length_is_the_models_context(complexity_dir, captured_prompts):
    tokenizer, _ = load_reference(str(complexity_dir))
    text = "The capital of France is Paris; the capital of Japan is Tokyo. " * 14
    n_tokens = len(tokenizer.encode(COMPLEXITY_TEMPLATE.format(instruction=text)))
    assert 250 < n_tokens < 2048
    df = pd.DataFrame({"instruction": [text, "Hi"]})
    scorer = complexity(complexity_dir).fit(df)
    with pytest.warns(TruncationWarning, match="max_length=192"):
        out = scorer.transform(df)
    assert len(captured_prompts) == 2
    assert max(len(ids) for ids in captured_prompts) <= 192
    assert np.isfinite(out["evol_instruction_score"]).all()


def test_max_length_too_small_for_the_template_raises(complexity_dir):
    df = rows_frame().iloc[:2]
    with pytest.raises(ValueError, match=r"max_length=20\b"):
        complexity(complexity_dir, max_length=20).fit_transform(df)


# -- failures ------------------------------------------------------------------


def test_tokenizer_without_a_digit_token_raises_naming_it(no_digit_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(no_digit_dir))
    assert tokenizer.convert_tokens_to_ids("3") == tokenizer.unk_token_id
    with pytest.raises(ValueError, match=re.escape("['3']")):
        complexity(no_digit_dir).fit_transform(rows_frame().iloc[:2])


def test_on_error_raise_names_the_failed_row(monkeypatch, complexity_dir):
    df = rows_frame()
    bad = COMPLEXITY_TEMPLATE.format(instruction=df.loc["r9", "instruction"])
    inject_failure(monkeypatch, complexity_dir, bad)
    with pytest.raises(ScoringError, match=r"'r9'") as info:
        complexity(complexity_dir, batch_size=4).fit_transform(df)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_on_error_nan_marks_only_the_failed_row_and_warns_once(
    monkeypatch, complexity_dir, reference
):
    df = rows_frame()
    bad = COMPLEXITY_TEMPLATE.format(instruction=df.loc["r9", "instruction"])
    inject_failure(monkeypatch, complexity_dir, bad)
    with pytest.warns(ScoringFailedWarning) as record:
        out = complexity(complexity_dir, batch_size=4, on_error="nan").fit_transform(df)
    failed = [w for w in record if issubclass(w.category, ScoringFailedWarning)]
    assert len(failed) == 1
    message = str(failed[0].message)
    assert re.search(r"\b1 rows?\b", message) and "'r9'" in message
    scores = out["evol_instruction_score"]
    assert np.isnan(scores["r9"])
    assert (scores != 3.0).all()
    others = scores.drop("r9")
    np.testing.assert_allclose(
        others.to_numpy(), reference["complexity"][df.index != "r9"], rtol=0, atol=TOL
    )


# -- bad input, before any model loads ---------------------------------------------

MISSING_MODEL = "/nonexistent/dir"


@pytest.mark.parametrize("make", [ComplexityScorer, QualityScorer])
def test_missing_model_directory_raises_model_not_found(make):
    df = pd.DataFrame({"instruction": ["Hi"], "response": ["Hello"]})
    with pytest.raises(ModelNotFoundError, match=re.escape(MISSING_MODEL)):
        make(MISSING_MODEL, show_progress_bar=False).fit_transform(df)


GOOD_ROWS = pd.DataFrame(
    {"instruction": ["a", "b"], "response": ["c", "d"]}, index=["ok0", "row-b"]
)


def _with(column: str, value) -> pd.DataFrame:
    df = GOOD_ROWS.copy()
    df[column] = df[column].astype(object)
    df.loc["row-b", column] = value
    return df


@pytest.mark.parametrize(
    ("make", "X", "error", "pattern"),
    [
        pytest.param(
            ComplexityScorer,
            GOOD_ROWS.rename(columns={"instruction": "prompt"}),
            ValueError,
            r"'instruction'.*instruction_col",
            id="missing-instruction-column",
        ),
        pytest.param(
            QualityScorer,
            GOOD_ROWS.drop(columns="response"),
            ValueError,
            r"'response'.*response_col",
            id="missing-response-column",
        ),
        pytest.param(
            ComplexityScorer, _with("instruction", None), ValueError, "row-b", id="none-text"
        ),
        pytest.param(
            QualityScorer, _with("response", np.nan), ValueError, "row-b", id="nan-response"
        ),
        pytest.param(
            ComplexityScorer, _with("instruction", 12), TypeError, "row-b", id="non-string"
        ),
        pytest.param(
            QualityScorer, _with("response", "\ud800"), ValueError, "row-b", id="lone-surrogate"
        ),
    ],
)
def test_bad_rows_raise_before_any_model_loads(loads, make, X, error, pattern):
    scorer = make(MISSING_MODEL, show_progress_bar=False)
    with pytest.raises(error, match=pattern):
        clone(scorer).fit(X)
    scorer.fit(GOOD_ROWS)
    with pytest.raises(error, match=pattern):
        scorer.transform(X)
    assert getattr(scorer, "_model", None) is None
    assert loads == {"tokenizer": [], "model": []}


def _conversations(bad) -> pd.DataFrame:
    good = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    return pd.DataFrame({"messages": [good, bad]}, index=["ok0", "conv-7"])


BAD_CONVERSATIONS = {
    "unknown-role": [{"role": "robot", "content": "Hi"}],
    "message-without-text": [{"role": "user", "content": None}],
    "message-without-text-key": [{"from": "human"}],
    "two-replies-in-a-row": [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello"},
        {"from": "gpt", "value": "Again"},
    ],
    "two-user-messages-in-a-row": [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hi again"},
    ],
    "reply-first": [{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"}],
    "system-only": [{"role": "system", "content": "Be brief."}],
    "lone-surrogate": [{"role": "user", "content": "Hi \ud800"}],
    "empty-list": [],
    "non-list-cell": "Hi there",
    "missing-cell": None,
}


@pytest.mark.parametrize("make", [ComplexityScorer, QualityScorer])
@pytest.mark.parametrize("bad", list(BAD_CONVERSATIONS))
def test_malformed_conversation_raises_naming_the_row(loads, make, bad):
    X = _conversations(BAD_CONVERSATIONS[bad])
    scorer = make(MISSING_MODEL, messages_col="messages", show_progress_bar=False)
    with pytest.raises((ValueError, TypeError), match="conv-7"):
        scorer.fit(X)
    scorer.fit(X.iloc[:1])
    with pytest.raises((ValueError, TypeError), match="conv-7"):
        scorer.transform(X)
    assert getattr(scorer, "_model", None) is None
    assert loads == {"tokenizer": [], "model": []}


def test_missing_messages_column_names_column_and_parameter():
    scorer = ComplexityScorer(MISSING_MODEL, messages_col="chat", show_progress_bar=False)
    with pytest.raises(ValueError, match=r"'chat'.*messages_col"):
        scorer.fit(GOOD_ROWS)


# -- conversations -------------------------------------------------------------

SHAREGPT = [
    [
        {"from": "human", "value": "How do I sort a list in Python?"},
        {"from": "gpt", "value": "Use sorted(xs)."},
        {"from": "human", "value": "And in reverse order, please?"},
        {"from": "gpt", "value": "sorted(xs, reverse=True)"},
    ],
    [
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello! How can I help?"},
        {"from": "human", "value": "Write a short poem about the sea."},
    ],
    [{"from": "human", "value": "What is 2+2?"}],
]
_OPENAI_ROLE = {"human": "user", "gpt": "assistant"}
OPENAI = [
    [{"role": _OPENAI_ROLE[m["from"]], "content": m["value"]} for m in conv] for conv in SHAREGPT
]
CONV_LABELS = ["c2", "c0", "c1"]


def turns(conv) -> list[tuple[str, str | None]]:
    """(user message, following reply or None) of a ShareGPT conversation."""
    out = []
    for k, m in enumerate(conv):
        if m["from"] == "human":
            nxt = conv[k + 1]["value"] if k + 1 < len(conv) else None
            out.append((m["value"], nxt))
    return out


def conversation_frame(convs) -> pd.DataFrame:
    return pd.DataFrame({"messages": convs}, index=CONV_LABELS)


@pytest.fixture(scope="session")
def conversation_scores(complexity_dir, quality_dir) -> dict:
    df = conversation_frame(SHAREGPT)
    cx = complexity(complexity_dir, messages_col="messages").fit_transform(df)
    qx = quality(quality_dir, messages_col="messages").fit_transform(df)
    return {"complexity": cx, "quality": qx}


def test_conversation_output_is_one_score_per_user_message(conversation_scores):
    for name, col in (("complexity", "evol_instruction_score"), ("quality", "evol_response_score")):
        out = conversation_scores[name]
        assert out.index.tolist() == CONV_LABELS
        assert out[col].dtype == object
        for cell, conv in zip(out[col], SHAREGPT, strict=True):
            assert isinstance(cell, list)
            assert len(cell) == len(turns(conv))
            assert all(isinstance(v, float) for v in cell)


def test_conversation_complexity_per_turn_equals_deita_on_each_user_message(
    complexity_dir, conversation_scores
):
    out = conversation_scores["complexity"]["evol_instruction_score"]
    for cell, conv in zip(out, SHAREGPT, strict=True):
        expected = reference_complexity(complexity_dir, [u for u, _ in turns(conv)])
        np.testing.assert_allclose(cell, expected, rtol=0, atol=TOL)


def test_conversation_quality_per_turn_equals_deita_with_empty_trailing_response(
    quality_dir, conversation_scores
):
    out = conversation_scores["quality"]["evol_response_score"]
    for cell, conv in zip(out, SHAREGPT, strict=True):
        pairs = turns(conv)
        expected = reference_quality(
            quality_dir, [u for u, _ in pairs], [r if r is not None else "" for _, r in pairs]
        )
        np.testing.assert_allclose(cell, expected, rtol=0, atol=TOL)


def test_sharegpt_and_openai_forms_give_identical_turn_scores(
    complexity_dir, quality_dir, conversation_scores
):
    df = conversation_frame(OPENAI)
    cx = complexity(complexity_dir, messages_col="messages").fit_transform(df)
    qx = quality(quality_dir, messages_col="messages").fit_transform(df)
    assert cx["evol_instruction_score"].tolist() == (
        conversation_scores["complexity"]["evol_instruction_score"].tolist()
    )
    assert qx["evol_response_score"].tolist() == (
        conversation_scores["quality"]["evol_response_score"].tolist()
    )


@pytest.mark.parametrize("layout", ["sharegpt", "openai"])
def test_system_message_is_not_a_turn(quality_dir, conversation_scores, layout):
    if layout == "sharegpt":
        system = {"from": "system", "value": "You are terse."}
        convs = [[system, *conv] for conv in SHAREGPT]
    else:
        system = {"role": "system", "content": "You are terse."}
        convs = [[system, *conv] for conv in OPENAI]
    out = quality(quality_dir, messages_col="messages").fit_transform(conversation_frame(convs))
    assert out["evol_response_score"].tolist() == (
        conversation_scores["quality"]["evol_response_score"].tolist()
    )


def test_deita_selector_sums_per_turn_products(conversation_scores):
    df = conversation_scores["complexity"].copy()
    df["evol_response_score"] = conversation_scores["quality"]["evol_response_score"]
    df["embedding"] = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    out = DeitaSelector(output="annotate", diversity_threshold=0.0).fit_transform(df)
    expected = [
        float(np.sum(np.multiply(c, q)))
        for c, q in zip(df["evol_instruction_score"], df["evol_response_score"], strict=True)
    ]
    np.testing.assert_allclose(out["deita_score"].loc[df.index], expected, rtol=1e-12)


# -- the score cache -----------------------------------------------------------


def test_cache_serves_a_clone_without_running_the_model(tmp_path, quality_dir, reference):
    df = rows_frame()
    first = quality(quality_dir, cache=tmp_path).fit(df)
    out1 = first.transform(df)
    assert any(tmp_path.rglob("*.npz"))
    second = clone(first).fit(df)
    with counting_model_runs(second) as runs:
        out2 = second.transform(df)
    assert second._model is first._model  # the hook watched the model that scores
    assert runs == []
    pd.testing.assert_series_equal(out2["evol_response_score"], out1["evol_response_score"])
    np.testing.assert_allclose(out1["evol_response_score"], reference["quality"], atol=TOL)


def test_cache_scores_only_new_rows(tmp_path, complexity_dir):
    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df.iloc[:6])
    scorer = complexity(complexity_dir, cache=tmp_path).fit(df)
    with counting_model_runs(scorer) as runs:
        scorer.transform(df)
    assert runs and max(runs) == 4  # the four new rows, in one batch of up to 8


def test_cache_does_not_keep_a_failed_row(monkeypatch, tmp_path, complexity_dir, reference):
    df = rows_frame()
    bad = COMPLEXITY_TEMPLATE.format(instruction=df.loc["r9", "instruction"])
    with monkeypatch.context() as patch:
        inject_failure(patch, complexity_dir, bad)
        with pytest.warns(ScoringFailedWarning):
            out1 = complexity(complexity_dir, cache=tmp_path, on_error="nan").fit_transform(df)
    assert np.isnan(out1.loc["r9", "evol_instruction_score"])
    scorer = complexity(complexity_dir, cache=tmp_path, on_error="nan").fit(df)
    with counting_model_runs(scorer) as runs:
        out2 = scorer.transform(df)
    assert runs and set(runs) == {1}  # only the row that failed runs again
    np.testing.assert_allclose(out2["evol_instruction_score"], reference["complexity"], atol=TOL)


def test_cache_is_keyed_by_model(tmp_path, complexity_dir, quality_dir, complexity_out):
    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df)
    out = complexity(quality_dir, cache=tmp_path).fit_transform(df)
    diff = out["evol_instruction_score"] - complexity_out["evol_instruction_score"]
    assert diff.abs().max() > 0.05


# -- pickling, loading -----------------------------------------------------------


def test_pickle_holds_no_weights_and_reloads(complexity_dir, complexity_out):
    df = rows_frame()
    scorer = complexity(complexity_dir).fit(df)
    scorer.transform(df.iloc[:2])
    assert scorer._model is not None
    blob = pickle.dumps(scorer)
    assert len(blob) < 20_000
    restored = pickle.loads(blob)
    assert getattr(restored, "_model", None) is None
    out = restored.transform(df)
    pd.testing.assert_frame_equal(out, complexity_out)


def test_pickle_with_store_weights_keeps_the_model(complexity_dir, complexity_out):
    df = rows_frame()
    scorer = complexity(complexity_dir, store_weights_in_pickle=True).fit(df)
    scorer.transform(df.iloc[:2])
    blob = pickle.dumps(scorer)
    assert len(blob) > 50_000
    restored = pickle.loads(blob)
    assert getattr(restored, "_model", None) is not None
    assert restored._model is not scorer._model
    pd.testing.assert_frame_equal(restored.transform(df), complexity_out)


def test_trust_remote_code_is_false_by_default(record_loads, complexity_dir):
    complexity(complexity_dir).fit_transform(rows_frame().iloc[:2])
    assert record_loads["tokenizer"] and record_loads["model"]
    for kwargs in record_loads["tokenizer"] + record_loads["model"]:
        assert kwargs.get("trust_remote_code") is False


def test_model_is_loaded_in_float32_by_default(record_loads, complexity_dir):
    scorer = complexity(complexity_dir).fit(rows_frame().iloc[:2])
    scorer.transform(rows_frame().iloc[:2])
    assert [k.get("dtype") for k in record_loads["model"]] == [torch.float32]
    assert next(scorer._model.model.parameters()).dtype == torch.float32


def test_constructing_and_fitting_load_nothing(record_loads, complexity_dir):
    scorer = complexity(complexity_dir)
    assert not hasattr(scorer, "_model")
    scorer.fit(rows_frame())
    assert getattr(scorer, "_model", None) is None
    assert record_loads == {"tokenizer": [], "model": []}


def test_model_is_loaded_once_and_shared_by_equal_estimators(record_loads, complexity_dir):
    df = rows_frame().iloc[:3]
    first = complexity(complexity_dir).fit(df)
    first.transform(df)
    first.transform(df)
    second = complexity(complexity_dir, batch_size=2).fit(df)
    second.transform(df)
    third = clone(first).fit(df)
    third.transform(df)
    assert len(record_loads["model"]) == 1
    assert len(record_loads["tokenizer"]) == 1
    assert first._model is second._model is third._model


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
