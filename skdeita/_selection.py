"""Score-first, diversity-aware selection: the numerical core.

The rule (DEITA, Liu et al. 2024) walks the rows in decreasing score order and
keeps a row when its distance to the nearest *reference* row is at least the
threshold, until the budget is filled. The reference rows are either the rows
already kept (``neighbors="selected"``, the paper) or every other row of the
input (``neighbors="dataset"``, distilabel's ``DeitaFiltering``).

A one-row-at-a-time loop is exact but pays Python and memory-gathering costs
per candidate. Here candidates are processed in blocks: one distance
computation of the block against the kept pool, then a sequential resolution
inside the block that only needs the (small) distances between block members
that survived the pool check. The result equals the one-row loop exactly,
and no n x n matrix is ever allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
from scipy.spatial.distance import cdist

from ._progress import progress_bar

# Metrics whose value for a pair depends on the other rows passed to cdist
# (they estimate variances from the inputs); blocking would change them.
_DATA_DEPENDENT_METRICS = frozenset({"mahalanobis", "seuclidean"})
_METRIC_ALIASES = {"manhattan": "cityblock", "l1": "cityblock", "l2": "euclidean"}
CDIST_METRICS = frozenset(
    {
        "braycurtis",
        "canberra",
        "chebyshev",
        "cityblock",
        "correlation",
        "cosine",
        "dice",
        "euclidean",
        "hamming",
        "jaccard",
        "jensenshannon",
        "matching",
        "minkowski",
        "rogerstanimoto",
        "russellrao",
        "sokalsneath",
        "sqeuclidean",
        "yule",
    }
)
SUPPORTED_METRICS = CDIST_METRICS | frozenset(_METRIC_ALIASES)

# Upper bound on the float64 scratch matrix of one distance computation.
_MAX_SCRATCH_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of :func:`deita_select`.

    Attributes
    ----------
    selected : ndarray of int
        Positions of the kept rows, in selection order.
    distances : ndarray of float
        For every input row, the distance to its nearest reference row as seen
        when the row was visited (``inf`` for the first kept row in
        ``"selected"`` mode); ``nan`` for rows never visited.
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
            out = np.asarray(self._matrix[positions], dtype=np.float64)
        elif len(positions) == 0:
            out = np.empty((0, self.dim))
        else:
            rows = self._rows
            out = np.array([rows[p] for p in positions], dtype=np.float64)
        if self.normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def chunks(self, size: int):
        """Yield ``(start, block)`` over all rows in input order."""
        for start in range(0, self.n, size):
            yield start, self.take(np.arange(start, min(start + size, self.n)))


def resolve_metric(metric: str | Callable) -> str | Callable:
    """Map aliases (``"manhattan"``) to scipy names and reject unusable ones."""
    if callable(metric):
        return metric
    name = _METRIC_ALIASES.get(metric, metric)
    if name in _DATA_DEPENDENT_METRICS or name not in CDIST_METRICS:
        raise ValueError(
            f"distance_metric={metric!r} is not supported; use one of "
            f"{sorted(SUPPORTED_METRICS)} or a callable."
        )
    return name


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric, unit_norm: bool):
    """Distances between the rows of ``a`` and ``b`` (float64).

    Cosine on unit-norm rows is ``1 - a @ b.T``: one BLAS product, faster
    than ``cdist`` and equal to it to a few ulps (the tests show the
    selections agree).
    """
    if metric == "cosine" and unit_norm:
        out = a @ b.T
        np.subtract(1.0, out, out=out)
        return out
    return cdist(a, b, metric)


def resolve_budget(data_budget: int | float | None, n: int) -> int:
    """Rows to keep: an int, a fraction of ``n`` (rounded up), or all rows."""
    if data_budget is None:
        return n
    if isinstance(data_budget, Integral) and not isinstance(data_budget, bool):
        return int(data_budget)
    return int(np.ceil(float(data_budget) * n))


def score_order(scores: np.ndarray) -> np.ndarray:
    """Positions by decreasing score; equal scores keep input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


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
    check_input: bool = True,
) -> SelectionResult:
    """Select rows score-first under a diversity constraint (DEITA).

    Rows are visited by decreasing score (ties keep input order). A row is
    kept when its distance to the nearest reference row is at least
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
        Minimum distance to the nearest reference row. With cosine distance,
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
    check_input : bool, default=True
        Validate shapes and values; callers that already did may skip it.

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
    """
    metric = resolve_metric(distance_metric)
    if neighbors not in ("selected", "dataset"):
        raise ValueError(f"neighbors must be 'selected' or 'dataset', got {neighbors!r}")
    scores = np.asarray(scores, dtype=np.float64)
    source = RowSource(embeddings, normalize=normalize_embeddings)
    if check_input:
        _check_core_input(source, scores, metric, normalize_embeddings)
    n = source.n
    budget = resolve_budget(data_budget, n)
    order = score_order(scores)
    distances = np.full(n, np.nan)
    unit_norm = bool(normalize_embeddings)
    walk = _walk_selected if neighbors == "selected" else _walk_dataset
    with progress_bar(total=n, desc="DEITA selection", enabled=show_progress_bar) as bar:
        selected, n_visited = walk(
            source,
            order,
            budget,
            float(diversity_threshold),
            metric,
            unit_norm,
            max(1, int(block_size)),
            distances,
            bar,
        )
    return SelectionResult(
        selected=np.asarray(selected, dtype=np.intp),
        distances=distances,
        order=order,
        n_visited=n_visited,
        budget=budget,
        budget_reached=len(selected) >= budget,
    )


def _check_core_input(source: RowSource, scores, metric, normalize) -> None:
    if scores.ndim != 1 or scores.shape[0] != source.n:
        raise ValueError(
            f"scores must be 1-D with one value per row ({source.n}), got shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        bad = np.flatnonzero(~np.isfinite(scores))[:10].tolist()
        raise ValueError(f"scores must be finite; non-finite at positions {bad}")
    # A matrix is checked in its own dtype; a sequence is stacked by chunk.
    if source._matrix is not None:
        raw = source._matrix
        blocks = ((s, raw[s : s + 8192]) for s in range(0, source.n, 8192))
    else:
        blocks = RowSource(source._rows).chunks(8192)
    bad_finite, bad_zero = [], []
    need_direction = metric == "cosine" or normalize
    for start, block in blocks:
        finite = np.isfinite(block).all(axis=1)
        bad_finite.extend((start + np.flatnonzero(~finite)).tolist())
        if need_direction:
            zero = ~np.any(block != 0, axis=1)
            bad_zero.extend((start + np.flatnonzero(zero)).tolist())
    if bad_finite:
        raise ValueError(f"embeddings contain NaN or inf at positions {bad_finite[:10]}")
    if bad_zero:
        raise ValueError(
            "embeddings contain all-zero vectors, which have no direction for "
            f"cosine distance or normalisation, at positions {bad_zero[:10]}"
        )


def _grow(pool: np.ndarray, needed: int) -> np.ndarray:
    """Return ``pool`` with room for at least ``needed`` rows (doubling)."""
    if needed <= pool.shape[0]:
        return pool
    bigger = np.empty((max(needed, 2 * pool.shape[0], 16), pool.shape[1]))
    bigger[: pool.shape[0]] = pool
    return bigger


def _min_distance_to(block, others, metric, unit_norm, exclude=None) -> np.ndarray:
    """Row-wise minimum distance from ``block`` to ``others``, in bounded chunks.

    ``exclude`` is a pair ``(rows, cols)`` of block/others pairs to ignore (a
    row and itself).
    """
    out = np.full(block.shape[0], np.inf)
    if others.shape[0] == 0:
        return out
    screened = metric == "cosine" and unit_norm
    block32 = block.astype(np.float32) if screened else None
    step = max(1, _MAX_SCRATCH_ELEMENTS // max(1, block.shape[0]))
    for start in range(0, others.shape[0], step):
        chunk = others[start : start + step]
        skip = None
        if exclude is not None:
            inside = (exclude[1] >= start) & (exclude[1] < start + len(chunk))
            skip = (exclude[0][inside], exclude[1][inside] - start)
        if screened:
            d = _screened_cosine_min(block, block32, chunk, skip)
        else:
            d = pairwise_distances(block, chunk, metric, unit_norm)
            if skip is not None:
                d[skip] = np.inf
            d = d.min(axis=1)
        np.minimum(out, d, out=out)
    return out


def _screened_cosine_min(block, block32, others, skip=None) -> np.ndarray:
    """Exact float64 nearest cosine distance, found through a float32 product.

    The float32 similarities are within ``eps`` of the true ones (a dot
    product of unit vectors of dimension d has rounding error below
    ``(d + 2) * 2**-24``; we double it), so the true nearest row is among
    those within ``2 * eps`` of the float32 best. Only those pairs are
    recomputed in float64: half the cost of a float64 product, same answer.
    """
    sims = block32 @ others.astype(np.float32).T
    if skip is not None:
        sims[skip] = -np.inf
    eps = 2.0 * (block.shape[1] + 2) * 2.0**-24
    rows = np.arange(block.shape[0])
    cols = sims.argmax(axis=1)
    best = sims[rows, cols]
    near = sims >= (best - 2 * eps)[:, None]
    # Usually only the float32 best is near; look at the others row by row.
    ties = np.flatnonzero(near.sum(axis=1) > 1)
    if len(ties):
        tie_rows, tie_cols = np.nonzero(near[ties])
        rows = np.concatenate([rows, ties[tie_rows]])
        cols = np.concatenate([cols, tie_cols])
    exact = 1.0 - np.einsum("ij,ij->i", block[rows], others[cols])
    exact[np.isneginf(sims[rows, cols])] = np.inf  # only excluded pairs left
    out = np.full(block.shape[0], np.inf)
    np.minimum.at(out, rows, exact)
    return out


def _next_block(block_size: int, remaining: int, kept: int, visited: int) -> int:
    """Candidates to take next: enough to fill the budget at the rate seen so far.

    Only speed depends on it: a smaller last block wastes less work past the
    row that fills the budget.
    """
    rate = (kept + 1) / (visited + 1)
    return int(min(block_size, max(64, 1.2 * remaining / rate)))


def _walk_selected(source, order, budget, thr, metric, unit_norm, block, distances, bar):
    """Paper rule: compare each candidate with the rows kept before it."""
    n = source.n
    pool = np.empty((0, source.dim))
    n_kept = 0
    selected: list[int] = []
    pos = 0
    while pos < n and n_kept < budget:
        size = _next_block(block, budget - n_kept, n_kept, pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        d_pool = _min_distance_to(vectors, pool[:n_kept], metric, unit_norm)
        # Only rows that pass the pool check can be kept; resolve them in
        # order against each other (the in-block part of the sequential rule).
        passing = np.flatnonzero(d_pool >= thr)
        d_pass = pairwise_distances(vectors[passing], vectors[passing], metric, unit_norm)
        d_run = d_pool[passing].copy()  # distance to the nearest kept row so far
        kept_local: list[int] = []  # indices into ``passing``
        stop = len(positions)  # visited rows of this block: [0, stop)
        a = 0
        while a < len(passing):
            kept_local.append(a)
            np.minimum(d_run[a + 1 :], d_pass[a, a + 1 :], out=d_run[a + 1 :])
            if n_kept + len(kept_local) == budget:
                stop = passing[a] + 1
                break
            # Skip, in one step, every row that the rows kept so far reject.
            ahead = np.flatnonzero(d_run[a + 1 :] >= thr)
            if not len(ahead):
                break
            a += 1 + int(ahead[0])
        kept_rows = passing[np.asarray(kept_local, dtype=np.intp)]
        # Recorded distance: to the nearest row kept before it, as the one-row
        # loop sees it. Rows that passed the pool check have it in ``d_run``;
        # the others also count the rows kept earlier in this block.
        d_vis = d_pool[:stop].copy()
        seen = passing[passing < stop]
        d_vis[seen] = d_run[: len(seen)]
        rest = np.setdiff1d(np.arange(stop), seen, assume_unique=True)
        if len(kept_rows) and len(rest):
            d_in = pairwise_distances(vectors[rest], vectors[kept_rows], metric, unit_norm)
            d_in[kept_rows[None, :] >= rest[:, None]] = np.inf
            d_vis[rest] = np.minimum(d_vis[rest], d_in.min(axis=1))
        distances[positions[:stop]] = d_vis
        pool = _grow(pool, n_kept + len(kept_rows))
        pool[n_kept : n_kept + len(kept_rows)] = vectors[kept_rows]
        n_kept += len(kept_rows)
        selected.extend(positions[kept_rows].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)


def _walk_dataset(source, order, budget, thr, metric, unit_norm, block, distances, bar):
    """distilabel's rule: compare each candidate with every other input row."""
    n = source.n
    selected: list[int] = []
    pos = 0
    chunk = max(1, _MAX_SCRATCH_ELEMENTS // max(1, block))
    while pos < n and len(selected) < budget:
        size = _next_block(block, budget - len(selected), len(selected), pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        nearest = np.full(len(positions), np.inf)
        for start, others in source.chunks(chunk):
            # A row is not its own neighbour (an exact duplicate elsewhere is).
            own = np.flatnonzero((positions >= start) & (positions < start + len(others)))
            exclude = (own, positions[own] - start)
            d = _min_distance_to(vectors, others, metric, unit_norm, exclude)
            np.minimum(nearest, d, out=nearest)
        keep = np.flatnonzero(nearest >= thr)
        room = budget - len(selected)
        stop = len(positions) if len(keep) < room else keep[room - 1] + 1
        keep = keep[keep < stop]
        distances[positions[:stop]] = nearest[:stop]
        selected.extend(positions[keep].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)
