"""The compute core every model-backed step shares: each distinct input once,
the finished ones from the cache, the rest in batches that are checkpointed
as they finish.

A step turns its rows into *units* (a prompt, a text to embed, a pair of
candidates), each identified by a 16-byte key of everything that goes into
the model for it. :func:`compute_units` then

1. computes each distinct key once per call and gives every copy the same
   value: a model's float noise depends on a batch's shape, so two identical
   rows in different batches could otherwise get values that differ in the
   last bits, and an exact tie in the selection would be broken by noise;
2. takes what the step's result store (``cache=``) already holds;
3. runs the step's batches over the rest, writing each finished batch to the
   store before the next one starts, so a crash or a kill loses at most the
   batch in flight; a failure in the step's code still leaves every finished
   batch written;
4. counts only computed units on the progress bar.

Keys listed in ``isolate`` are computed each in a batch of its own: on Dask,
a key that occurs in several partitions is computed by each of them, and
only a batch of one, whose shape depends on nothing else, gives every copy
the same bits (see :mod:`skdeita.utils._dask`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ._disk_cache import unit_keys
from ._progress import progress_bar

__all__ = ["UnitBatch", "UnitResults", "batch_plan", "compute_units", "distinct", "unit_keys"]


def distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: the position of each distinct key's first
    occurrence (in input order), and for every unit the index of its key in
    ``first``."""
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    pairs = keys.view(np.uint64).reshape(n, 2)
    order = np.lexsort((np.arange(n), pairs[:, 1], pairs[:, 0]))
    sorted_pairs = pairs[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (sorted_pairs[1:] != sorted_pairs[:-1]).any(axis=1)
    group = np.cumsum(starts) - 1
    first_sorted = order[starts]  # first occurrence of each group (stable lexsort)
    by_position = np.argsort(first_sorted, kind="stable")
    rank = np.empty(len(first_sorted), dtype=np.intp)
    rank[by_position] = np.arange(len(first_sorted))
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = rank[group]
    return first_sorted[by_position], inverse


@dataclass
class UnitBatch:
    """What a step's computation yields for one batch of units."""

    positions: np.ndarray  # unit positions computed in this batch
    values: np.ndarray  # (len(positions), width); rows of failed units are ignored
    errors: dict = field(default_factory=dict)  # unit position -> exception


@dataclass
class UnitResults:
    """Every unit's value, with what failed and what came from the cache."""

    values: np.ndarray  # (n_units, width); NaN where the unit failed
    errors: dict  # unit position -> exception (every copy of a failed key)
    from_cache: np.ndarray  # bool per unit
    n_computed: int  # distinct keys computed in this call
    extra: dict = field(default_factory=dict)  # what the step's computation reported
    inverse: np.ndarray | None = None  # unit -> its distinct key
    first: np.ndarray | None = None  # distinct key -> its first unit

    def copies(self, positions) -> np.ndarray:
        """Boolean mask of the units that share a key with the units at ``positions``."""
        mask = np.zeros(len(self.from_cache), dtype=bool)
        if len(positions) and self.inverse is not None:
            hit = np.zeros(len(self.first), dtype=bool)
            hit[self.inverse[np.asarray(positions, dtype=np.intp)]] = True
            mask = hit[self.inverse]
        return mask


ComputeFn = Callable[[np.ndarray, np.ndarray], Iterator[UnitBatch]]


def compute_units(
    keys: np.ndarray,
    compute: ComputeFn,
    *,
    width: int,
    dtype,
    store=None,
    isolate: np.ndarray | None = None,
    progress: bool | None = None,
    desc: str = "",
) -> UnitResults:
    """Compute the units' values, each distinct key once (see the module doc).

    ``compute(positions, isolated)`` receives the unit positions to compute
    (first occurrences, in input order) and a boolean mask of those to be
    computed alone, and yields :class:`UnitBatch` es covering them.
    ``store`` is a result store (``lookup``, ``writer``) or None.
    """
    n = len(keys)
    first, inverse = distinct(keys)
    values = np.full((len(first), width), np.nan, dtype=dtype)
    found = np.zeros(len(first), dtype=bool)
    if store is not None and len(first):
        found, cached = store.lookup(keys[first])
        values[found] = cached[found]
    todo = np.flatnonzero(~found)
    positions = first[todo]
    isolated = (
        np.isin(keys[positions], isolate)
        if isolate is not None and len(isolate)
        else np.zeros(len(positions), dtype=bool)
    )
    slot = {int(p): int(t) for p, t in zip(positions, todo, strict=True)}
    failed: dict[int, BaseException] = {}
    extra: dict = {}
    writer = store.writer() if store is not None and len(todo) else None
    try:
        with progress_bar(len(todo), desc, progress) as bar:
            for batch in _batches(compute, positions, isolated, extra):
                where = np.fromiter((slot[int(p)] for p in batch.positions), np.intp)
                values[where] = batch.values
                bad = {slot[int(p)]: exc for p, exc in batch.errors.items()}
                failed.update(bad)
                if writer is not None:
                    ok = np.array([k not in bad for k in where.tolist()], dtype=bool)
                    # Only successes are stored: a failure is retried next time.
                    writer.add(keys[first[where[ok]]], values[where[ok]])
                bar.update(len(where))
    finally:
        if writer is not None:
            writer.close()
    values[list(failed)] = np.nan
    errors = {}
    if failed:
        for unit in np.flatnonzero(np.isin(inverse, list(failed))).tolist():
            errors[unit] = failed[int(inverse[unit])]
    return UnitResults(
        values=values[inverse] if n else values,
        errors=errors,
        from_cache=found[inverse] if n else np.zeros(0, dtype=bool),
        n_computed=len(todo),
        extra=extra,
        inverse=inverse,
        first=first,
    )


def _batches(compute: ComputeFn, positions, isolated, extra) -> Iterator[UnitBatch]:
    """The step's batches; a generator's return value lands in ``extra``."""
    if not len(positions):
        return
    stream = compute(positions, isolated)
    while True:
        try:
            yield next(stream)
        except StopIteration as stop:
            if isinstance(stop.value, dict):
                extra.update(stop.value)
            return


def batch_plan(isolated: np.ndarray, make_batches) -> Iterator[np.ndarray]:
    """Batches of indices into ``isolated``: the step's own batching over the
    units not isolated (``make_batches(indices)`` yields arrays of positions
    into ``indices``), then one batch per isolated unit."""
    shared = np.flatnonzero(~isolated)
    if len(shared):
        yield from (shared[b] for b in make_batches(shared))
    for i in np.flatnonzero(isolated):
        yield np.array([i], dtype=np.intp)
