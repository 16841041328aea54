"""Any llm-blender pairwise ranker ranks exactly as llm-blender, with default parameters.

The rankers (``conftest.ODD_RANKERS``) have their own limits (not PairRM's
1224 / 412) and settings (head width, backbone shape and kind); the texts are
longer than the limits and the rows have different numbers of candidates.
llm-blender's truncation of a row depends on the other rows of its batch, so
it ranks one row per ``rank`` call.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from skdeita import PairRMRanker

from .conftest import ODD_RANKERS, reference_blender_for

pytestmark = [
    pytest.mark.pairrm,
    # llm-blender's RankerConfig leaves optional fields None.
    pytest.mark.filterwarnings("ignore::RuntimeWarning:dataclasses_json"),
]

WORDS = (
    "the sea wind night poem bread flour water salt sleep tips list tuple python "
    "paris tokyo france japan numbers order morning answer helpful honest"
).split()


def ragged_rows(seed: int, counts=(3, 1, 4, 2), source_words=(20, 60), cand_words=(2, 45)):
    rng = np.random.default_rng(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS, rng.integers(lo, hi)))

    return pd.DataFrame(
        {
            "input": [text(*source_words) for _ in counts],
            "candidates": [[text(*cand_words) for _ in range(c)] for c in counts],
        },
        index=[f"r{i}" for i in range(len(counts))],
    )


def blender_rows(blender, df, **kwargs):
    """llm-blender's scores and ranks, one ``rank`` call per row."""
    from llm_blender.gpt_eval.utils import get_ranks_from_scores  # what rank() ranks with

    scores, ranks = [], []
    for src, cands in zip(df["input"], df["candidates"], strict=True):
        s = blender.rank([src], [cands], return_scores=True, batch_size=1, **kwargs)[0]
        scores.append(s)
        ranks.append(get_ranks_from_scores(s).tolist())
    return scores, ranks


@pytest.fixture(scope="module")
def tokenizer_of(odd_blender):
    return odd_blender.ranker_tokenizer


def test_texts_are_longer_than_the_rankers_limits(odd_ranker_dir, tokenizer_of):
    config = json.loads((odd_ranker_dir / "config.json").read_text())
    assert (config["source_maxlength"], config["candidate_maxlength"]) != (1224, 412)
    df = ragged_rows(0)
    assert max(len(tokenizer_of.encode(s)) for s in df["input"]) > config["source_maxlength"]
    longest = max(len(tokenizer_of.encode(c)) for cs in df["candidates"] for c in cs)
    assert longest > config["candidate_maxlength"] + config["source_maxlength"] // 2


@pytest.mark.parametrize("seed, counts", [(0, (3, 1, 4, 2)), (1, (2, 5, 1))])
def test_default_parameters_rank_exactly_as_llm_blender(odd_ranker_dir, odd_blender, seed, counts):
    df = ragged_rows(seed, counts)
    ranker = PairRMRanker(str(odd_ranker_dir), return_scores=True, show_progress_bar=False)
    out = ranker.fit_transform(df)
    scores, ranks = blender_rows(odd_blender, df)
    assert out["ranks"].tolist() == ranks
    for ours, theirs in zip(out["scores"], scores, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)


def test_limits_and_settings_come_from_the_rankers_config(odd_ranker_dir, odd_blender):
    ranker = PairRMRanker(str(odd_ranker_dir), show_progress_bar=False).fit(ragged_rows(0))
    expected = ODD_RANKERS[odd_ranker_dir.name]
    assert ranker.source_max_length_ == expected["source_maxlength"]
    assert ranker.candidate_max_length_ == expected["candidate_maxlength"]
    assert ranker.source_max_length is None and ranker.candidate_max_length is None
    settings = ranker.ranker_config_
    assert settings["n_tasks"] == expected.get("n_tasks", 1)
    assert settings["ranker_type"] == "pairranker"
    assert settings["model_type"] == odd_blender.ranker_config.model_type
    assert ranker.backbone_ == str(odd_ranker_dir / "backbone")
    assert ranker.dtype_ == "float32"


def test_explicit_limits_override_the_config_as_in_llm_blender(odd_ranker_dir, odd_blender):
    df = ragged_rows(2)
    ranker = PairRMRanker(
        str(odd_ranker_dir),
        source_max_length=30,
        candidate_max_length=12,
        return_scores=True,
        show_progress_bar=False,
    ).fit(df)
    assert (ranker.source_max_length_, ranker.candidate_max_length_) == (30, 12)
    out = ranker.transform(df)
    scores, ranks = blender_rows(odd_blender, df, source_max_length=30, candidate_max_length=12)
    assert out["ranks"].tolist() == ranks
    for ours, theirs in zip(out["scores"], scores, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)


def test_batching_never_changes_results(odd_ranker_dir):
    df = ragged_rows(3)
    base = PairRMRanker(str(odd_ranker_dir), return_scores=True, show_progress_bar=False)
    one = base.fit_transform(df)
    tiny = base.set_params(max_batch_tokens=64, batch_size=2).fit_transform(df)
    assert one["ranks"].tolist() == tiny["ranks"].tolist()
    for a, b in zip(one["scores"], tiny["scores"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("block", [None, 700])
def test_fast_deberta_forward_equals_the_models_own(odd_ranker_dir, block):
    """Row blocks (small here: several per layer) and the three-row last layer."""
    from skdeita.pairrm._engine import PairScorer

    ranker = PairRMRanker(str(odd_ranker_dir), show_progress_bar=False).fit(ragged_rows(0))
    scorer = ranker._get_model()
    assert scorer.fast_forward == odd_ranker_dir.name.startswith("deberta")
    if not scorer.fast_forward:
        return
    df = ragged_rows(4)
    fast = PairScorer(scorer.loaded)
    fast.block_elements = block
    plain = PairScorer(scorer.loaded, fast_forward=False)
    sources, cands = df["input"].tolist(), df["candidates"].tolist()
    mats = fast.matrices(sources, cands, max_batch_tokens=400)
    for ours, theirs in zip(mats, plain.matrices(sources, cands), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)


def test_causal_and_encoder_decoder_backbones_rank_as_llm_blender(other_backbone_dir):
    df = ragged_rows(5, counts=(3, 2, 1), source_words=(10, 40), cand_words=(2, 30))
    ranker = PairRMRanker(str(other_backbone_dir), return_scores=True, show_progress_bar=False)
    out = ranker.fit_transform(df)
    assert not ranker._get_model().fast_forward
    scores, ranks = blender_rows(reference_blender_for(other_backbone_dir), df)
    assert out["ranks"].tolist() == ranks
    for ours, theirs in zip(out["scores"], scores, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)
