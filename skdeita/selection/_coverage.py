"""Quality-weighted coverage: how well a selection stands for its whole pool.

A selection is good when the kept rows are high-scoring *and* stand for the
whole pool: each row of the pool is credited with its best similarity to a
kept row, weighted by that kept row's score relative to the best score in
the pool. :meth:`~skdeita.DeitaSelector.score` and the scorers of
:mod:`skdeita.metrics` use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ._distances import pairwise_distances, resolve_metric
from ._greedy import RowSource

_BLOCK = 4096


def quality_coverage(
    embeddings: np.ndarray | Sequence,
    scores: np.ndarray | Sequence[float],
    selected: np.ndarray | Sequence[int],
    *,
    distance_metric: str | Callable = "cosine",
    normalize_embeddings: bool = True,
) -> float:
    """Quality-weighted coverage of a pool by a selection from it.

    ``mean_i max_{j in selected} w_j * sim(i, j)``, where ``w_j`` is the kept
    row's score divided by the pool's best score (scores shifted to start at 0
    when some are negative) and ``sim = 1 - d`` for cosine distance (clipped
    at 0), ``1 / (1 + d)`` for other metrics.

    Parameters
    ----------
    embeddings : ndarray of shape (n_rows, n_dims) or sequence of 1-D arrays
        The pool.
    scores : array-like of shape (n_rows,)
        The pool's deita scores (NaN rows count as not covered).
    selected : array-like of int
        Positions of the kept rows.
    distance_metric : str or callable, default="cosine"
        As in :class:`~skdeita.DeitaSelector`.
    normalize_embeddings : bool, default=True
        Scale vectors to unit norm first.

    Returns
    -------
    coverage : float
        In [0, 1]; 0 for an empty pool or selection.

    Examples
    --------
    >>> import numpy as np
    >>> from skdeita.selection import quality_coverage
    >>> emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    >>> round(quality_coverage(emb, [2.0, 2.0, 2.0], [0, 2]), 3)
    1.0
    >>> round(quality_coverage(emb, [2.0, 2.0, 2.0], [0, 1]), 3)
    0.67
    """
    metric = resolve_metric(distance_metric)
    source = RowSource(embeddings, normalize=normalize_embeddings)
    selected = np.asarray(selected, dtype=np.intp)
    scores = np.asarray(scores, dtype=np.float64)
    if source.n == 0 or selected.size == 0:
        return 0.0
    valid = np.nan_to_num(scores, nan=-np.inf)
    low = min(0.0, float(np.min(scores[np.isfinite(scores)], initial=0.0)))
    top = float(np.max(valid)) - low
    weights = (scores[selected] - low) / top if top > 0 else np.ones(selected.size)
    kept = source.take(selected)
    total = 0.0
    for _, block in source.chunks(_BLOCK):
        d = pairwise_distances(block, kept, metric, bool(normalize_embeddings))
        sim = np.clip(1.0 - d, 0.0, 1.0) if metric == "cosine" else 1.0 / (1.0 + d)
        total += float(np.max(sim * weights[None, :], axis=1).sum())
    return total / source.n
