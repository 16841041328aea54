"""Quick start: embed, score-first diversity-aware selection, a look at the result."""

import warnings

from sklearn.pipeline import make_pipeline

from skdeita import BudgetNotReachedWarning, DeitaSelector, EmbeddingTransformer
from skdeita.datasets import load_sample

pool = load_sample()
curate = make_pipeline(
    EmbeddingTransformer(template="{instruction}\n\n{response}", show_progress_bar=False),
    DeitaSelector(data_budget=80, diversity_threshold=0.1),
)
with warnings.catch_warnings():
    warnings.simplefilter("error", BudgetNotReachedWarning)  # 80 distinct rows exist
    subset = curate.fit_transform(pool)

print(f"kept {len(subset)} of {len(pool)} rows")
print(subset["kind"].value_counts().to_string())
print(subset[["instruction", "deita_score", "nearest_neighbor_distance"]].head(5).to_string())
# No duplicates or weak answers, and never two versions of the same task.
assert not subset["kind"].isin(["duplicate", "weak"]).any()
assert subset["response"].is_unique
