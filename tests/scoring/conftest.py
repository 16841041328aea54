"""DEITA's one-row ``generate`` loop, written independently of skdeita, and the
tiny scorer models, scorers and recorders shared by the DEITA scorer tests
(test_deita*.py). The test modules skip themselves without torch and
transformers."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skdeita import ComplexityScorer, QualityScorer
from skdeita.utils import _model_cache

try:
    import torch
    import transformers
except ImportError:  # each test module skips itself (pytest.importorskip)
    torch = transformers = None

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


# -- a missing model and good rows, for the checks before any model loads --------

MISSING_MODEL = "/nonexistent/dir"


GOOD_ROWS = pd.DataFrame(
    {"instruction": ["a", "b"], "response": ["c", "d"]}, index=["ok0", "row-b"]
)
