"""Rank candidate responses with PairRM and build DPO preference pairs.

Pass a local PairRM directory (llm-blender's layout, e.g. a download of
llm-blender/PairRM with microsoft/deberta-v3-large in its backbone/ folder) as
the first argument. Without one, a tiny *randomly initialised* ranker is built
so that the example runs anywhere: its rankings are meaningless.
"""

import sys
import tempfile

import pandas as pd

from skdeita import PairRMRanker, preference_pairs
from skdeita._testing import make_tiny_pairrm

rows = pd.DataFrame(
    {
        "input": ["Hello, how are you?", "Give me a tip to sleep better."],
        "candidates": [["fine", "good", "bad"], ["Keep a fixed schedule.", "Sleep.", "No idea."]],
    }
)

with tempfile.TemporaryDirectory() as tmp:
    model = sys.argv[1] if len(sys.argv) > 1 else str(make_tiny_pairrm(tmp))
    ranker = PairRMRanker(model, return_scores=True, show_progress_bar=False)
    ranked = ranker.fit_transform(rows)
    print(ranked[["input", "ranks", "ranked_candidates"]].to_string())
    pairs = preference_pairs(ranked)
    print(pairs.to_string())
    probs = ranker.compare(["Hello, how are you?"], ["fine"], ["bad"])
    print(f"P('fine' beats 'bad') = {probs[0]:.3f}")

assert len(pairs) == 2 and (pairs["chosen"] != pairs["rejected"]).all()
