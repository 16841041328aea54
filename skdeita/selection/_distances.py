"""Distances between embedding rows: metric names, exact nearest-row search.

Every function works on bounded blocks, so no n x n matrix is allocated, and
every result is checked: a metric that returns NaN, or a distance that
overflows, is an error naming the metric, never a silently dropped row.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.distance import cdist

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
MAX_SCRATCH_ELEMENTS = 4_000_000

# Metrics whose value does not change when a row is scaled by a positive factor.
_ROW_SCALE_FREE = frozenset({"cosine", "correlation", "jensenshannon"})
# Metrics computed as the square root of a sum of squares (minkowski: p=2).
_SQUARE_ROOTED = frozenset({"euclidean", "minkowski"})


def resolve_metric(metric: str | Callable) -> str | Callable:
    """Map aliases (``"manhattan"``) to scipy names and reject unusable ones."""
    if callable(metric):
        return metric
    name = _METRIC_ALIASES.get(metric, metric) if isinstance(metric, str) else None
    if name in _DATA_DEPENDENT_METRICS or name not in CDIST_METRICS:
        raise ValueError(
            f"distance_metric={metric!r} is not supported; use one of "
            f"{sorted(SUPPORTED_METRICS)} or a callable."
        )
    return name


def needs_direction(metric, normalize: bool) -> bool:
    """Whether a zero vector is meaningless (cosine, or normalisation asked)."""
    return metric == "cosine" or bool(normalize)


def unit_rows(block: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in place, for any finite non-zero scale.

    The plain ``x / ||x||`` is kept for ordinary scales (so results match a
    plain loop bit for bit); rows whose squared norm would overflow (1e170)
    or underflow (1e-170) are first divided by their largest magnitude.
    """
    with np.errstate(over="ignore", under="ignore"):
        norms = np.linalg.norm(block, axis=1, keepdims=True)
    extreme = ~((norms > 1e-150) & (norms < 1e150)).ravel()
    if extreme.any():
        rows = block[extreme]
        rows /= np.abs(rows).max(axis=1, keepdims=True)
        block[extreme] = rows
        norms[extreme] = np.linalg.norm(rows, axis=1, keepdims=True)
    block /= norms
    return block


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric, unit_norm: bool) -> np.ndarray:
    """Distances between the rows of ``a`` and ``b`` (float64), checked.

    Cosine on unit-norm rows is ``1 - a @ b.T``: one BLAS product, faster
    than ``cdist`` and equal to it to a few ulps (the tests show the
    selections agree).
    """
    if metric == "cosine" and unit_norm:
        out = a @ b.T
        np.subtract(1.0, out, out=out)
        # Rounding can push a duplicate's similarity past 1: a distance is >= 0
        # (as scipy clips it), or threshold 0 would drop exact duplicates.
        np.clip(out, 0.0, 2.0, out=out)
        return out
    if metric in _ROW_SCALE_FREE:
        # Their value ignores each row's scale, but scipy squares the norms:
        # rows at 1e170 or 1e-170 are first brought near 1, exactly.
        a, b = _power_of_two_scaled(a), _power_of_two_scaled(b)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = _cdist_checked(a, b, metric)
    if metric in _SQUARE_ROOTED:
        _refine_extreme_norms(a, b, out)
    if not np.isfinite(out).all():
        _raise_bad_distance(metric, out)
    return out


def _cdist_checked(a, b, metric):
    """``cdist``; a callable metric that fails is named in the error."""
    if not callable(metric):
        return cdist(a, b, metric)
    try:
        return cdist(a, b, metric)
    except (TypeError, ValueError) as exc:
        name = getattr(metric, "__name__", repr(metric))
        raise ValueError(
            f"distance_metric={name} failed on finite embeddings ({exc}); a metric must "
            "return one float for every pair of 1-D float64 rows."
        ) from exc


def _power_of_two_scaled(rows: np.ndarray) -> np.ndarray:
    """``rows``, with each row whose largest entry is beyond 2**+-500 scaled by a
    power of two (exact) so that its largest entry is in [0.5, 1)."""
    big = np.abs(rows).max(axis=1) if rows.size else np.zeros(len(rows))
    extreme = (big > 0) & ((big < 2.0**-500) | (big > 2.0**500))
    if not extreme.any():
        return rows
    rows = rows.copy()
    _, exponent = np.frexp(big[extreme])
    rows[extreme] = np.ldexp(rows[extreme], -exponent[:, None])
    return rows


def _refine_extreme_norms(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """Recompute, in place, Euclidean distances whose squares under/overflowed.

    ``sqrt(sum(diff**2))`` loses every digit when the differences are below
    about 1e-154 (the squares underflow: rows at 1e-170 all look identical)
    and overflows above about 1e154 although the distance is finite. Those
    pairs are recomputed as ``m * ||diff / m||`` with ``m = max|diff|``.
    """
    rows, cols = np.nonzero((out < 2.0**-480) | np.isinf(out))
    step = max(1, MAX_SCRATCH_ELEMENTS // max(1, a.shape[1]))
    for start in range(0, len(rows), step):
        r, c = rows[start : start + step], cols[start : start + step]
        with np.errstate(invalid="ignore", over="ignore", under="ignore"):
            diff = a[r] - b[c]  # inf only when the distance itself overflows
            m = np.abs(diff).max(axis=1)
            d = m * np.linalg.norm(diff / np.where(m > 0, m, 1.0)[:, None], axis=1)
        d[np.isinf(m)] = np.inf
        out[r, c] = d


def _raise_bad_distance(metric, d: np.ndarray) -> None:
    name = getattr(metric, "__name__", repr(metric))
    if metric == "jensenshannon":
        raise ValueError(
            "distance_metric='jensenshannon' compares probability distributions: every "
            "embedding must be non-negative with a positive sum. Use 'cosine' for "
            "signed embeddings."
        )
    if np.isnan(d).any():
        raise ValueError(
            f"distance_metric={name} returned NaN for finite embeddings; a metric must "
            "return a number for every pair of rows."
        )
    raise ValueError(
        f"distance_metric={name} overflowed to inf for finite embeddings: their scale "
        "is too large for this metric. Rescale them, or use normalize_embeddings=True."
    )


def min_distance_to(
    block, others, metric, unit_norm, exclude=None, with_index=False, others32=None
):
    """Row-wise minimum distance from ``block`` to ``others``, in bounded chunks.

    ``exclude`` is a pair ``(rows, cols)`` of block/others pairs to ignore (a
    row and itself). With ``with_index``, also the row of ``others`` at that
    distance (the first one on a tie; -1 when there is none): ``(d, index)``.
    ``others32``: ``others`` as float32, when the caller keeps it (cosine on
    unit rows screens with it).
    """
    out = np.full(block.shape[0], np.inf)
    index = np.full(block.shape[0], -1, dtype=np.int64) if with_index else None
    if others.shape[0] == 0:
        return (out, index) if with_index else out
    screened = metric == "cosine" and unit_norm
    block32 = block.astype(np.float32) if screened else None
    step = max(1, MAX_SCRATCH_ELEMENTS // max(1, block.shape[0]))
    for start in range(0, others.shape[0], step):
        chunk = others[start : start + step]
        skip = None
        if exclude is not None:
            inside = (exclude[1] >= start) & (exclude[1] < start + len(chunk))
            skip = (exclude[0][inside], exclude[1][inside] - start)
        if screened:
            chunk32 = None if others32 is None else others32[start : start + step]
            d, at = _screened_cosine_min(block, block32, chunk, skip, with_index, chunk32)
        else:
            d = pairwise_distances(block, chunk, metric, unit_norm)
            if skip is not None:
                d[skip] = np.inf
            at = d.argmin(axis=1) if with_index else None
            d = d[np.arange(len(d)), at] if with_index else d.min(axis=1)
        if with_index:
            closer = d < out  # strictly: an earlier chunk wins a tie
            out[closer] = d[closer]
            index[closer] = at[closer] + start
        else:
            np.minimum(out, d, out=out)
    return (out, index) if with_index else out


def exact_cosine(a: np.ndarray, b: np.ndarray, rows, cols) -> np.ndarray:
    """Cosine distances of the unit-row pairs ``(a[rows[k]], b[cols[k]])``, each
    computed alone by one fixed formula: the same value wherever the pair is
    met (a matrix product's value depends on the other rows of the product)."""
    out = np.empty(len(rows))
    step = max(1, MAX_SCRATCH_ELEMENTS // max(1, a.shape[1]))
    for s in range(0, len(rows), step):
        r, c = rows[s : s + step], cols[s : s + step]
        out[s : s + step] = 1.0 - np.einsum("ij,ij->i", a[r], b[c])
    return np.clip(out, 0.0, 2.0, out=out)


def product_error(dim: int) -> float:
    """Bound on ``|1 - a @ b.T - exact_cosine|`` for unit rows of ``dim`` entries,
    doubled: two float64 dot products of unit vectors differ by at most
    ``2 * dim * 2**-53`` whatever their summation order, and ``1 - x`` adds at
    most ``2**-52``."""
    return 4.0 * (dim + 2) * 2.0**-53


def _screened_cosine_min(block, block32, others, skip=None, with_index=False, others32=None):
    """Exact float64 nearest cosine distance, found through a float32 product.

    The float32 similarities are within ``eps`` of the true ones (a dot
    product of unit vectors of dimension d has rounding error below
    ``(d + 2) * 2**-24``; we double it), so the true nearest row is among
    those within ``2 * eps`` of the float32 best. Only those pairs are
    recomputed in float64 (:func:`exact_cosine`): half the cost of a float64
    product, same answer. Returns ``(d, index or None)``.
    """
    sims = block32 @ (others.astype(np.float32) if others32 is None else others32).T
    if skip is not None:
        sims[skip] = -np.inf
    eps = 2.0 * (block.shape[1] + 2) * 2.0**-24
    rows = np.arange(block.shape[0])
    cols = sims.argmax(axis=1)
    best = sims[rows, cols]
    # Usually only the float32 best is near: find the rows where the second best
    # is too, and look at their columns.
    sims[rows, cols] = -np.inf
    ties = np.flatnonzero(sims.max(axis=1) >= best - 2 * eps)
    sims[rows, cols] = best
    if len(ties):
        tie_rows, tie_cols = np.nonzero(sims[ties] >= (best[ties] - 2 * eps)[:, None])
        rows = np.concatenate([rows, ties[tie_rows]])
        cols = np.concatenate([cols, tie_cols])
    exact = exact_cosine(block, others, rows, cols)
    exact[np.isneginf(sims[rows, cols])] = np.inf  # only excluded pairs left
    out = np.full(block.shape[0], np.inf)
    if not with_index:
        np.minimum.at(out, rows, exact)
        return out, None
    first = np.lexsort((cols, exact, rows))  # by row, then distance, then column
    lead = np.ones(len(first), dtype=bool)
    lead[1:] = rows[first[1:]] != rows[first[:-1]]
    pick = first[lead]
    out[rows[pick]] = exact[pick]
    index = np.zeros(block.shape[0], dtype=np.int64)
    index[rows[pick]] = cols[pick]
    return out, index
