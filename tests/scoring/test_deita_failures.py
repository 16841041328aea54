"""ComplexityScorer and QualityScorer failures: a row that fails to score, a
tokenizer without a digit, and bad rows or conversations, named before any
model loads."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skdeita import ComplexityScorer, QualityScorer
from skdeita.exceptions import ModelNotFoundError, ScoringError, ScoringFailedWarning

from .conftest import (
    COMPLEXITY_TEMPLATE,
    GOOD_ROWS,
    MISSING_MODEL,
    TOL,
    complexity,
    inject_failure,
    rows_frame,
)

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


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


@pytest.mark.parametrize("make", [ComplexityScorer, QualityScorer])
def test_missing_model_directory_raises_model_not_found(make):
    df = pd.DataFrame({"instruction": ["Hi"], "response": ["Hello"]})
    with pytest.raises(ModelNotFoundError, match=re.escape(MISSING_MODEL)):
        make(MISSING_MODEL, show_progress_bar=False).fit_transform(df)


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
