"""Many thresholds, one walk: the selections of several diversity thresholds
computed together.

Every threshold visits the rows in the same score order, so the rows are
gathered and normalised once, block by block, for all of them. Under the
paper's rule each threshold has its own kept pool, but the pools overlap: the
pools' union is held once, a block's distances to it come from one matrix
product, and each threshold reads the columns of its own rows. A block's
distances between its own rows are computed once too. Under distilabel's rule
a row's distance to its nearest other row does not depend on the threshold
at all: it is computed once per visited row.

Each threshold's outcome equals :func:`~skdeita.deita_select` run with that
threshold alone; the tests compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._distances import MAX_SCRATCH_ELEMENTS, min_distance_to, pairwise_distances


@dataclass
class ThresholdWalk:
    """What one threshold's walk did: kept positions (in the input), rows
    visited, and the recorded distance of every blocked row."""

    threshold: float
    kept: list[int] = field(default_factory=list)
    n_visited: int = 0
    blocked_distances: list[np.ndarray] = field(default_factory=list)
    done: bool = False


def _block_size(walks, budget: int, block_size: int, visited: int) -> int:
    """Rows to take next: enough for the active threshold that needs most.

    Only speed depends on it (every threshold resolves a block in order).
    """
    sizes = []
    for w in walks:
        if not w.done:
            rate = (len(w.kept) + 1) / (visited + 1)
            sizes.append(min(block_size, max(64, 1.2 * (budget - len(w.kept)) / rate)))
    return int(max(sizes))


def _screened_min(block, block32, others, sims) -> np.ndarray:
    """Exact float64 nearest cosine distance from float32 similarities.

    The float32 similarity of unit vectors of dimension d is within
    ``(d + 2) * 2**-24`` of the true one (doubled here), so the true nearest
    row is among those within twice that margin of the float32 best; only
    those pairs are recomputed in float64 (as ``deita_select`` does).
    """
    eps = 2.0 * (block.shape[1] + 2) * 2.0**-24
    rows = np.arange(block.shape[0])
    cols = sims.argmax(axis=1)
    best = sims[rows, cols]
    near = sims >= (best - 2 * eps)[:, None]
    ties = np.flatnonzero(near.sum(axis=1) > 1)
    if len(ties):
        tie_rows, tie_cols = np.nonzero(near[ties])
        rows = np.concatenate([rows, ties[tie_rows]])
        cols = np.concatenate([cols, tie_cols])
    exact = np.clip(1.0 - np.einsum("ij,ij->i", block[rows], others[cols]), 0.0, 2.0)
    out = np.full(block.shape[0], np.inf)
    np.minimum.at(out, rows, exact)
    return out


def _pool_minima(vectors, pool, member, active, metric, unit_norm) -> np.ndarray:
    """For each active threshold, each row's distance to the nearest row of
    that threshold's pool (``member[i]`` marks its rows of the union)."""
    out = np.full((len(active), len(vectors)), np.inf)
    if pool.shape[0] == 0 or len(vectors) == 0:
        return out
    screened = metric == "cosine" and unit_norm
    vectors32 = vectors.astype(np.float32) if screened else None
    step = max(1, MAX_SCRATCH_ELEMENTS // len(vectors))
    for start in range(0, pool.shape[0], step):
        chunk = pool[start : start + step]
        # One product for every threshold: the union's rows are shared.
        if screened:
            shared = vectors32 @ chunk.astype(np.float32).T
        else:
            shared = pairwise_distances(vectors, chunk, metric, unit_norm)
        for k, i in enumerate(active):
            mask = member[i, start : start + len(chunk)]
            if not mask.any():
                continue
            everything = mask.all()
            part = shared if everything else shared[:, mask]
            if screened:
                d = _screened_min(vectors, vectors32, chunk if everything else chunk[mask], part)
            else:
                d = part.min(axis=1)
            np.minimum(out[k], d, out=out[k])
    return out


def resolve_block(d_pool, d_block, threshold: float, room: int):
    """The sequential rule inside one block, for one threshold.

    ``d_pool`` holds each row's distance to the rows kept before the block,
    ``d_block`` the distances between the block's rows (in visiting order).
    Returns the kept rows (block indices), how many rows were visited (the
    walk stops at the row that fills ``room``) and each visited row's
    recorded distance: to the nearest row kept before it.
    """
    passing = np.flatnonzero(d_pool >= threshold)
    d_pass = d_block[np.ix_(passing, passing)]
    d_run = d_pool[passing].copy()
    kept_local: list[int] = []
    stop = len(d_pool)
    a = 0
    while a < len(passing):
        kept_local.append(a)
        np.minimum(d_run[a + 1 :], d_pass[a, a + 1 :], out=d_run[a + 1 :])
        if len(kept_local) == room:
            stop = int(passing[a]) + 1
            break
        # Every row that the rows kept so far reject is skipped in one step.
        ahead = np.flatnonzero(d_run[a + 1 :] >= threshold)
        if not len(ahead):
            break
        a += 1 + int(ahead[0])
    kept = passing[np.asarray(kept_local, dtype=np.intp)]
    recorded = d_pool[:stop].copy()
    seen = passing[passing < stop]
    recorded[seen] = d_run[: len(seen)]
    rest = np.setdiff1d(np.arange(stop), seen, assume_unique=True)
    if len(kept) and len(rest):
        d_in = d_block[np.ix_(rest, kept)].copy()
        d_in[kept[None, :] >= rest[:, None]] = np.inf  # only rows kept before it
        recorded[rest] = np.minimum(recorded[rest], d_in.min(axis=1))
    return kept, stop, recorded


def walk_selected(source, ref, order, budget, thresholds, metric, unit_norm, block_size):
    """The paper's rule for every threshold at once; one :class:`ThresholdWalk` each."""
    walks = [ThresholdWalk(float(t)) for t in thresholds]
    n, n_ref = source.n, ref.shape[0]
    pool = np.empty((max(16, n_ref), source.dim))
    pool[:n_ref] = ref
    member = np.ones((len(walks), pool.shape[0]), dtype=bool)  # reference: every pool
    n_pool = n_ref
    pos = 0
    while pos < n and not all(w.done for w in walks):
        size = _block_size(walks, budget, block_size, pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        active = [i for i, w in enumerate(walks) if not w.done]
        d_pool = _pool_minima(vectors, pool[:n_pool], member, active, metric, unit_norm)
        d_block = pairwise_distances(vectors, vectors, metric, unit_norm)
        added: dict[int, int] = {}  # block row -> its place among the new pool rows
        kept_by: dict[int, np.ndarray] = {}
        for k, i in enumerate(active):
            walk = walks[i]
            kept, stop, recorded = resolve_block(
                d_pool[k], d_block, walk.threshold, budget - len(walk.kept)
            )
            blocked = np.ones(stop, dtype=bool)
            blocked[kept] = False
            walk.blocked_distances.append(recorded[blocked])
            walk.kept.extend(positions[kept].tolist())
            walk.n_visited += stop
            walk.done = len(walk.kept) >= budget or pos + stop >= n
            kept_by[i] = kept
            for r in kept.tolist():
                added.setdefault(r, len(added))
        if added:
            # A row kept by several thresholds joins the union once.
            rows = np.fromiter(added, dtype=np.intp, count=len(added))
            needed = n_pool + len(rows)
            if needed > pool.shape[0]:
                grow = max(needed, 2 * pool.shape[0])
                pool = np.concatenate([pool[:n_pool], np.empty((grow - n_pool, source.dim))])
                extra = np.zeros((len(walks), grow - n_pool), dtype=bool)
                member = np.concatenate([member[:, :n_pool], extra], axis=1)
            pool[n_pool:needed] = vectors[rows]
            member[:, n_pool:needed] = False
            for i, kept in kept_by.items():
                member[i, [n_pool + added[r] for r in kept.tolist()]] = True
            n_pool = needed
        pos += size
    return walks


def nearest_other_rows(
    source, ref, positions, vectors, metric, unit_norm, block_size
) -> np.ndarray:
    """Each row's distance to its nearest other input row or reference row."""
    nearest = min_distance_to(vectors, ref, metric, unit_norm)
    chunk = max(1, MAX_SCRATCH_ELEMENTS // max(1, block_size))
    for start, others in source.chunks(chunk):
        # A row is not its own neighbour (an exact duplicate elsewhere is).
        own = np.flatnonzero((positions >= start) & (positions < start + len(others)))
        d = min_distance_to(vectors, others, metric, unit_norm, (own, positions[own] - start))
        np.minimum(nearest, d, out=nearest)
    return nearest


def walk_dataset(source, ref, order, budget, thresholds, metric, unit_norm, block_size):
    """distilabel's rule for every threshold at once: the nearest-row distance
    of a row is computed once, when the first threshold reaches it."""
    walks = [ThresholdWalk(float(t)) for t in thresholds]
    n = source.n
    pos = 0
    while pos < n and not all(w.done for w in walks):
        size = _block_size(walks, budget, block_size, pos)
        positions = order[pos : pos + size]
        vectors = source.take(positions)
        nearest = nearest_other_rows(source, ref, positions, vectors, metric, unit_norm, size)
        for walk in walks:
            if walk.done:
                continue
            keep = np.flatnonzero(nearest >= walk.threshold)
            room = budget - len(walk.kept)
            stop = len(positions) if len(keep) < room else int(keep[room - 1]) + 1
            keep = keep[keep < stop]
            blocked = np.ones(stop, dtype=bool)
            blocked[keep] = False
            walk.blocked_distances.append(nearest[:stop][blocked])
            walk.kept.extend(positions[keep].tolist())
            walk.n_visited += stop
            walk.done = len(walk.kept) >= budget or pos + stop >= n
        pos += len(positions)
    return walks
