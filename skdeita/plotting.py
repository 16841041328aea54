"""Pictures of a selection (needs the ``plot`` extra: matplotlib).

- :func:`plot_selection_map`: a 2-D projection of the embeddings, kept rows
  over dropped ones, kept rows sized by score.
- :func:`plot_threshold_curve`: rows kept and mean score of the kept rows
  across thresholds, with the budget line: the picture to choose a
  threshold from.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from .exceptions import BudgetNotReachedWarning
from .selection import DeitaSelector, resolve_budget
from .utils._optional import require
from .utils._validation import check_columns

__all__ = ["plot_selection_map", "plot_threshold_curve"]


def _axes(ax):
    if ax is None:
        plt = require("matplotlib.pyplot", "Plotting")
        _, ax = plt.subplots(figsize=(7, 5))
    return ax


def plot_selection_map(
    annotated: pd.DataFrame,
    *,
    embedding_col: str = "embedding",
    projection: str = "pca",
    ax=None,
):
    """Scatter the rows in 2-D: dropped in grey, kept coloured and sized by score.

    Parameters
    ----------
    annotated : DataFrame
        Output of ``DeitaSelector(output="annotate")``.
    embedding_col : str, default="embedding"
        Column of embeddings.
    projection : {"pca"}, default="pca"
        How to project to 2-D.
    ax : matplotlib Axes or None, default=None
        Where to draw (a new figure when None).

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    from sklearn.decomposition import PCA

    check_columns(
        annotated, {"embedding_col": embedding_col, "output='annotate' column": "deita_selected"}
    )
    if projection != "pca":
        raise ValueError(f"projection must be 'pca', got {projection!r}")
    ax = _axes(ax)
    emb = np.stack(annotated[embedding_col].to_list()).astype(np.float64)
    xy = PCA(n_components=2, random_state=0).fit_transform(emb) if len(emb) > 1 else emb[:, :2]
    kept = annotated["deita_selected"].to_numpy(dtype=bool)
    score = annotated["deita_score"].to_numpy(dtype=float)
    ax.scatter(xy[~kept, 0], xy[~kept, 1], s=10, c="0.75", label=f"dropped ({(~kept).sum()})")
    size = 15 + 85 * (score[kept] - np.nanmin(score)) / max(
        np.nanmax(score) - np.nanmin(score), 1e-12
    )
    points = ax.scatter(
        xy[kept, 0],
        xy[kept, 1],
        s=size,
        c=score[kept],
        cmap="viridis",
        edgecolor="k",
        linewidth=0.4,
        label=f"kept ({kept.sum()})",
    )
    ax.figure.colorbar(points, ax=ax, label="deita score (kept rows)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("DEITA selection map")
    ax.legend(loc="best")
    return ax


def plot_threshold_curve(
    X: pd.DataFrame,
    selector: DeitaSelector,
    thresholds: Sequence[float] | None = None,
    *,
    ax=None,
):
    """Rows kept and mean score of the kept rows, across diversity thresholds.

    Parameters
    ----------
    X : DataFrame
        Rows with embeddings and scores (as the selector expects).
    selector : DeitaSelector
        Its other parameters are kept; only ``diversity_threshold`` varies.
    thresholds : sequence of float or None, default=None
        Thresholds to try (default: 12 values from 0 to 0.5).
    ax : matplotlib Axes or None, default=None
        Where to draw (a new figure when None).

    Returns
    -------
    ax : matplotlib Axes
        The axes with the kept-rows curve; the mean-score curve is on its twin.
    """
    thresholds = np.linspace(0.0, 0.5, 12) if thresholds is None else np.asarray(thresholds)
    kept, mean_score = [], []
    for t in thresholds:
        sel = clone(selector).set_params(
            diversity_threshold=float(t), output="subset", show_progress_bar=False
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BudgetNotReachedWarning)
            out = sel.fit_transform(X)
        kept.append(len(out))
        mean_score.append(out["deita_score"].mean() if len(out) else np.nan)
    ax = _axes(ax)
    ax.plot(thresholds, kept, "o-", color="tab:blue", label="rows kept")
    if selector.data_budget is not None:
        budget = resolve_budget(selector.data_budget, len(X))
        ax.axhline(budget, color="tab:blue", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("diversity_threshold (distance)")
    ax.set_ylabel("rows kept", color="tab:blue")
    twin = ax.twinx()
    twin.plot(thresholds, mean_score, "s-", color="tab:orange", label="mean deita score")
    twin.set_ylabel("mean deita score of kept rows", color="tab:orange")
    ax.set_title("Choosing a diversity threshold")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="best")
    return ax
