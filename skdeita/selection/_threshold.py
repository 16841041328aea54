"""Threshold guidance: what each diversity threshold would do to one pool.

DEITA's threshold is a cosine *similarity* (0.9); distilabel's is a cosine
*distance* (0.9, its default); skdeita's is a distance in the chosen metric
(0.1 = DEITA's 0.9). :func:`threshold_table` shows, for one pool and budget,
how many rows each threshold keeps and blocks and how close the blocked pairs
are, and which threshold in the user's metric matches each reference system.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions, validate_params

from ..utils._validation import (
    check_columns,
    check_dataframe,
    check_embedding_rows,
    first_labels,
)
from ..utils._warnings import warn_user
from ._distances import SUPPORTED_METRICS, needs_direction, pairwise_distances, resolve_metric
from ._greedy import RowSource, check_scores, check_threshold, resolve_budget, score_order
from ._scores import compute_deita_scores
from ._walk import nearest_other_rows, scratch_rows, walk

# DEITA's default: keep a row when its cosine similarity to every kept row is
# <= 0.9. distilabel's DeitaFiltering default: diversity_threshold=0.9, a
# cosine distance (reference-semantics.md, sections 1 and 2).
DEITA_SIMILARITY = 0.9
DISTILABEL_DISTANCE = 0.9
# Cosine distances tried by default (mapped into the user's metric).
_COSINE_GRID = (0.0, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
# Rows whose nearest-row distances set the default grid of other metrics.
_GRID_SAMPLE = 2000


@dataclass(frozen=True)
class ThresholdTable:
    """Outcome of :func:`threshold_table`.

    Attributes
    ----------
    table : DataFrame
        One row per threshold, in increasing order: ``threshold``, ``kept``
        (rows the selection keeps), ``blocked`` (rows visited and rejected as
        too close to a neighbour row), ``over_budget`` (rows never visited
        because the budget was filled), ``budget_reached``,
        ``median_blocked_distance`` (median distance from a blocked row to the
        row that blocked it; NaN when none is blocked) and ``mean_kept_score``.
    budget : int
        Budget in rows.
    n_rows : int
        Rows that took part (rows without a score excluded).
    n_excluded : int
        Rows left out because they have no score (``missing_scores="drop"``).
    metric : str
        Distance metric (scipy's name).
    neighbors : str
        ``"selected"`` (the paper's rule) or ``"dataset"`` (distilabel's).
    deita_threshold : float or None
        The threshold in this metric equal to DEITA's cosine similarity 0.9
        (cosine distance 0.1); None when the metric has no exact equivalent.
    distilabel_threshold : float or None
        The threshold in this metric equal to distilabel's default, a distance
        of 0.9 (cosine, or manhattan when ``metric`` is manhattan); None when
        there is no exact equivalent.
    notes : tuple of str
        How the equivalents were derived, or why there is none.
    chosen : float or None
        The ``diversity_threshold`` given, marked in :meth:`to_text`.
    """

    table: pd.DataFrame
    budget: int
    n_rows: int
    n_excluded: int
    metric: str
    neighbors: str
    deita_threshold: float | None
    distilabel_threshold: float | None
    notes: tuple[str, ...]
    chosen: float | None = None

    def to_text(self) -> str:
        """The table and the equivalents as plain text (what ``skdeita threshold`` prints)."""
        shown = self.table.copy()
        marks = []
        for t in shown["threshold"]:
            mark = []
            if self.chosen is not None and math.isclose(t, self.chosen):
                mark.append("chosen")
            if self.deita_threshold is not None and math.isclose(t, self.deita_threshold):
                mark.append("DEITA 0.9 similarity")
            if self.distilabel_threshold is not None and math.isclose(t, self.distilabel_threshold):
                mark.append("distilabel default")
            marks.append(", ".join(mark))
        shown["matches"] = marks
        lines = [
            f"{self.n_rows} rows, budget {self.budget}, metric {self.metric}, "
            f"neighbors={self.neighbors!r}"
            + (f", {self.n_excluded} rows without a score left out" if self.n_excluded else ""),
            "",
            shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
            "",
            f"DEITA's similarity {DEITA_SIMILARITY} is threshold "
            f"{_fmt(self.deita_threshold)} here; distilabel's default ({DISTILABEL_DISTANCE} "
            f"distance) is {_fmt(self.distilabel_threshold)}.",
        ]
        lines += list(self.notes)
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "none (no exact equivalent)" if value is None else f"{value:.4g}"


def metric_equivalents(metric, normalize: bool) -> tuple[float | None, float | None, list[str]]:
    """DEITA's and distilabel's default thresholds in ``metric``, with notes.

    On unit vectors, ``euclidean**2 = sqeuclidean = 2 * cosine distance``; the
    cosine distance ignores each vector's length, so it needs no normalising.
    """
    # round: 1 - 0.9 is 0.09999999999999998 in floating point.
    deita_cos, distilabel_cos = round(1.0 - DEITA_SIMILARITY, 12), DISTILABEL_DISTANCE
    rule = (
        "distilabel applies its threshold to each row's nearest other row of the whole "
        "input (neighbors='dataset'), DEITA to the rows already kept (neighbors='selected')."
    )
    if metric == "cosine":
        return deita_cos, distilabel_cos, [rule]
    if metric in ("euclidean", "sqeuclidean") and normalize:
        power = 0.5 if metric == "euclidean" else 1.0
        deita, distilabel = (2 * deita_cos) ** power, (2 * distilabel_cos) ** power
        return (
            deita,
            distilabel,
            [
                f"On unit vectors {metric} = (2 x cosine distance)"
                f"{'^0.5' if power == 0.5 else ''}.",
                rule,
            ],
        )
    if metric == "cityblock":
        return (
            None,
            DISTILABEL_DISTANCE,
            [
                "distilabel's distance_metric='manhattan' uses the same default 0.9; DEITA's "
                "rule is a cosine similarity, with no manhattan equivalent.",
                rule,
            ],
        )
    name = getattr(metric, "__name__", metric)
    reason = "without normalize_embeddings" if metric in ("euclidean", "sqeuclidean") else ""
    return (
        None,
        None,
        [
            f"DEITA's and distilabel's thresholds are cosine values; metric {name!r} "
            f"{reason + ' ' if reason else ''}has no exact equivalent."
        ],
    )


_CONSTRAINTS: dict = {
    "X": ["array-like"],
    "scores": ["array-like", None],
    "data_budget": [
        Interval(Integral, 1, None, closed="left"),
        Interval(RealNotInt, 0, 1, closed="right"),
        None,
    ],
    "thresholds": ["array-like", None],
    "diversity_threshold": [Interval(Real, 0, None, closed="left"), None],
    "distance_metric": [StrOptions(set(SUPPORTED_METRICS)), callable],
    "normalize_embeddings": ["boolean"],
    "neighbors": [StrOptions({"selected", "dataset"})],
    "embedding_col": [str],
    "instruction_score_col": [str, None],
    "response_score_col": [str, None],
    "missing_scores": [StrOptions({"raise", "drop"})],
    "reference": ["array-like", None],
    "block_size": [Interval(Integral, 1, None, closed="left")],
}


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
def threshold_table(
    X,
    scores: Sequence[float] | np.ndarray | None = None,
    *,
    data_budget: int | float | None = None,
    thresholds: Sequence[float] | None = None,
    diversity_threshold: float | None = None,
    distance_metric: str | Callable = "cosine",
    normalize_embeddings: bool = True,
    neighbors: str = "selected",
    embedding_col: str = "embedding",
    instruction_score_col: str | None = "evol_instruction_score",
    response_score_col: str | None = "evol_response_score",
    missing_scores: str = "raise",
    reference=None,
    block_size: int = 1024,
) -> ThresholdTable:
    """Rows kept and blocked, for each of several diversity thresholds.

    One call selects the pool at every threshold and reuses between them what
    does not depend on the threshold: the checked rows, the visiting order
    and (under ``neighbors="dataset"``) each row's nearest-row distance,
    computed once for the row whichever threshold reaches it first. Each
    threshold is walked by the selection's own walk, so each row of the
    table equals a separate :func:`~skdeita.deita_select` with that threshold.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_rows, n_dims)
        A DataFrame with the embedding and score columns (as
        :class:`~skdeita.DeitaSelector` reads them), or the embeddings.
    scores : array-like of shape (n_rows,) or None, default=None
        The scores, when ``X`` is an array (required then; not with a DataFrame).
    data_budget : int, float or None, default=None
        Rows to keep: an int >= 1, a fraction in (0, 1] of the rows, or None
        for no limit.
    thresholds : array-like of float or None, default=None
        Distances to try. Default: cosine distances 0 to 0.5 (and 0.9,
        distilabel's default), mapped into the metric when it has an
        equivalent (euclidean or sqeuclidean on normalised rows); otherwise
        the deciles of the nearest-row distances among the first 2,000 rows
        visited.
    diversity_threshold : float or None, default=None
        The threshold you mean to use: added to the thresholds and marked.
    distance_metric, normalize_embeddings, neighbors, block_size
        As in :func:`~skdeita.deita_select`.
    embedding_col, instruction_score_col, response_score_col, missing_scores
        As in :class:`~skdeita.DeitaSelector` (DataFrame input only).
    reference : array-like of shape (n_ref, n_dims), DataFrame or None, default=None
        Rows of an existing curated set (see ``DeitaSelector(reference=...)``).

    Returns
    -------
    result : ThresholdTable
        The table (``result.table``), and the thresholds equal to DEITA's
        similarity 0.9 and distilabel's default in this metric.

    See Also
    --------
    skdeita.deita_select : One selection at one threshold.

    Examples
    --------
    >>> import numpy as np
    >>> from skdeita import threshold_table
    >>> emb = np.array([[1.0, 0.0], [0.99, 0.1], [0.9, 0.44], [0.0, 1.0]])
    >>> result = threshold_table(emb, [4.0, 3.0, 2.0, 1.0], thresholds=[0.0, 0.01, 0.2])
    >>> result.table[["threshold", "kept", "blocked", "over_budget"]]
       threshold  kept  blocked  over_budget
    0       0.00     4        0            0
    1       0.01     3        1            0
    2       0.20     2        2            0
    >>> result.deita_threshold, result.distilabel_threshold
    (0.1, 0.9)
    """
    metric = resolve_metric(distance_metric)
    direction = needs_direction(metric, normalize_embeddings)
    if isinstance(X, pd.DataFrame):
        if scores is not None:
            raise ValueError(
                "scores must be None when X is a DataFrame: the scores come from "
                "instruction_score_col and response_score_col."
            )
        cells, values, n_excluded = _frame_rows(
            X,
            embedding_col,
            instruction_score_col,
            response_score_col,
            missing_scores,
            direction,
        )
    else:
        if scores is None:
            raise ValueError("scores is required when X is an array of embeddings.")
        cells = check_embedding_rows(X, need_direction=direction, name="embeddings")
        values = check_scores(scores, len(cells))
        n_excluded = 0
    ref = _reference(reference, embedding_col, direction)
    source = RowSource(cells, normalize=normalize_embeddings)
    ref_rows = RowSource(ref, normalize=normalize_embeddings) if ref is not None else None
    if ref_rows is not None and ref_rows.n and source.n and ref_rows.dim != source.dim:
        raise ValueError(
            f"reference has {ref_rows.dim} dimensions but the embeddings have {source.dim}; "
            "embed both with the same model."
        )
    ref_matrix = ref_rows.take(np.arange(ref_rows.n)) if ref_rows else np.empty((0, source.dim))
    budget = resolve_budget(data_budget, source.n)
    order = score_order(values)
    deita, distilabel, notes = metric_equivalents(metric, normalize_embeddings)
    grid = _thresholds(thresholds, metric, normalize_embeddings, source, order, distilabel)
    if diversity_threshold is not None:
        grid = np.union1d(grid, [check_threshold(diversity_threshold)])
    rows = []
    for threshold, kept, n_visited, blocked in _walks(
        source, ref_matrix, order, budget, grid, metric, normalize_embeddings, neighbors, block_size
    ):
        rows.append(
            {
                "threshold": threshold,
                "kept": len(kept),
                "blocked": len(blocked),
                "over_budget": source.n - n_visited,
                "budget_reached": len(kept) >= budget,
                "median_blocked_distance": float(np.median(blocked)) if len(blocked) else np.nan,
                "mean_kept_score": float(values[kept].mean()) if len(kept) else np.nan,
            }
        )
    return ThresholdTable(
        table=pd.DataFrame(rows),
        budget=budget,
        n_rows=source.n,
        n_excluded=n_excluded,
        metric=metric if isinstance(metric, str) else getattr(metric, "__name__", repr(metric)),
        neighbors=neighbors,
        deita_threshold=deita,
        distilabel_threshold=distilabel,
        notes=tuple(notes),
        chosen=None if diversity_threshold is None else float(diversity_threshold),
    )


def _walks(source, ref, order, budget, grid, metric, normalize, neighbors, block_size):
    """Each threshold's walk: ``(threshold, kept, rows visited, blocked distances)``."""
    unit_norm = bool(normalize)
    chunk = scratch_rows(int(block_size))
    known = np.full(source.n, np.nan)  # nearest-other-row distances, once per row

    def nearest_others(vectors, positions, with_index=False):
        todo = np.flatnonzero(np.isnan(known[positions]))
        if len(todo):
            own = (np.arange(len(todo)), positions[todo])
            known[positions[todo]] = nearest_other_rows(
                vectors[todo], own, source, None, metric, unit_norm, chunk
            )
        return known[positions]

    for threshold in grid:
        distances = np.full(source.n, np.nan)
        kept, n_visited = walk(
            source, ref, order, budget, float(threshold), metric, unit_norm, neighbors,
            int(block_size), distances, False, nearest_others,
        )  # fmt: skip
        visited = order[:n_visited]
        blocked = visited[~np.isin(visited, kept)]
        yield float(threshold), np.asarray(kept, dtype=np.intp), n_visited, distances[blocked]


def _frame_rows(X, embedding_col, instruction_col, response_col, missing_scores, direction):
    """The embeddings and scores of a DataFrame's scored rows, checked."""
    X = check_dataframe(X, "threshold_table")
    if instruction_col is None and response_col is None:
        raise ValueError(
            "At least one of instruction_score_col and response_score_col must be set."
        )
    check_columns(
        X,
        {
            "embedding_col": embedding_col,
            "instruction_score_col": instruction_col,
            "response_score_col": response_col,
        },
    )
    scored = compute_deita_scores(
        X[instruction_col] if instruction_col else None,
        X[response_col] if response_col else None,
    )
    missing = scored.missing
    if missing.any():
        cols = [c for c in (instruction_col, response_col) if c]
        if missing_scores == "raise":
            raise ValueError(
                f"Rows {first_labels(X.index, missing)} have no score in {cols} "
                f"({int(missing.sum())} rows in all). Fill them, or pass "
                "missing_scores='drop' to leave them out."
            )
        warn_user(
            f"{int(missing.sum())} rows have no score in {cols} and are left out "
            f"(first: {first_labels(X.index, missing)}).",
            UserWarning,
        )
    cells = check_embedding_rows(
        X[embedding_col],
        need_direction=direction,
        name=f"Column {embedding_col!r}",
        labels=X.index,
    )
    keep = np.flatnonzero(~missing)
    if len(keep) < len(cells):
        cells = [cells[i] for i in keep]
    return cells, scored.scores[keep], int(missing.sum())


def _reference(reference, embedding_col: str, direction: bool):
    if reference is None:
        return None
    if isinstance(reference, pd.DataFrame):
        check_columns(reference, {"embedding_col": embedding_col})
        return check_embedding_rows(
            reference[embedding_col],
            need_direction=direction,
            name=f"reference column {embedding_col!r}",
            labels=reference.index,
        )
    return check_embedding_rows(reference, need_direction=direction, name="reference")


def _thresholds(thresholds, metric, normalize, source, order, distilabel) -> np.ndarray:
    """The thresholds to try, increasing and unique."""
    if thresholds is not None:
        values = np.asarray(thresholds, dtype=object).ravel()
        bad = [
            v
            for v in values
            if isinstance(v, bool | np.bool_)
            or not isinstance(v, Real)
            or not math.isfinite(v)
            or v < 0
        ]
        if bad or not len(values):
            raise ValueError(
                "thresholds must be a non-empty list of finite distances >= 0"
                + (f"; got {bad[0]!r}" if bad else "")
                + "."
            )
        return np.unique(values.astype(np.float64))
    cosine = np.array(_COSINE_GRID + (DISTILABEL_DISTANCE,))
    if metric == "cosine":
        return cosine
    if metric in ("euclidean", "sqeuclidean") and normalize:
        return np.sqrt(2 * cosine) if metric == "euclidean" else 2 * cosine
    grid = _nearest_row_deciles(source, order, metric, normalize)
    if distilabel is not None:
        grid = np.append(grid, distilabel)
    return np.unique(grid)


def _nearest_row_deciles(source, order, metric, normalize) -> np.ndarray:
    """Deciles of the nearest-row distances among the first rows visited: a
    grid in the metric's own scale, when no cosine equivalent exists."""
    head = source.take(np.sort(order[:_GRID_SAMPLE]))
    if len(head) < 2:
        return np.array([0.0])
    d = pairwise_distances(head, head, metric, normalize)
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    return np.unique(np.round(np.quantile(nearest, np.linspace(0, 0.9, 10)), 6))
