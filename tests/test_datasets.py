"""The embedded sample."""

from __future__ import annotations

from skdeita.datasets import load_sample


def test_sample_is_deterministic_and_documented_shape():
    a, b = load_sample(), load_sample()
    assert a.equals(b)
    assert a.shape == (320, 6)
    assert set(a["kind"]) == {"plain", "paraphrase", "detailed", "rephrased", "duplicate", "weak"}


def test_sample_scores_lie_on_deitas_scale():
    df = load_sample()
    for col in ("evol_instruction_score", "evol_response_score"):
        assert df[col].between(1, 6).all()
    weak = df[df["kind"] == "weak"]["evol_response_score"]
    assert weak.max() < df[df["kind"] == "detailed"]["evol_response_score"].min()


def test_duplicates_are_exact_copies_of_plain_rows():
    df = load_sample()
    plain = set(map(tuple, df[df["kind"] == "plain"][["instruction", "response"]].values))
    dups = set(map(tuple, df[df["kind"] == "duplicate"][["instruction", "response"]].values))
    assert dups <= plain
