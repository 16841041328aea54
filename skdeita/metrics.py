"""Label-free measures of a selection, and scorers for GridSearchCV.

A selection is good when the kept rows are high-scoring *and* stand for the
whole pool. :func:`quality_coverage` measures both at once: each row of the
pool is credited with its best similarity to a kept row, weighted by that
kept row's score relative to the best score in the pool.

- A threshold so low that near-duplicates are kept spends the budget on one
  region: rows elsewhere find no similar kept row, and coverage drops.
- A threshold so high that the budget is not filled keeps fewer rows, and
  one that reaches deep into the score list fills it with low-score rows,
  whose credit is weighted down.

The scorers take ``(estimator, X, y=None)`` as scikit-learn's ``scoring=``
expects; the estimator (a :class:`~skdeita.DeitaSelector` or a pipeline
ending in one) selects from ``X`` and the selection is measured.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .exceptions import BudgetNotReachedWarning
from .selection._distances import pairwise_distances, resolve_metric
from .selection._greedy import RowSource, resolve_budget

__all__ = [
    "quality_coverage",
    "quality_coverage_scorer",
    "mean_selected_score_scorer",
    "budget_fill_scorer",
]

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
    >>> from skdeita.metrics import quality_coverage
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


def _kept_rows(estimator, X):
    """The rows a fitted DeitaSelector (or pipeline ending in one) keeps from X,
    and the budget it applies to X, from its public output."""
    selector = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    with warnings.catch_warnings():
        # Scoring a threshold that does not fill the budget is the point.
        warnings.simplefilter("ignore", BudgetNotReachedWarning)
        out = estimator.transform(X)
    if "deita_selected" in out.columns:  # output="annotate"
        out = out[out["deita_selected"].to_numpy(dtype=bool)]
    return out, resolve_budget(selector.data_budget, len(X))


def quality_coverage_scorer(estimator, X, y=None) -> float:
    """Scorer: :func:`quality_coverage` of the selection the estimator makes on X.

    Parameters
    ----------
    estimator : DeitaSelector or Pipeline ending in one
        Fitted.
    X : DataFrame
        The rows to select from.
    y : None
        Ignored.

    Returns
    -------
    score : float
        Higher is better.
    """
    return float(estimator.score(X))


def mean_selected_score_scorer(estimator, X, y=None) -> float:
    """Scorer: mean deita score of the kept rows (0 when nothing is kept).

    Parameters
    ----------
    estimator : DeitaSelector or Pipeline ending in one
        Fitted.
    X : DataFrame
        The rows to select from.
    y : None
        Ignored.

    Returns
    -------
    score : float
        Higher is better; alone it favours thresholds that keep few rows.
    """
    kept, _ = _kept_rows(estimator, X)
    return float(kept["deita_score"].mean()) if len(kept) else 0.0


def budget_fill_scorer(estimator, X, y=None) -> float:
    """Scorer: kept rows divided by the budget (1.0 when the budget is filled).

    Parameters
    ----------
    estimator : DeitaSelector or Pipeline ending in one
        Fitted.
    X : DataFrame
        The rows to select from.
    y : None
        Ignored.

    Returns
    -------
    score : float
        In [0, 1].
    """
    kept, budget = _kept_rows(estimator, X)
    return len(kept) / budget if budget else 1.0
