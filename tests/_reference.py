"""Plain reference implementations that the fast paths are tested against."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist


def reference_select(
    embeddings,
    scores,
    budget,
    threshold,
    *,
    metric="cosine",
    normalize=True,
    neighbors="selected",
):
    """The one-row-at-a-time DEITA loop: no blocks, no BLAS, no cleverness.

    Returns the kept positions in order and {position: distance} for every
    visited row.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if normalize:
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n = len(emb)
    order = sorted(range(n), key=lambda i: -float(scores[i]))  # stable
    kept: list[int] = []
    seen: dict[int, float] = {}
    for i in order:
        if len(kept) >= budget:
            break
        if neighbors == "selected":
            refs = kept
        else:
            refs = [j for j in range(n) if j != i]
        d = cdist(emb[i : i + 1], emb[refs], metric).min() if refs else np.inf
        seen[i] = float(d)
        if d >= threshold:
            kept.append(i)
    return kept, seen
