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
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        out = cdist(a, b, metric)
    if not np.isfinite(out).all():
        _raise_bad_distance(metric, out)
    return out


def _raise_bad_distance(metric, d: np.ndarray) -> None:
    name = getattr(metric, "__name__", repr(metric))
    if np.isnan(d).any():
        raise ValueError(
            f"distance_metric={name} returned NaN for finite embeddings; a metric must "
            "return a number for every pair of rows."
        )
    raise ValueError(
        f"distance_metric={name} overflowed to inf for finite embeddings: their scale "
        "is too large for this metric. Rescale them, or use normalize_embeddings=True."
    )


def min_distance_to(block, others, metric, unit_norm, exclude=None) -> np.ndarray:
    """Row-wise minimum distance from ``block`` to ``others``, in bounded chunks.

    ``exclude`` is a pair ``(rows, cols)`` of block/others pairs to ignore (a
    row and itself).
    """
    out = np.full(block.shape[0], np.inf)
    if others.shape[0] == 0:
        return out
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
