"""ComplexityScorer and QualityScorer on prompts longer than ``max_length``: cut
in the middle, keeping the template's start and closing cue, with one warning."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from skdeita.exceptions import TruncationWarning

from .conftest import (
    COMPLEXITY_TEMPLATE,
    QUALITY_TEMPLATE,
    TOL,
    complexity,
    load_reference,
    quality,
    reference_complexity,
    rows_frame,
)

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


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


def deita_score_of_ids(path, ids: list[int]) -> float:
    """DEITA's procedure (generate, first scores, E[digit]) on these exact ids."""
    tokenizer, model = load_reference(str(path))
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=2,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.eos_token_id,
        )
    digits = [tokenizer.convert_tokens_to_ids(d) for d in "123456"]
    picked = out.scores[0][0, digits].double().numpy()
    probs = np.exp(picked - picked.max())
    return float((probs / probs.sum()) @ np.arange(1.0, 7.0))


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
    # Each row's score is DEITA's score of the (cut) prompt that was scored.
    expected = [deita_score_of_ids(path, ids) for ids in seen]
    np.testing.assert_allclose(
        np.sort(out[scorer.output_col].to_numpy()), np.sort(expected), rtol=0, atol=TOL
    )
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
    expected = [deita_score_of_ids(complexity_dir, ids) for ids in captured_prompts]
    np.testing.assert_allclose(
        np.sort(out["evol_instruction_score"].to_numpy()), np.sort(expected), rtol=0, atol=TOL
    )


def test_max_length_too_small_for_the_template_raises(complexity_dir):
    df = rows_frame().iloc[:2]
    with pytest.raises(ValueError, match=r"max_length=20\b"):
        complexity(complexity_dir, max_length=20).fit_transform(df)
