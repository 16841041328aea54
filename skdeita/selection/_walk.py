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
  stored by rank); and, when asked, where their nearest rows go
  (:class:`Nearest`: the row each visited row was measured against).

A one-row-at-a-time loop is exact but pays Python and memory-gathering costs
per candidate. Here candidates are processed in blocks: one distance
computation of the block against the kept pool, then a sequential resolution
inside the block that only needs the (small) distances between block members
that survived the pool check. The result equals the one-row loop exactly,
and no n x n matrix is ever allocated.

Exactly means for any block size, to the last bit. A pair's cosine distance
is one value wherever it is met: the pool check computes it alone
(:func:`~._distances.exact_cosine`), but the in-block matrix comes from a
matrix product, whose last bits depend on the other rows of the product. So
the in-block values are settled where they matter: a product value within
:func:`~._distances.product_error` of the threshold is recomputed before it
decides, and a row's recorded distance and nearest row are those of the
pairs' own values (the candidates within that error of the row's minimum
recomputed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..utils._progress import progress_bar
from ._distances import (
    MAX_SCRATCH_ELEMENTS,
    exact_cosine,
    min_distance_to,
    pairwise_distances,
    product_error,
)

# The nearest row of a visited row that had none (the first kept row, with no
# reference): a code no row position or reference row takes.
NO_ROW = np.iinfo(np.int64).min


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
    nearest=None,
) -> tuple[list[int], int]:
    """Run the walk; return the kept positions (selection order) and the rows visited.

    ``nearest_others`` is required for ``neighbors="dataset"``. ``nearest``,
    when given, receives each visited row's nearest row (see :class:`Nearest`).
    """
    with progress_bar(total=len(order), desc="DEITA selection", enabled=show_progress_bar) as bar:
        args = (source, ref, order, budget, threshold, metric, unit_norm, block_size)
        if neighbors == "selected":
            return _walk_selected(*args, distances, nearest, bar)
        return _walk_dataset(*args, distances, nearest, bar, nearest_others)


def _grow(pool: np.ndarray, needed: int) -> np.ndarray:
    """Return ``pool`` with room for at least ``needed`` rows (doubling)."""
    if needed <= pool.shape[0]:
        return pool
    bigger = np.empty((max(needed, 2 * pool.shape[0], 16), pool.shape[1]), dtype=pool.dtype)
    bigger[: pool.shape[0]] = pool
    return bigger


def _next_block(block_size: int, remaining: int, kept: int, visited: int) -> int:
    """Candidates to take next: enough to fill the budget at the rate seen so far.

    Only speed depends on it: a smaller last block wastes less work past the
    row that fills the budget.
    """
    rate = (kept + 1) / (visited + 1)
    return int(min(block_size, max(64, 1.2 * remaining / rate)))


def _walk_selected(
    source, ref, order, budget, thr, metric, unit_norm, block, distances, nearest, bar
):
    """Paper rule: compare each candidate with the reference and the rows kept before it."""
    n = len(order)
    n_ref = ref.shape[0]
    pool = _grow(ref, n_ref)  # reference rows first, then the kept rows
    kept_at = np.empty(0, dtype=np.int64)  # positions of the pool's kept rows (with ``nearest``)
    eps = product_error(source.dim) if metric == "cosine" and unit_norm else 0.0
    # The pool in float32 for the screened cosine search, kept as it grows.
    pool32 = pool.astype(np.float32) if eps else None
    n_kept = 0
    selected: list[int] = []
    pos = 0
    while pos < n and n_kept < budget:
        size = _next_block(block, budget - n_kept, n_kept, pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        pooled = pool[: n_ref + n_kept]
        pooled32 = None if pool32 is None else pool32[: n_ref + n_kept]
        found = min_distance_to(
            vectors, pooled, metric, unit_norm, None, nearest is not None, pooled32
        )
        d_pool, at_pool = found if nearest is not None else (found, None)
        # Only rows that pass the pool check can be kept; resolve them in
        # order against each other (the in-block part of the sequential rule).
        passing = np.flatnonzero(d_pool >= thr)
        d_pass = pairwise_distances(vectors[passing], vectors[passing], metric, unit_norm)
        room = budget - n_kept
        kept_local, m_in = _resolve_block(d_pass, thr, room)
        n_seen = len(passing) if len(kept_local) < room else kept_local[-1] + 1
        if eps and thr > 0 and (np.abs(m_in[:n_seen] - thr) <= eps).any():
            # A product value may have decided on the wrong side of the threshold
            # (rare): decide again with the pairs' own values there.
            r, c = np.nonzero(np.abs(d_pass - thr) <= eps)
            d_pass[r, c] = exact_cosine(vectors, vectors, passing[r], passing[c])
            kept_local, m_in = _resolve_block(d_pass, thr, room)
        stop = len(positions) if len(kept_local) < room else passing[kept_local[-1]] + 1
        kept_rows = passing[kept_local]
        # Every visited row's distance, or (a subset's) the kept rows' only.
        every = nearest is not None or getattr(distances, "kept_only", None) is None
        d_vis, at_vis = _nearest_kept_before(
            vectors, stop, passing, d_pass, kept_local, m_in, d_pool, metric, unit_norm, eps,
            every,
        )  # fmt: skip
        distances[positions[:stop]] = d_vis
        if nearest is not None:
            codes = _pool_codes(at_pool[:stop], n_ref, kept_at)
            inside = at_vis >= 0
            codes[inside] = positions[kept_rows[at_vis[inside]]]
            nearest[positions[:stop]] = codes
            kept_at = np.concatenate([kept_at, positions[kept_rows]])
        pool = _grow(pool, n_ref + n_kept + len(kept_rows))
        pool[n_ref + n_kept : n_ref + n_kept + len(kept_rows)] = vectors[kept_rows]
        if pool32 is not None:
            pool32 = _grow(pool32, n_ref + n_kept + len(kept_rows))
            pool32[n_ref + n_kept : n_ref + n_kept + len(kept_rows)] = vectors[kept_rows]
        n_kept += len(kept_rows)
        selected.extend(positions[kept_rows].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)


def _resolve_block(d_pass, thr, room):
    """The sequential rule inside a block, on the rows that passed the pool check:
    the kept rows (indices into them, at most ``room``) and each row's distance
    to the nearest row kept earlier in the block (a row is kept when that is
    >= thr: its pool distance is)."""
    p = len(d_pass)
    m_in = np.full(p, np.inf)
    kept: list[int] = []
    a = 0
    while a < p:
        kept.append(a)
        if len(kept) == room or a + 1 == p:
            break
        m = m_in[a + 1 :]
        np.minimum(m, d_pass[a, a + 1 :], out=m)
        # Skip, in one step, every row that the rows kept so far reject.
        ahead = m >= thr
        i = int(ahead.argmax())
        if not ahead[i]:
            break
        a += 1 + i
    return np.asarray(kept, dtype=np.intp), m_in


def _nearest_kept_before(
    vectors, stop, passing, d_pass, kept_local, m_in, d_pool, metric, unit_norm, eps, every
):
    """Each visited row's distance to the nearest row kept before it, and where that
    row is: ``(d, at)``, ``at`` an index into the block's kept rows, or -1 for
    the pool's nearest (``d_pool``; it was kept earlier, so it wins a tie).

    Rows that passed the pool check read their in-block distances from
    ``d_pass`` (``m_in``: their minimum); the others are measured against the
    block's kept rows now. With ``eps`` (matrix products), the in-block values
    that could be the nearest are the pairs' own
    (:func:`~._distances.exact_cosine`). Unless ``every``, only the kept rows'
    are settled: the others get a value below the threshold, as they must.
    """
    n_seen = int(np.count_nonzero(passing < stop))  # the first of ``passing``
    d_vis = d_pool[:stop].copy()
    d_vis[passing[:n_seen]] = np.minimum(d_pool[passing[:n_seen]], m_in[:n_seen])
    at = np.full(stop, -1, dtype=np.int64)
    kept_rows = passing[kept_local]
    if not len(kept_rows):
        return d_vis, at
    in_kept = np.full(len(passing), -1, dtype=np.intp)
    in_kept[kept_local] = np.arange(len(kept_local))
    targets = np.arange(n_seen) if every else kept_local  # indices into ``passing``
    # Target row x passing row, only the rows kept before it left finite. Mostly
    # kept: copy and blank the others; mostly not: gather the kept.
    if 2 * len(kept_local) > n_seen:
        cols = np.arange(n_seen)
        seen = d_pass[targets, :n_seen]
        seen[:, in_kept[:n_seen] < 0] = np.inf
    else:
        cols = kept_local
        seen = d_pass[targets][:, kept_local]
    for b, first in enumerate(np.searchsorted(cols, targets).tolist()):
        seen[b, first:] = np.inf
    j_seen, m_seen, close_seen = _row_nearest(seen, eps)
    j_seen = np.where(j_seen >= 0, in_kept[cols[j_seen]], -1)
    rest = np.setdiff1d(np.arange(stop), passing[:n_seen], assume_unique=True)
    if not every:
        rest = rest[:0]
    d_rest = pairwise_distances(vectors[rest], vectors[kept_rows], metric, unit_norm)
    np.putmask(d_rest, kept_rows[None, :] >= rest[:, None], np.inf)
    j_rest, m_rest, close_rest = _row_nearest(d_rest, eps)
    rows = np.concatenate([passing[targets], rest])
    j, m = np.concatenate([j_seen, j_rest]), np.concatenate([m_seen, m_rest])
    # Rows whose nearest could be in the block (with no product, the values are the pairs').
    could = (j >= 0) & (m <= d_pool[rows] + eps)
    if eps and could.any():
        c = np.flatnonzero(could)
        m[c] = exact_cosine(vectors, vectors, rows[c], kept_rows[j[c]])
        close = np.concatenate([close_seen, close_rest])
        for i in c[close[c]]:  # a few: several kept rows about as near
            if i < len(targets):
                values, to_kept = seen[i], in_kept[cols]
            else:
                values, to_kept = d_rest[i - len(targets)], np.arange(len(kept_rows))
            near = to_kept[values <= values[values < np.inf].min() + eps]
            own = exact_cosine(vectors, vectors, np.full(len(near), rows[i]), kept_rows[near])
            m[i], j[i] = own.min(), near[int(np.argmin(own))]
    d_vis[rows] = d_pool[rows]
    at[rows] = -1
    closer = could & (m < d_pool[rows])
    d_vis[rows[closer]] = m[closer]
    at[rows[closer]] = j[closer]
    return d_vis, at


def _row_nearest(d: np.ndarray, eps: float):
    """Per row: the first column at the minimum (-1: none finite), the minimum, and
    whether another column is within ``eps`` of it (a second minimum)."""
    rows = np.arange(len(d))
    if not d.shape[1]:
        return np.full(len(d), -1), np.full(len(d), np.inf), np.zeros(len(d), dtype=bool)
    j = d.argmin(axis=1)
    m = d[rows, j]
    close = np.zeros(len(d), dtype=bool)
    if eps:
        d[rows, j] = np.inf  # the second minimum, then put the minimum back
        close = d.min(axis=1) <= m + eps
        d[rows, j] = m
    j[np.isinf(m)] = -1
    return j, m, close


def _pool_codes(at_pool: np.ndarray, n_ref: int, kept_at: np.ndarray) -> np.ndarray:
    """Pool rows as :class:`Nearest` codes: reference row r is ``-(r + 1)``, a kept
    row its position; :data:`NO_ROW` for an empty pool."""
    codes = np.full(len(at_pool), NO_ROW, dtype=np.int64)
    ref = (at_pool >= 0) & (at_pool < n_ref)
    codes[ref] = -(at_pool[ref] + 1)
    kept = at_pool >= n_ref
    codes[kept] = kept_at[at_pool[kept] - n_ref]
    return codes


def _walk_dataset(
    source, ref, order, budget, thr, metric, unit_norm, block, distances, nearest, bar,
    nearest_others,
):  # fmt: skip
    """distilabel's rule: compare each candidate with every other scored row of the
    input (``nearest_others``) and every reference row (which wins a tie)."""
    n = len(order)
    selected: list[int] = []
    pos = 0
    while pos < n and len(selected) < budget:
        size = _next_block(block, budget - len(selected), len(selected), pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        if nearest is None:
            d = min_distance_to(vectors, ref, metric, unit_norm)
            np.minimum(d, nearest_others(vectors, positions), out=d)
        else:
            d, at = min_distance_to(vectors, ref, metric, unit_norm, with_index=True)
            codes = _pool_codes(at, ref.shape[0], np.empty(0, dtype=np.int64))
            d_other, other = nearest_others(vectors, positions, with_index=True)
            closer = d_other < d
            d[closer], codes[closer] = d_other[closer], other[closer]
        keep = np.flatnonzero(d >= thr)
        room = budget - len(selected)
        stop = len(positions) if len(keep) < room else keep[room - 1] + 1
        keep = keep[keep < stop]
        distances[positions[:stop]] = d[:stop]
        if nearest is not None:
            nearest[positions[:stop]] = codes[:stop]
        selected.extend(positions[keep].tolist())
        pos += stop
        bar.update(stop)
    return selected, int(pos)


def scratch_rows(block_size: int) -> int:
    """Rows of the input compared at once with a candidate block (bounded scratch)."""
    return max(1, MAX_SCRATCH_ELEMENTS // max(1, block_size))


def nearest_other_rows(
    vectors, own, source, scored, metric, unit_norm, chunk, with_index=False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distance from each of ``vectors`` to the nearest scored row of ``source``.

    ``own = (block_rows, rows)``: the candidates (``vectors[block_rows]``)
    that are rows of ``source`` (``rows``), which are not their own
    neighbours (an exact duplicate elsewhere is). ``scored`` lists the rows
    of ``source`` that take part, ascending (None: all). The rows are read in
    chunks of ``chunk``; a minimum does not depend on how rows are grouped,
    so the whole input and its partitions give the same distances. With
    ``with_index``, also that row of ``source`` (the first on a tie; -1 for
    none): ``(d, rows)``.
    """
    block_rows, rows = own
    n = source.n if scored is None else len(scored)
    at = rows if scored is None else np.searchsorted(scored, rows)
    nearest = np.full(len(vectors), np.inf)
    which = np.full(len(vectors), -1, dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        taken = np.arange(start, stop) if scored is None else scored[start:stop]
        others = source.take(taken)
        inside = (at >= start) & (at < stop)
        exclude = (block_rows[inside], at[inside] - start)
        if not with_index:
            d = min_distance_to(vectors, others, metric, unit_norm, exclude)
            np.minimum(nearest, d, out=nearest)
            continue
        d, k = min_distance_to(vectors, others, metric, unit_norm, exclude, with_index=True)
        closer = d < nearest  # strictly: an earlier row wins a tie
        nearest[closer], which[closer] = d[closer], taken[k[closer]]
    return (nearest, which) if with_index else nearest


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


class _ByRank:
    """``store[positions] = values`` for the walk's visited rows, kept by rank
    (visited rows are a prefix of the order), never as an n-long array."""

    dtype = np.float64

    def __init__(self, order: np.ndarray):
        self.order = order
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def __setitem__(self, positions, values) -> None:
        if not len(positions):
            return
        p = rank_of(self.order, positions, self.n)
        if p != self.n:
            raise RuntimeError("the walk recorded rows out of order")
        self.chunks.append(self._kept(np.array(values, dtype=self.dtype)))
        self.n += len(positions)

    def _kept(self, values: np.ndarray) -> np.ndarray:
        return values

    def _joined(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.empty(0, dtype=self.dtype)


class Distances(_ByRank):
    """The visited rows' distances by rank.

    With ``kept_only=threshold``, only the values >= threshold are stored: in
    both walks a visited row is kept exactly when its recorded distance
    reaches the threshold, so these are the kept rows' distances, in
    selection order (:meth:`by_rank` checks their count against the kept rows).
    """

    def __init__(self, order: np.ndarray, kept_only: float | None = None):
        super().__init__(order)
        self.kept_only = kept_only

    def _kept(self, values: np.ndarray) -> np.ndarray:
        return values if self.kept_only is None else values[values >= self.kept_only]

    def by_rank(self, n_kept: int) -> np.ndarray:
        """The visited rows' distances by rank (or the kept rows', with ``kept_only``)."""
        out = self._joined()
        if self.kept_only is not None and len(out) != n_kept:
            raise RuntimeError(f"kept {n_kept} rows but recorded {len(out)} distances")
        return out


class Nearest(_ByRank):
    """The visited rows' nearest rows by rank, as codes: a row of the input is its
    position, reference row r is ``-(r + 1)``, and :data:`NO_ROW` is none.

    Under the paper rule, the nearest row kept before the row was visited (the
    one kept first on a tie, reference rows before all); under the dataset
    rule, the nearest other row (a reference row, then the first in input
    order, on a tie).
    """

    dtype = np.int64

    def by_rank(self) -> np.ndarray:
        return self._joined()
