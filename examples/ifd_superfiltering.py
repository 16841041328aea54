"""Superfiltering's recipe: IFD from a small model, drop IFD >= 1, keep the highest IFD.

Superfiltering (Li et al. 2024) scores every row with GPT-2's
Instruction-Following Difficulty (IFD), drops the rows whose instruction does
not help predict the response (IFD >= 1), and keeps the top 10% by IFD. With
the real GPT-2 the scorer is ``IFDScorer("gpt2")`` (124M parameters, runs on
a CPU). So that this script runs offline in seconds, a tiny random GPT-2
built on the spot stands in for it: its IFDs are noise around 1, so the
script shows the mechanics, not which rows GPT-2 would pick.
"""

import tempfile
import warnings

from sklearn.pipeline import make_pipeline

from skdeita import BudgetNotReachedWarning, DeitaSelector, EmbeddingTransformer, IFDScorer
from skdeita._testing import make_tiny_gpt2
from skdeita.datasets import load_sample

pool = load_sample()
pool = pool[pool["kind"].isin(["plain", "detailed", "weak"])]  # 160 rows

with tempfile.TemporaryDirectory() as tmp:
    gpt2 = make_tiny_gpt2(tmp, n_positions=320)  # stands in for "gpt2"
    scorer = IFDScorer(gpt2, perplexity_cols=("ppl_A_condition", "ppl_A_direct"))
    scored = scorer.set_params(show_progress_bar=False).fit_transform(pool)

print(scored[["kind", "ppl_A_condition", "ppl_A_direct", "ifd_score"]].head(4).round(3).to_string())
too_hard = scored["ifd_score"] >= 1
print(f"\n{too_hard.sum()} of {len(scored)} rows have IFD >= 1: the instruction does not help")
kept = scored[~too_hard]

# Superfiltering: the top 10% by IFD. DeitaSelector with ifd_score as its only
# score and no diversity check is exactly a sort (ties keep input order).
budget = int(0.1 * len(scored))
embed = EmbeddingTransformer(template="{instruction}\n\n{response}", show_progress_bar=False)
kept = embed.fit_transform(kept)
top = DeitaSelector(
    budget, diversity_threshold=0.0, instruction_score_col=None, response_score_col="ifd_score"
).fit_transform(kept)
plain_sort = kept.sort_values("ifd_score", ascending=False, kind="stable").head(budget)
assert top.index.tolist() == plain_sort.index.tolist()
print(f"Superfiltering's top 10%: {len(top)} rows, IFD from {top['ifd_score'].min():.3f} up")

# skdeita's addition: DEITA's diversity check on top (cosine distance >= 0.1
# from every row kept before), with IFD times DEITA's complexity as the score.
diverse = DeitaSelector(budget, response_score_col="ifd_score")
with warnings.catch_warnings():
    warnings.simplefilter("error", BudgetNotReachedWarning)
    picked = diverse.fit_transform(kept)
print(f"with the diversity check: {len(picked)} rows from {picked['topic'].nunique()} topics")
print(picked[["topic", "kind", "deita_score", "nearest_neighbor_distance"]].head(8).to_string())
assert (picked["nearest_neighbor_distance"] >= 0.1).all()
assert (picked["ifd_score"] < 1).all()

# The same as one pipeline over the kept rows (the IFD >= 1 filter is a row
# filter, so it sits between scoring and selection, outside the pipeline).
again = make_pipeline(embed, diverse).fit_transform(scored[~too_hard])
assert again.index.tolist() == picked.index.tolist()
