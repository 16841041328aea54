"""ComplexityScorer and QualityScorer against DEITA's own one-row ``generate`` loop.

The reference below follows DEITA's transformers path (hkust-nlp/deita,
``src/deita/selection/scorer/base.py``; reference-semantics.md section 6)
row by row, with its own copy of the two templates: it shares no code with
skdeita, so a drift in skdeita's templates, digit ids, padding or batching
shows up as a score difference. The scorer models are tiny random Llamas
whose tokenizer is trained at build time (digit ids nothing like Llama's).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector

from .conftest import (
    COMPLEXITY_TEMPLATE,
    LABELS,
    QUALITY_TEMPLATE,
    TOL,
    complexity,
    load_reference,
    quality,
    reference_complexity,
    reference_quality,
    rows_frame,
)

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


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
    from skdeita.scoring import _first_token

    monkeypatch.setattr(_first_token, "_PLAIN_HEAD_MODELS", frozenset())
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


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_identical_rows_get_identical_bits_and_are_scored_once(
    quality_dir, monkeypatch, batch_size
):
    from skdeita.scoring import _deita

    scored: list[int] = []
    real = _deita.expected_digit_scores

    def counting(lm, sequences, digit_ids):
        scored.extend(len(s) for s in sequences)
        return real(lm, sequences, digit_ids)

    monkeypatch.setattr(_deita, "expected_digit_scores", counting)
    df = rows_frame()
    # The longest and the shortest row, three times each, far apart in the input.
    pool = pd.concat([df.iloc[[1, 2]], df, df.iloc[[2, 1]], df.iloc[[1]]])
    pool.index = [f"x{i}" for i in range(len(pool))]
    out = quality(quality_dir, batch_size=batch_size).fit_transform(pool)
    values = out["evol_response_score"].to_numpy()
    longest, shortest = values[[0, 13, 14]], values[[1, 4, 12]]
    assert len(set(longest.tobytes()[i : i + 8] for i in range(0, 24, 8))) == 1
    assert len(set(shortest.tobytes()[i : i + 8] for i in range(0, 24, 8))) == 1
    assert len(scored) == len(df)  # each distinct prompt reached the model once
