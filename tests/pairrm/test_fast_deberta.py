"""The fast DeBERTa-v2 forward (``skdeita.pairrm._fast_deberta``) computes
what the model's own layers compute, on PairRM's shape (both position terms,
shared position projections, 256 buckets), for pairs shorter and longer than
the buckets' span (where it cuts the position tables, and where it cannot)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [
    pytest.mark.pairrm,
    pytest.mark.filterwarnings("ignore::RuntimeWarning:dataclasses_json"),
]

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def full_indices(config, length):
    """transformers' own index tensors of a length: (c2p index, p2c index)."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import build_relative_position

    probe = torch.empty(1, length, 1)
    buckets = getattr(config, "position_buckets", -1)
    max_relative = getattr(config, "max_relative_positions", -1)
    if max_relative < 1:
        max_relative = config.max_position_embeddings
    rel = build_relative_position(probe, probe, bucket_size=buckets, max_position=max_relative)
    rel = rel[0].long()
    span = buckets if buckets > 0 else max_relative
    return (rel + span).clamp(0, 2 * span - 1), (-rel + span).clamp(0, 2 * span - 1)


@pytest.mark.parametrize(
    "config_kwargs",
    [
        dict(position_buckets=256, max_relative_positions=-1),  # PairRM's
        dict(position_buckets=-1, max_relative_positions=64),
    ],
)
@pytest.mark.parametrize("lengths", [(1, 7, 300), (700, 40, 255, 256, 257)])
def test_relative_index_cuts_the_tables_to_exactly_the_rows_a_length_reads(config_kwargs, lengths):
    from transformers import DebertaV2Config

    from skdeita.pairrm._fast_deberta import RelativeIndex

    config = DebertaV2Config(relative_attention=True, **config_kwargs)
    index = RelativeIndex(config)
    for length in lengths:  # growing and shrinking: cut from the longest built
        c2p, p2c, lo, hi = index.get(length, "cpu")
        want_c2p, want_p2c = full_indices(config, length)
        assert torch.equal(c2p + lo, want_c2p) and torch.equal(p2c + lo, want_p2c)
        read = torch.cat([want_c2p.flatten(), want_p2c.flatten()])
        assert (lo, hi) == (int(read.min()), int(read.max()) + 1)


def pairs_frame(seed, source_words, cand_words, counts=(4, 2, 3)):
    import pandas as pd

    rng = np.random.default_rng(seed)
    words = "the sea wind night poem bread flour water salt sleep list python paris".split()

    def text(lo, hi):
        return " ".join(rng.choice(words, rng.integers(lo, hi)))

    return pd.DataFrame(
        {
            "input": [text(*source_words) for _ in counts],
            "candidates": [[text(*cand_words) for _ in range(c)] for c in counts],
        }
    )


@pytest.mark.parametrize("block", [None, 2000, 2**15])
@pytest.mark.parametrize(
    ("source_words", "cand_words"),
    [((3, 30), (1, 40)), ((150, 400), (60, 200))],
    ids=["shorter-than-the-span", "longer-than-the-span"],
)
def test_fast_forward_equals_the_models_own_on_pairrms_shape(
    tiny_ranker_dir, block, source_words, cand_words
):
    from skdeita import PairRMRanker
    from skdeita.pairrm._engine import PairScorer

    df = pairs_frame(0, source_words, cand_words)
    scorer = PairRMRanker(str(tiny_ranker_dir), show_progress_bar=False).fit(df)._get_model()
    assert scorer.fast_forward
    fast = PairScorer(scorer.loaded)
    # None: one block; 2000: blocks of query rows; 2**15: a few whole short
    # sequences per block (row blocks for the long ones)
    fast.block_elements = block
    plain = PairScorer(scorer.loaded, fast_forward=False)
    sources, cands = df["input"].tolist(), df["candidates"].tolist()
    longest = 0  # the longest pair: the source and its row's two longest candidates
    for src, cand_segments in fast._rows_tokens(fast._collator(*fast.limits()), sources, cands):
        sizes = sorted(sum(len(part) for part in c) for c in cand_segments)
        longest = max(longest, sum(len(part) for part in src) + sum(sizes[-2:]))
    assert (longest < fast.relative_index.span) == (source_words[1] < 100)  # as its id says
    mats = fast.matrices(sources, cands, max_batch_tokens=900)
    for ours, theirs in zip(mats, plain.matrices(sources, cands), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-3)
