"""Score-first, diversity-aware selection on arrays: :func:`deita_select`.

The rule (DEITA, Liu et al. 2024) walks the rows in decreasing score order and
keeps a row when its distance to the nearest *neighbour* row is at least the
threshold, until the budget is filled. The neighbours are either the rows
already kept (``neighbors="selected"``, the paper) or every other row of the
input (``neighbors="dataset"``, distilabel's ``DeitaFiltering``); rows of an
existing curated set (``reference``) are neighbours in both.

This module holds what every caller of the walk (:mod:`._walk`) shares: the
parameters and their rules, the budget in rows, the walk order, the row
source over in-memory embeddings, and the reference matrix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions, validate_params

from ..utils._validation import check_embedding_rows, first_labels, is_missing
from ._distances import SUPPORTED_METRICS, needs_direction, resolve_metric, unit_rows
from ._scores import MAX_EXACT_INTEGER
from ._walk import nearest_other_rows, scratch_rows, walk

# The parameters deita_select and DeitaSelector share, validated one way.
SELECTION_CONSTRAINTS: dict = {
    "data_budget": [
        Interval(Integral, 1, None, closed="left"),
        Interval(RealNotInt, 0, 1, closed="right"),
        None,
    ],
    "diversity_threshold": [Interval(Real, 0, None, closed="left")],
    "distance_metric": [StrOptions(set(SUPPORTED_METRICS)), callable],
    "normalize_embeddings": ["boolean"],
    "neighbors": [StrOptions({"selected", "dataset"})],
    "block_size": [Interval(Integral, 1, None, closed="left")],
    "show_progress_bar": ["boolean", None],
}


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of :func:`deita_select`.

    Attributes
    ----------
    selected : ndarray of int
        Positions of the kept rows, in selection order.
    distances : ndarray of float
        For every input row, the distance to its nearest neighbour row as seen
        when the row was visited (``inf`` for the first kept row in
        ``"selected"`` mode with no reference); ``nan`` for rows never visited.
    order : ndarray of int
        All positions in visiting order (score descending, ties in input order).
    n_visited : int
        Number of rows visited before the walk stopped.
    budget : int
        The budget in rows that was applied.
    budget_reached : bool
        Whether ``budget`` rows were kept.
    """

    selected: np.ndarray
    distances: np.ndarray
    order: np.ndarray
    n_visited: int
    budget: int
    budget_reached: bool


class RowSource:
    """Float64 rows of an embedding matrix, gathered on demand.

    Accepts a 2-D array or a sequence of equal-length 1-D arrays (a pandas
    object column), so callers never need to stack the whole matrix.
    """

    def __init__(self, rows: np.ndarray | Sequence, normalize: bool = False):
        self._matrix = rows if isinstance(rows, np.ndarray) and rows.ndim == 2 else None
        self._rows = rows
        self.normalize = normalize
        self.n = len(rows)
        if self._matrix is not None:
            self.dim = self._matrix.shape[1]
        else:
            self.dim = len(rows[0]) if self.n else 0

    def take(self, positions: np.ndarray) -> np.ndarray:
        if self._matrix is not None:
            out = np.array(self._matrix[positions], dtype=np.float64)
        elif len(positions) == 0:
            out = np.empty((0, self.dim))
        else:
            rows = self._rows
            out = np.array([rows[p] for p in positions], dtype=np.float64)
        if self.normalize and len(out):
            unit_rows(out)
        return out

    def chunks(self, size: int):
        """Yield ``(start, block)`` over all rows in input order."""
        for start in range(0, self.n, size):
            yield start, self.take(np.arange(start, min(start + size, self.n)))


def check_budget(data_budget) -> None:
    """The constraints admit booleans (``True`` is an int); a budget is a number."""
    if isinstance(data_budget, bool | np.bool_):
        raise TypeError(
            f"data_budget={data_budget!r}: a boolean is not a budget; pass a number of "
            "rows, a fraction in (0, 1], or None for no limit."
        )


def resolve_budget(data_budget: int | float | None, n: int) -> int:
    """The budget in rows for a pool of ``n`` rows.

    Parameters
    ----------
    data_budget : int, float or None
        A number of rows (int >= 1), a fraction in (0, 1] of the ``n`` rows
        (rounded up, from the fraction as written), or None for all rows.
    n : int
        Rows in the pool.

    Returns
    -------
    budget : int
        Rows to keep.

    Examples
    --------
    >>> from skdeita.selection import resolve_budget
    >>> resolve_budget(0.07, 100), resolve_budget(0.5, 95), resolve_budget(None, 12)
    (7, 48, 12)
    """
    check_budget(data_budget)
    if data_budget is None:
        return n
    if isinstance(data_budget, Integral):
        return int(data_budget)
    # The fraction as written (0.07, not 0.07000000000000000666): 0.07 of 100
    # rows is 7, where the float product 7.000000000000001 would round up to 8.
    return math.ceil(Fraction(str(float(data_budget))) * n)


def check_threshold(diversity_threshold: float) -> float:
    """The constraints admit inf (an open interval) and booleans; a threshold
    must be a finite number."""
    if isinstance(diversity_threshold, bool | np.bool_):
        raise TypeError(
            f"diversity_threshold={diversity_threshold!r}: a boolean is not a distance; "
            "pass a finite number >= 0."
        )
    if not np.isfinite(diversity_threshold):
        raise ValueError(
            f"diversity_threshold must be a finite distance >= 0, got {diversity_threshold!r}."
        )
    return float(diversity_threshold)


def score_order(scores: np.ndarray) -> np.ndarray:
    """Positions by decreasing score; equal scores keep input order (NaN last)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def walk_order(scores: np.ndarray) -> np.ndarray:
    """The walk's order: positions of the scored rows by decreasing score
    (ties in input order); rows without a score (NaN) are left out."""
    order = score_order(scores)
    return order[: len(scores) - int(np.count_nonzero(np.isnan(scores)))]


def check_scores(scores, n: int, name: str = "scores", labels=None) -> np.ndarray:
    """Finite float64 scores, one per row: real numbers, not text or booleans."""
    raw = np.asarray(scores)
    if raw.ndim != 1 or raw.shape[0] != n:
        raise ValueError(f"{name} must be 1-D with one value per row ({n}), got shape {raw.shape}.")
    where = "positions" if labels is None else "rows"
    labels = np.arange(n) if labels is None else labels
    if raw.dtype.kind == "O":  # a list of Python objects, or a nullable pandas column
        cells = raw.tolist()
        bad = np.array([not (is_missing(v) or _is_real(v)) for v in cells], dtype=bool)
        if bad.any():
            first = cells[int(np.flatnonzero(bad)[0])]
            raise TypeError(
                f"{name} must be real numbers, one per row; found {type(first).__name__} "
                f"{first!r} at {where} {first_labels(labels, bad)}."
            )
        arr = np.array([np.nan if is_missing(v) else float(v) for v in cells], dtype=np.float64)
        inexact = np.array([isinstance(v, Integral) and abs(v) > MAX_EXACT_INTEGER for v in cells])
    elif raw.dtype.kind in "fiu":
        arr = raw.astype(np.float64)
        integers = raw.dtype.kind in "iu"
        inexact = (raw > MAX_EXACT_INTEGER) | (raw < -MAX_EXACT_INTEGER) if integers else None
    else:
        raise TypeError(f"{name} must be real numbers, one per row; got dtype {raw.dtype}.")
    if inexact is not None and inexact.any():
        raise ValueError(
            f"{name} holds integers beyond 2**53 at {where} {first_labels(labels, inexact)}: "
            "float64 cannot tell such scores apart, so their order would be lost. Rescale them."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name} must be finite; NaN or inf at {where} {first_labels(labels, bad)}."
        )
    return arr


def _is_real(value) -> bool:
    """A real number that is not a boolean (``True`` is not a score)."""
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


@validate_params(
    # A union, not {**...}: Sphinx's source parser fails on ** in a dict display.
    {"embeddings": ["array-like"], "scores": ["array-like"]}
    | SELECTION_CONSTRAINTS
    | {"reference": ["array-like", None], "check_input": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def deita_select(
    embeddings: np.ndarray | Sequence,
    scores: np.ndarray | Sequence[float],
    *,
    data_budget: int | float | None = None,
    diversity_threshold: float = 0.1,
    distance_metric: str | Callable = "cosine",
    normalize_embeddings: bool = True,
    neighbors: str = "selected",
    block_size: int = 1024,
    show_progress_bar: bool | None = False,
    reference: np.ndarray | Sequence | None = None,
    check_input: bool = True,
) -> SelectionResult:
    """Select rows score-first under a diversity constraint (DEITA).

    Rows are visited by decreasing score (ties keep input order). A row is
    kept when its distance to the nearest neighbour row is at least
    ``diversity_threshold``; the walk stops once ``data_budget`` rows are kept.

    Parameters
    ----------
    embeddings : ndarray of shape (n_rows, n_dims) or sequence of 1-D arrays
        One vector per row. A sequence (for example a pandas object column)
        is gathered block by block and never stacked whole.
    scores : array-like of shape (n_rows,)
        Finite quality scores; higher is better.
    data_budget : int, float or None, default=None
        Rows to keep: an int >= 1, a float in (0, 1] meaning that fraction of
        the rows (rounded up), or None for no limit.
    diversity_threshold : float, default=0.1
        Minimum distance to the nearest neighbour row. With cosine distance,
        0.1 is the paper's similarity threshold of 0.9.
    distance_metric : str or callable, default="cosine"
        ``"cosine"``, ``"euclidean"``, ``"manhattan"`` or any metric name that
        :func:`scipy.spatial.distance.cdist` accepts and that does not depend
        on the other rows (not ``"mahalanobis"`` or ``"seuclidean"``).
    normalize_embeddings : bool, default=True
        Scale each vector to unit L2 norm before measuring distances.
    neighbors : {"selected", "dataset"}, default="selected"
        ``"selected"``: distance to the nearest row already kept (the paper;
        the first row's distance is ``inf``). ``"dataset"``: distance to the
        nearest other row of the whole input (distilabel's rule).
    block_size : int, default=1024
        Candidates processed per distance computation. Any value gives the
        same result; it only trades memory for speed.
    show_progress_bar : bool or None, default=False
        Show a tqdm bar (None: only when stderr is a terminal).
    reference : ndarray of shape (n_ref, n_dims), sequence of 1-D arrays or None
        Embeddings of rows already in a curated set. They are neighbours of
        every candidate (a row is kept only if it is at least the threshold
        from each of them too), are never returned and do not count toward
        the budget.
    check_input : bool, default=True
        Validate the arrays' values; callers that already did may skip it.

    Returns
    -------
    result : SelectionResult
        Kept positions in selection order, per-row distances, visiting order
        and whether the budget was reached.

    See Also
    --------
    skdeita.DeitaSelector : The same selection over a pandas DataFrame.

    Examples
    --------
    >>> import numpy as np
    >>> from skdeita import deita_select
    >>> emb = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]])
    >>> res = deita_select(emb, [3.0, 2.0, 1.0], data_budget=2)
    >>> res.selected.tolist()
    [0, 2]
    >>> res.budget_reached
    True

    A curated set that already covers the first direction:

    >>> deita_select(emb, [3.0, 2.0, 1.0], reference=[[1.0, 0.02]]).selected.tolist()
    [2]
    """
    metric = resolve_metric(distance_metric)
    threshold = check_threshold(diversity_threshold)
    direction = needs_direction(metric, normalize_embeddings)
    if check_input:
        embeddings = check_embedding_rows(embeddings, need_direction=direction, name="embeddings")
    source = RowSource(embeddings, normalize=normalize_embeddings)
    scores = check_scores(scores, source.n) if check_input else np.asarray(scores, np.float64)
    ref = reference_matrix(reference, source, direction, check_input)
    n = source.n
    budget = resolve_budget(data_budget, n)
    order = score_order(scores)
    distances = np.full(n, np.nan)
    unit_norm = bool(normalize_embeddings)
    chunk = scratch_rows(int(block_size))

    def nearest_others(vectors, positions, with_index=False):
        own = (np.arange(len(positions)), positions)
        return nearest_other_rows(vectors, own, source, None, metric, unit_norm, chunk, with_index)

    selected, n_visited = walk(
        source, ref, order, budget, threshold, metric, unit_norm, neighbors, int(block_size),
        distances, show_progress_bar, nearest_others,
    )  # fmt: skip
    return SelectionResult(
        selected=np.asarray(selected, dtype=np.intp),
        distances=distances,
        order=order,
        n_visited=n_visited,
        budget=budget,
        budget_reached=len(selected) >= budget,
    )


def reference_matrix(reference, source, direction: bool, check: bool) -> np.ndarray:
    """The reference rows as one (normalised) float64 matrix, possibly empty."""
    if reference is None:
        return np.empty((0, source.dim))
    if check:
        reference = check_embedding_rows(reference, need_direction=direction, name="reference")
    ref = RowSource(reference, normalize=source.normalize)
    if ref.n and source.n and ref.dim != source.dim:
        raise ValueError(
            f"reference has {ref.dim} dimensions but the embeddings have {source.dim}; "
            "embed both with the same model."
        )
    # The kept set (at most the budget) and the reference are held in memory
    # by the rule anyway; the reference is what a curated set already holds.
    return ref.take(np.arange(ref.n)) if ref.n else np.empty((0, source.dim))
