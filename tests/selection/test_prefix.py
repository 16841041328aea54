"""The prefix property: a smaller budget keeps the first rows of a larger one.

The walk visits the rows in one order and the budget only says where it
stops, so the selection with budget k is the first k rows of the selection
with any budget k' > k, and one walk with no budget gives every smaller
budget's selection, status and attribution (``deita_rank``, ``deita_visit``).
Tested against separate runs and a plain sequential loop written here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from skdeita import DeitaSelector, deita_select


def plain_kept(emb, scores, threshold):
    """The paper's rule one row at a time, no budget: the kept rows in order."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    kept: list[int] = []
    for i in sorted(range(len(emb)), key=lambda i: -float(scores[i])):
        if not kept or cdist(unit[i : i + 1], unit[kept], "cosine").min() >= threshold:
            kept.append(i)
    return kept


def pool(seed=0, n=400, dim=8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(30, dim))
    emb = centers[rng.integers(0, 30, n)] + 0.2 * rng.normal(size=(n, dim))
    scores = rng.integers(1, 6, n) * rng.uniform(1, 6, n).round(1)
    scores[rng.integers(0, n, 5)] = np.nan
    return emb, scores


def frame(emb, scores):
    return pd.DataFrame(
        {"embedding": list(emb), "evol_instruction_score": scores, "evol_response_score": scores},
        index=pd.RangeIndex(1000, 1000 + len(emb)),
    )


def cut(full: pd.DataFrame, k: int) -> pd.DataFrame:
    """The annotation of budget ``k``, cut from a walk with no budget: rows
    visited after the k-th kept row were never reached."""
    out = full.copy()
    last = full.loc[full["deita_rank"] == k, "deita_visit"]
    late = full["deita_visit"] > (last.iloc[0] if len(last) else np.inf)
    late = late.fillna(False).to_numpy(dtype=bool)
    out.loc[late, "deita_status"] = "over_budget"
    out.loc[late, "deita_selected"] = False
    out.loc[late, ["deita_rank", "deita_visit"]] = pd.NA
    out.loc[late, "nearest_neighbor_distance"] = np.nan
    for column in ("deita_blocked_by", "deita_blocked_by_reference"):
        if column in out.columns:
            out.loc[late, column] = None
    return out


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_budget_k_keeps_the_first_k_rows_of_any_larger_budget(neighbors):
    emb, scores = pool()
    scores = np.nan_to_num(scores, nan=0.5)
    runs = {
        k: deita_select(emb, scores, data_budget=k, diversity_threshold=0.1, neighbors=neighbors)
        for k in (1, 7, 30, 64, 200, 400)
    }
    for k, small in runs.items():
        for k2, large in runs.items():
            if k < k2:
                assert small.selected.tolist() == large.selected[:k].tolist(), (k, k2)


def test_the_prefixes_are_the_plain_loops():
    emb, scores = pool(seed=1)
    scores = np.nan_to_num(scores, nan=0.5)
    kept = plain_kept(emb, scores, 0.1)
    for k in (1, 10, 50, len(kept)):
        got = deita_select(emb, scores, data_budget=k, diversity_threshold=0.1)
        assert got.selected.tolist() == kept[:k]


@pytest.mark.filterwarnings("ignore::UserWarning")  # rows without a score
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
@pytest.mark.parametrize("reference", [False, True])
def test_one_walk_gives_every_smaller_budgets_annotation(neighbors, reference):
    emb, scores = pool(seed=2)
    X = frame(emb, scores)
    params = dict(
        diversity_threshold=0.1, neighbors=neighbors, output="annotate", missing_scores="drop",
        reference=emb[:3] + 0.01 if reference else None,
    )  # fmt: skip
    selector = DeitaSelector(None, **params)
    full = selector.fit_transform(X)
    ranking = selector.selected_index_  # the whole ranking: every budget's selection
    for k in (1, 5, 40, int(full["deita_selected"].sum())):
        alone = DeitaSelector(k, **params).fit_transform(X)
        pd.testing.assert_frame_equal(cut(full, k), alone, check_exact=True)
        kept = alone[alone["deita_selected"]].sort_values("deita_rank")
        assert kept.index.tolist() == ranking[:k].tolist()
