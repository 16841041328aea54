"""Incremental selection: add the best new rows to an existing curated set.

A team has a curated set and receives new rows. ``DeitaSelector(reference=...)``
keeps the best new rows that are diverse against the curated set *and*
against each other: DEITA's greedy walk with its kept set seeded by the
curated rows. Curated rows are not returned and do not count toward the
budget.
"""

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist

from skdeita import DeitaSelector, EmbeddingTransformer
from skdeita.datasets import load_sample

pool = load_sample()
embedded = EmbeddingTransformer(
    template="{instruction}\n\n{response}", show_progress_bar=False
).fit_transform(pool)

# Last month's curated set: 24 rows chosen from four topics.
old_topics = ["python", "cooking", "travel", "health"]
curated = DeitaSelector(24).fit_transform(embedded[embedded["topic"].isin(old_topics)])

# This month's rows: all eight topics, again with paraphrases, rephrasings
# and duplicates of what was curated (rows already curated are left out).
new = embedded.drop(index=curated.index)

budget = 16
incremental = DeitaSelector(budget, reference=curated).fit_transform(new)
fresh = DeitaSelector(budget).fit_transform(new)


def nearest_curated(rows):
    a, b = np.stack(rows["embedding"]), np.stack(curated["embedding"])
    return cdist(a, b, "cosine").min(axis=1)


print(f"curated: {len(curated)} rows; new: {len(new)} rows; budget: {budget}")
print("\nincremental (reference=curated):")
print(incremental[["topic", "kind", "deita_score", "nearest_neighbor_distance"]].to_string())
print(f"\ntopics kept incrementally: {incremental['topic'].value_counts().to_dict()}")
print(f"topics of a fresh selection: {fresh['topic'].value_counts().to_dict()}")
# Every new row kept is at least the threshold from every curated row...
assert (nearest_curated(incremental) >= 0.1).all()
# ...while a fresh selection spends budget on near-copies of curated rows.
near_copies = int((nearest_curated(fresh) < 0.1).sum())
print(f"a fresh selection would re-add {near_copies} near-copies of curated rows")
assert near_copies > 0

# The same as one greedy walk over curated + new rows, the curated rows first.
# (A score above every new row's keeps the curated rows first, in their order.)
new_scores = new["evol_instruction_score"] * new["evol_response_score"]
priority = np.concatenate([1e6 - np.arange(len(curated)), new_scores.to_numpy()])
both = pd.concat([curated, new]).assign(priority=priority)
walk = DeitaSelector(
    len(curated) + budget, instruction_score_col="priority", response_score_col=None
).fit_transform(both)
assert walk.index[: len(curated)].tolist() == curated.index.tolist()
assert walk.index[len(curated) :].tolist() == incremental.index.tolist()
