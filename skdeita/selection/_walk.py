"""The greedy walk: candidates visited best first, kept or rejected, in blocks.

One walk serves every caller: :func:`~skdeita.deita_select` on arrays,
:class:`~skdeita.DeitaSelector` on a pandas frame, and the same estimator on a
Dask DataFrame. They differ only in what they hand the walk:

- a *row source* with ``take(positions)``: float64 rows, normalised when
  asked (:class:`~skdeita.selection._greedy.RowSource` in memory,
  :class:`~skdeita.selection._dask_stream.StreamedRows` streamed from the
  workers);
- the *walk order*: positions by decreasing score (rows without a score
  left out);
- for ``neighbors="dataset"``, the *nearest other row* search: a function
  ``(vectors, positions) -> distances`` over every scored row of the input
  (:func:`nearest_other_rows` on one row source, or the same function run
  on each partition and reduced by a minimum);
- where the distances of the visited rows go: any object that accepts
  ``distances[positions] = values`` (an n-long array, or :class:`Distances`,
  stored by rank).

A one-row-at-a-time loop is exact but pays Python and memory-gathering costs
per candidate. Here candidates are processed in blocks: one distance
computation of the block against the kept pool, then a sequential resolution
inside the block that only needs the (small) distances between block members
that survived the pool check. The result equals the one-row loop exactly,
and no n x n matrix is ever allocated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..utils._progress import progress_bar
from ._distances import MAX_SCRATCH_ELEMENTS, min_distance_to, pairwise_distances


def walk(
    source,
    ref: np.ndarray,
    order: np.ndarray,
    budget: int,
    threshold: float,
    metric,
    unit_norm: bool,
    neighbors: str,
    block_size: int,
    distances,
    show_progress_bar: bool | None,
    nearest_others: Callable | None = None,
) -> tuple[list[int], int]:
    """Run the walk; return the kept positions (selection order) and the rows visited.

    ``nearest_others`` is required for ``neighbors="dataset"``.
    """
    with progress_bar(total=len(order), desc="DEITA selection", enabled=show_progress_bar) as bar:
        args = (source, ref, order, budget, threshold, metric, unit_norm, block_size, distances)
        if neighbors == "selected":
            return _walk_selected(*args, bar)
        return _walk_dataset(*args, bar, nearest_others)


def _grow(pool: np.ndarray, needed: int) -> np.ndarray:
    """Return ``pool`` with room for at least ``needed`` rows (doubling)."""
    if needed <= pool.shape[0]:
        return pool
    bigger = np.empty((max(needed, 2 * pool.shape[0], 16), pool.shape[1]))
    bigger[: pool.shape[0]] = pool
    return bigger


def _next_block(block_size: int, remaining: int, kept: int, visited: int) -> int:
    """Candidates to take next: enough to fill the budget at the rate seen so far.

    Only speed depends on it: a smaller last block wastes less work past the
    row that fills the budget.
    """
    rate = (kept + 1) / (visited + 1)
    return int(min(block_size, max(64, 1.2 * remaining / rate)))


def _walk_selected(source, ref, order, budget, thr, metric, unit_norm, block, distances, bar):
    """Paper rule: compare each candidate with the reference and the rows kept before it."""
    n = len(order)
    n_ref = ref.shape[0]
    pool = _grow(ref, n_ref)  # reference rows first, then the kept rows
    n_kept = 0
    selected: list[int] = []
    pos = 0
    while pos < n and n_kept < budget:
        size = _next_block(block, budget - n_kept, n_kept, pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        d_pool = min_distance_to(vectors, pool[: n_ref + n_kept], metric, unit_norm)
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
        pool = _grow(pool, n_ref + n_kept + len(kept_rows))
        pool[n_ref + n_kept : n_ref + n_kept + len(kept_rows)] = vectors[kept_rows]
        n_kept += len(kept_rows)
        selected.extend(positions[kept_rows].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)


def _walk_dataset(
    source, ref, order, budget, thr, metric, unit_norm, block, distances, bar, nearest_others
):
    """distilabel's rule: compare each candidate with every other scored row of the
    input (``nearest_others``) and every reference row."""
    n = len(order)
    selected: list[int] = []
    pos = 0
    while pos < n and len(selected) < budget:
        size = _next_block(block, budget - len(selected), len(selected), pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        nearest = min_distance_to(vectors, ref, metric, unit_norm)
        np.minimum(nearest, nearest_others(vectors, positions), out=nearest)
        keep = np.flatnonzero(nearest >= thr)
        room = budget - len(selected)
        stop = len(positions) if len(keep) < room else keep[room - 1] + 1
        keep = keep[keep < stop]
        distances[positions[:stop]] = nearest[:stop]
        selected.extend(positions[keep].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)


def scratch_rows(block_size: int) -> int:
    """Rows of the input compared at once with a candidate block (bounded scratch)."""
    return max(1, MAX_SCRATCH_ELEMENTS // max(1, block_size))


def nearest_other_rows(vectors, own, source, scored, metric, unit_norm, chunk) -> np.ndarray:
    """Distance from each of ``vectors`` to the nearest scored row of ``source``.

    ``own = (block_rows, rows)``: the candidates (``vectors[block_rows]``)
    that are rows of ``source`` (``rows``), which are not their own
    neighbours (an exact duplicate elsewhere is). ``scored`` lists the rows
    of ``source`` that take part, ascending (None: all). The rows are read in
    chunks of ``chunk``; a minimum does not depend on how rows are grouped,
    so the whole input and its partitions give the same distances.
    """
    block_rows, rows = own
    n = source.n if scored is None else len(scored)
    at = rows if scored is None else np.searchsorted(scored, rows)
    nearest = np.full(len(vectors), np.inf)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        others = source.take(np.arange(start, stop) if scored is None else scored[start:stop])
        inside = (at >= start) & (at < stop)
        exclude = (block_rows[inside], at[inside] - start)
        np.minimum(
            nearest, min_distance_to(vectors, others, metric, unit_norm, exclude), out=nearest
        )
    return nearest


def rank_of(order: np.ndarray, positions: np.ndarray, hint: int) -> int:
    """The rank ``p`` such that ``positions`` is ``order[p : p + len]``.

    The walks always pass such a slice (a view of ``order``), found from its
    address; any other array is looked up from ``hint`` on.
    """
    if (
        positions.base is not None
        and positions.dtype == order.dtype
        and positions.strides == order.strides
    ):
        offset = positions.ctypes.data - order.ctypes.data
        p, rem = divmod(offset, order.itemsize)
        if not rem and 0 <= p < len(order) and order[p] == positions[0]:
            return p
    found = np.flatnonzero(order[hint:] == positions[0])
    if not len(found):
        raise RuntimeError("the walk asked for rows outside its order")
    return hint + int(found[0])


class Distances:
    """The walk's ``distances[positions] = values``, stored by rank (visited rows
    are a prefix of the order), never as an n-long array.

    With ``kept_only=threshold``, only the values >= threshold are stored: in
    both walks a visited row is kept exactly when its recorded distance
    reaches the threshold, so these are the kept rows' distances, in
    selection order (:meth:`by_rank` checks their count against the kept rows).
    """

    def __init__(self, order: np.ndarray, kept_only: float | None = None):
        self.order = order
        self.kept_only = kept_only
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def __setitem__(self, positions, values) -> None:
        if not len(positions):
            return
        p = rank_of(self.order, positions, self.n)
        if p != self.n:
            raise RuntimeError("the walk recorded distances out of order")
        values = np.array(values, dtype=np.float64)
        self.chunks.append(values if self.kept_only is None else values[values >= self.kept_only])
        self.n += len(positions)

    def by_rank(self, n_kept: int) -> np.ndarray:
        """The visited rows' distances by rank (or the kept rows', with ``kept_only``)."""
        out = np.concatenate(self.chunks) if self.chunks else np.empty(0)
        if self.kept_only is not None and len(out) != n_kept:
            raise RuntimeError(f"kept {n_kept} rows but recorded {len(out)} distances")
        return out
