"""Annotated selections for the report tests, made by a plain sequential loop
(the column spec of ``DeitaSelector(output="annotate")``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

SCRIPT = "<script>window.__pwned = 1; console.error('pwned')</script>"


def annotate_by_loop(frame, budget, threshold, neighbors="selected"):
    """Every row's outcome, one row at a time: kept, blocked (by which row, at
    which distance), over budget, or excluded (no score)."""
    out = frame.copy()
    a = out["evol_instruction_score"].to_numpy(dtype=float)
    b = out["evol_response_score"].to_numpy(dtype=float)
    score = a * b
    emb = np.stack([np.asarray(v, dtype=float) for v in out["embedding"]])
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(out)
    candidates = [i for i in range(n) if not np.isnan(score[i])]
    order = sorted(candidates, key=lambda i: -score[i])  # stable
    status = np.array(["excluded"] * n, dtype=object)
    status[candidates] = "over_budget"
    distance = np.full(n, np.nan)
    blocked_by = [None] * n
    rank = [pd.NA] * n
    kept: list[int] = []
    for i in order:
        if len(kept) >= budget:
            break
        refs = kept if neighbors == "selected" else [j for j in candidates if j != i]
        if refs:
            d = cdist(emb[i : i + 1], emb[refs], "cosine")[0]
            nearest = int(np.argmin(d))
            distance[i] = max(float(d[nearest]), 0.0)
        else:
            distance[i] = np.inf
        if distance[i] >= threshold:
            kept.append(i)
            status[i] = "kept"
            rank[i] = len(kept)
        else:
            status[i] = "blocked"
            blocked_by[i] = out.index[refs[nearest]]
    out["deita_score"] = score
    out["deita_score_computed_with"] = [
        [] if np.isnan(s) else ["evol_instruction_score", "evol_response_score"] for s in score
    ]
    out["nearest_neighbor_distance"] = distance
    out["deita_selected"] = status == "kept"
    out["deita_rank"] = pd.array(rank, dtype="Int64")
    out["deita_status"] = status
    out["deita_blocked_by"] = pd.Series(blocked_by, index=out.index, dtype=object)
    return out


def make_pool(n=400, d=12, seed=0):
    """A pool with near-duplicate groups, one row whose text is a script (it
    is the closest blocked row), and two rows without scores."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    emb[1::4] = emb[0::4][: len(emb[1::4])] + 0.02 * rng.normal(size=(len(emb[1::4]), d))
    instruction = [f"How do I do task {i}?" for i in range(n)]
    response = [f"Do step {i}, then check." for i in range(n)]
    frame = pd.DataFrame(
        {
            "instruction": instruction,
            "response": response,
            "embedding": [v for v in emb],
            "evol_instruction_score": rng.uniform(1, 6, n).round(3),
            "evol_response_score": rng.uniform(1, 6, n).round(3),
        },
        index=[f"row-{i}" for i in range(n)],
    )
    # Row 5 duplicates row 4 exactly and scores lower: blocked by it at distance 0.
    frame.at["row-5", "embedding"] = emb[4].copy()
    frame.loc["row-4", ["evol_instruction_score", "evol_response_score"]] = [6.0, 6.0]
    frame.loc["row-5", ["evol_instruction_score", "evol_response_score"]] = [5.9, 5.9]
    frame.at["row-5", "instruction"] = SCRIPT
    frame.loc[["row-8", "row-9"], ["evol_instruction_score", "evol_response_score"]] = np.nan
    return frame


@pytest.fixture
def pool():
    return make_pool()


@pytest.fixture
def annotated(pool):
    return annotate_by_loop(pool, budget=120, threshold=0.1)
