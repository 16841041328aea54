"""ComplexityScorer and QualityScorer on conversations: one score per user
message, each equal to DEITA's loop on that turn, in ShareGPT or OpenAI form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector

from .conftest import TOL, complexity, quality, reference_complexity, reference_quality

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


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
