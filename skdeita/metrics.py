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

from .exceptions import BudgetNotReachedWarning
from .selection import quality_coverage, resolve_budget

__all__ = [
    "quality_coverage",
    "quality_coverage_scorer",
    "mean_selected_score_scorer",
    "budget_fill_scorer",
]


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
