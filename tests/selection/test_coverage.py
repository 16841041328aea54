"""quality_coverage against a plain double loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from skdeita.selection import quality_coverage


def plain_coverage(emb, scores, selected, metric="cosine", normalize=True):
    """mean_i max_{j kept} w_j * sim(i, j), one pair at a time."""
    emb = np.asarray(emb, dtype=np.float64)
    if normalize:
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.asarray(scores, dtype=np.float64)
    low = min(0.0, float(np.nanmin(scores)))
    top = float(np.nanmax(scores)) - low
    total = 0.0
    for i in range(len(emb)):
        best = 0.0
        for j in selected:
            d = float(cdist(emb[i : i + 1], emb[j : j + 1], metric)[0, 0])
            sim = min(max(1.0 - d, 0.0), 1.0) if metric == "cosine" else 1.0 / (1.0 + d)
            best = max(best, (scores[j] - low) / top * sim)
        total += best
    return total / len(emb)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("normalize", [True, False])
def test_equals_the_plain_double_loop(metric, normalize):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 5))
    scores = rng.uniform(-1, 6, 60)
    selected = [3, 17, 40, 41]
    got = quality_coverage(
        list(emb), scores, selected, distance_metric=metric, normalize_embeddings=normalize
    )
    want = plain_coverage(emb, scores, selected, metric, normalize)
    assert got == pytest.approx(want, rel=1e-12)


def test_more_kept_rows_cover_more():
    rng = np.random.default_rng(1)
    emb, scores = rng.normal(size=(40, 4)), np.full(40, 3.0)
    assert quality_coverage(emb, scores, [0, 1, 2, 3]) > quality_coverage(emb, scores, [0])


def test_nothing_kept_covers_nothing():
    assert quality_coverage(np.eye(3), [1.0, 2.0, 3.0], []) == 0.0
