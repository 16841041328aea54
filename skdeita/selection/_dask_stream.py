"""The client side of the Dask selection (see :mod:`._distributed`).

Where rows live (:class:`Layout`), how tasks run (:class:`Runner`: futures
on a cluster, plain values without one), and the candidate rows streamed to
the client in walk order (:class:`Blocks`, served to the walk by
:class:`StreamedRows`).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..utils._dask import current_client
from ._dask_tasks import block_task, piece_task
from ._distances import unit_rows
from ._walk import rank_of

_DEFAULTS = {"block-bytes": 2 * 2**20, "stage-bytes": 2**30, "persist": "auto"}
_LOOKAHEAD = 2  # blocks prepared on the cluster ahead of the walk


def setting(name: str):
    import dask

    value = dask.config.get(f"skdeita.selection.{name}", _DEFAULTS[name])
    if name.endswith("bytes"):
        from dask.utils import parse_bytes

        value = parse_bytes(value)
    return value


# -- the client side ------------------------------------------------------------------


class Layout:
    """Where each global row position lives: partition and local row."""

    def __init__(self, lengths: list[int]):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        self.n = int(self.ends[-1]) if len(self.ends) else 0

    def partition_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ends, positions, side="right")

    def groups(self, positions: np.ndarray):
        """``(q, local rows, indices into positions)`` for each partition, in order."""
        part = self.partition_of(positions)
        by = np.argsort(part, kind="stable")
        counts = np.bincount(part, minlength=len(self.lengths))
        start = 0
        for q in np.flatnonzero(counts):
            at = by[start : start + counts[q]]
            start += counts[q]
            yield int(q), positions[at] - self.starts[q], at


class Runner:
    """Runs partition tasks: futures kept on a distributed cluster, or local values."""

    def __init__(self):
        self.client = current_client()

    def compute(self, tasks: list) -> list:
        """Compute and bring back (small results)."""
        import dask

        return list(dask.compute(*tasks)) if tasks else []

    def keep(self, tasks: list) -> list:
        """Compute and leave the results where they are (futures on a cluster)."""
        if self.client is None:
            return self.compute(tasks)
        return self.client.compute(tasks)

    def submit(self, func, *args):
        if self.client is None:
            return _Done(func(*args))
        return self.client.submit(func, *args, pure=False)


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class Blocks:
    """Candidate vectors in walk order: staged on the cluster, pulled in blocks."""

    def __init__(self, runner, parts, spec, layout, order, scores, dim, budget):
        self.runner, self.parts, self.spec, self.layout = runner, parts, spec, layout
        self.order, self.dim = order, dim
        row_bytes = 4 * max(dim, 1)  # float32 embeddings; float64 ones take twice this
        self.block_rows = max(1, setting("block-bytes") // row_bytes)
        # Stages: from about twice the budget, x4 each time, up to stage-bytes.
        self.n = len(order)
        max_stage = max(self.block_rows, setting("stage-bytes") // row_bytes)
        size, start, self.bounds = min(max_stage, max(self.block_rows, 2 * budget)), 0, []
        while start < self.n:
            end = min(self.n, start + size)
            # A stage is named by the keys of its first row and of the next
            # stage's first row; computed now, so the scores can be dropped.
            self.bounds.append((start, end, self._key(start, scores), self._key(end, scores)))
            start, size = end, min(max_stage, 4 * size)
        self.bounds.reverse()
        self.submitted = 0  # ranks [0, submitted) have a block task
        self.stage_end = 0
        self.pieces: dict = {}
        self.taken = np.zeros(len(layout.lengths), dtype=np.int64)
        self.pending: deque = deque()
        self.n_stages = 0

    def next(self) -> tuple[int, np.ndarray]:
        """The next block: ``(first rank, rows)``."""
        while len(self.pending) < _LOOKAHEAD and self.submitted < self.n:
            self._submit()
        start, future = self.pending.popleft()
        return start, future.result()

    def close(self) -> None:
        self.pending.clear()
        self.pieces = {}

    def _key(self, rank: int, scores: np.ndarray):
        """``(-score, partition, row)`` of the row at ``rank`` (None: past the end)."""
        if rank >= self.n:
            return None
        g = int(self.order[rank])
        q = int(self.layout.partition_of(g))
        return (float(-scores[g]), q, g - int(self.layout.starts[q]))

    def _new_stage(self) -> None:
        from dask import delayed

        start, end, lo, hi = self.bounds.pop()
        assert start == self.stage_end
        counts = np.zeros(len(self.layout.lengths), dtype=np.int64)
        for s in range(start, end, 1 << 16):  # bounded scratch
            part = self.layout.partition_of(self.order[s : min(end, s + (1 << 16))])
            counts += np.bincount(part, minlength=len(counts))
        nonzero = np.flatnonzero(counts)
        lengths = self.layout.lengths
        tasks = [
            delayed(piece_task, pure=False)(
                self.parts[q], self.spec, int(q), int(lengths[q]), lo, hi, int(counts[q])
            )
            for q in nonzero
        ]
        self.pieces = dict(zip(nonzero.tolist(), self.runner.keep(tasks), strict=True))
        self.taken[:] = 0
        self.stage_end = end
        self.n_stages += 1

    def _submit(self) -> None:
        if self.submitted == self.stage_end:
            self._new_stage()
        start = self.submitted
        end = min(self.stage_end, start + self.block_rows)
        parts = []
        for q, _, at in self.layout.groups(self.order[start:end]):
            a = int(self.taken[q])
            self.taken[q] += len(at)
            parts.append((self.pieces[q], a, a + len(at), at))
        future = self.runner.submit(block_task, parts, end - start, self.dim)
        self.pending.append((start, future))
        self.submitted = end


class StreamedRows:
    """A :class:`~skdeita.selection._greedy.RowSource` over the streamed blocks.

    ``take`` returns exactly what ``RowSource.take`` returns for the same
    rows (float64, then unit rows when normalising, on an array of the same
    shape), so the walk computes bit-identical distances.
    """

    def __init__(self, blocks: Blocks | None, order, dim: int, normalize: bool):
        self.blocks, self.order, self.dim, self.normalize = blocks, order, dim, normalize
        self.n = len(order)
        self.segments: deque = deque()  # (first rank, rows), consecutive
        self.cursor = 0

    def take(self, positions: np.ndarray) -> np.ndarray:
        k = len(positions)
        if k == 0:
            return np.empty((0, self.dim))
        p = rank_of(self.order, positions, self.cursor)
        if p < self.cursor:
            raise RuntimeError("the walk went back to rows already released")
        self.cursor = p
        while self.segments and self.segments[0][0] + len(self.segments[0][1]) <= p:
            self.segments.popleft()
        end = p + k
        while not self.segments or self.segments[-1][0] + len(self.segments[-1][1]) < end:
            if self.segments:  # keep a copy of the (< k) rows still needed, free the blocks
                left = [rows[max(0, p - first) :] for first, rows in self.segments]
                self.segments = deque([(p, np.concatenate(left))])
            self.segments.append(self.blocks.next())
        out = np.empty((k, self.dim), dtype=np.float64)
        for first, rows in self.segments:
            a, b = max(p, first), min(end, first + len(rows))
            if a < b:
                out[a - p : b - p] = rows[a - first : b - first]
        if self.normalize:
            unit_rows(out)
        return out
