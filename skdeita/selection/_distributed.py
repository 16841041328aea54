"""DeitaSelector on a Dask DataFrame: the exact selection, out of core.

The greedy rule is sequential (a row's fate depends on every row kept before
it), so it runs on the client, on exactly the numbers the pandas path uses;
the cluster only reads, scores, sorts locally and ships rows:

1. **Scores pass** (one task per partition): validate the partition (scores,
   embeddings) and return its scores. The client gathers the scores as one
   float64 array (8 bytes a row) and sorts them once, stably, by decreasing
   score: ties keep input order, i.e. partition order then row order, which
   is exactly the order of the concatenated pandas frame. Rows without a
   score sort last and are left out, as in pandas.
2. **Stages** (one task per partition that has rows in the stage): the walk
   order is cut into stages of consecutive ranks. A stage is named by two
   keys ``(-score, partition, row)``; each partition recomputes its scores,
   sorts its own rows the same way, and keeps, as a compact float matrix in
   walk order, the rows whose key falls in the stage. These pieces stay on
   the workers. Stages grow (x4) from about twice the budget to
   ``stage-bytes`` of cluster memory.
3. **Blocks**: one task per block of consecutive ranks gathers the block's
   rows from the pieces, in walk order, and the client pulls the blocks one
   after another (two are prepared ahead).
4. **The walk** is the pandas path's own code (``_walk_selected`` from
   :mod:`skdeita.selection._greedy`) on a row source that serves these
   blocks: the same candidate blocks, the same float64 conversion and
   normalisation, the same distance calls in the same order, hence the same
   kept rows, in the same order, with bit-identical distances.

What the client holds: the scores while it sorts them (28 bytes a row at the
peak of the sort), then only the walk order (4 bytes a row: int32) and the
keys of the stage boundaries; the distances of the visited rows (8 bytes a
visited row, only with ``output="annotate"``; otherwise of the kept rows);
the kept rows (at most the budget) and the reference; one block of
``block-bytes`` plus the few rows of the previous one still needed. Never
the embedding matrix.

``neighbors="dataset"`` needs each visited row's nearest other row of the
whole input: for each candidate block the client sends the block's vectors
to every partition, each computes the exact minimum over its own candidate
rows (excluding the row itself) with the same distance function, and the
client takes the minimum of the partitions' minima. A minimum does not
depend on how the rows are grouped, and each pair's distance is computed by
the same code on the same float64 rows, so the result equals pandas'.

Settings (``dask.config``, all optional): ``skdeita.selection.block-bytes``
(default 2 MiB), ``skdeita.selection.stage-bytes`` (default 1 GiB),
``skdeita.selection.persist`` (``"auto"``: persist an input that runs a
skdeita model, so the model runs once, and the projected input of
``neighbors="dataset"``, which is read once per candidate block; True;
False).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import BudgetNotReachedWarning
from ..utils._dask import (
    check_dask_frame,
    check_vector_column,
    current_client,
    runs_skdeita_model,
)
from ..utils._progress import progress_bar
from ..utils._validation import (
    _cell_length,
    check_columns,
    check_dataframe,
    check_embedding_rows,
    first_labels,
)
from ..utils._warnings import warn_user
from ._distances import (
    MAX_SCRATCH_ELEMENTS,
    min_distance_to,
    needs_direction,
    resolve_metric,
    unit_rows,
)
from ._greedy import (
    _next_block,
    _reference_rows,
    _walk_selected,
    check_threshold,
    resolve_budget,
    score_order,
)
from ._scores import compute_deita_scores

_DEFAULTS = {"block-bytes": 2 * 2**20, "stage-bytes": 2**30, "persist": "auto"}
_LOOKAHEAD = 2  # blocks prepared on the cluster ahead of the walk


def _setting(name: str):
    import dask

    value = dask.config.get(f"skdeita.selection.{name}", _DEFAULTS[name])
    if name.endswith("bytes"):
        from dask.utils import parse_bytes

        value = parse_bytes(value)
    return value


# -- what the tasks need to know ---------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    """The columns and checks a partition task applies (small, picklable)."""

    embedding_col: str
    instruction_col: str | None
    response_col: str | None
    need_direction: bool

    @property
    def columns(self) -> list[str]:
        cols = [self.embedding_col, self.instruction_col, self.response_col]
        return list(dict.fromkeys(c for c in cols if c is not None))

    def scores(self, frame: pd.DataFrame):
        ic, rc = self.instruction_col, self.response_col
        return compute_deita_scores(frame[ic] if ic else None, frame[rc] if rc else None)


def _local_walk_order(scores: np.ndarray) -> np.ndarray:
    """A partition's scored rows in walk order (the global order restricted to it)."""
    order = score_order(scores)
    return order[: int(np.count_nonzero(~np.isnan(scores)))]


def _count_before(keys: np.ndarray, rows: np.ndarray, q: int, key) -> int:
    """How many of partition ``q``'s rows (walk order: ``keys`` = -score
    ascending, ties by row) come before ``key = (-score, partition, row)``."""
    if key is None:  # past the last row
        return len(keys)
    k_score, k_part, k_row = key
    left = int(np.searchsorted(keys, k_score, side="left"))
    right = int(np.searchsorted(keys, k_score, side="right"))
    if q < k_part:
        return right
    if q > k_part:
        return left
    return left + int(np.searchsorted(rows[left:right], k_row, side="left"))


def _check_length(frame, expected: int, q: int) -> None:
    if len(frame) != expected:
        raise RuntimeError(
            f"Partition {q} of the Dask DataFrame has {len(frame)} rows in this pass but "
            f"had {expected} in the first: its input is not deterministic. Persist it "
            "(ddf.persist()) or write it to Parquet before selecting."
        )


def _stack(cells, rows: np.ndarray) -> np.ndarray:
    """The vectors of ``rows`` as one matrix, in their own float dtype (the
    client converts to float64 exactly as pandas does)."""
    out = np.array([cells[i] for i in rows])
    return out if out.dtype.kind == "f" else out.astype(np.float64)


# -- partition tasks -------------------------------------------------------------


def _scores_task(frame: pd.DataFrame, spec: _Spec) -> dict:
    """Pass 1: check one partition and return its scores and what the client reports."""
    scores = spec.scores(frame)
    cells = check_embedding_rows(
        frame[spec.embedding_col],
        need_direction=spec.need_direction,
        name=f"Column {spec.embedding_col!r}",
        labels=frame.index,
    )
    missing = scores.missing
    return {
        "scores": scores.scores,
        "n_fallback": scores.n_fallback,
        "n_missing": int(missing.sum()),
        "missing_labels": first_labels(frame.index, missing),
        "dim": _cell_length(cells[0]) if len(cells) else None,
        "first_label": frame.index[0] if len(frame) else None,
    }


def _piece_task(frame, spec: _Spec, q: int, n_rows: int, lo, hi, expected: int) -> np.ndarray:
    """A stage's rows of partition ``q``, in walk order."""
    _check_length(frame, n_rows, q)
    scores = spec.scores(frame).scores
    rows = _local_walk_order(scores)
    keys = -scores[rows]
    a, b = _count_before(keys, rows, q, lo), _count_before(keys, rows, q, hi)
    if b - a != expected:
        raise RuntimeError(
            f"Partition {q} gave {b - a} rows for a stage that needs {expected}: its scores "
            "changed between passes. Persist the input before selecting."
        )
    return _stack(frame[spec.embedding_col].tolist(), rows[a:b])


def _block_task(parts: list, n_rows: int, dim: int) -> np.ndarray:
    """Gather a block of consecutive ranks from the stage's pieces."""
    dtype = np.result_type(*[piece.dtype for piece, _, _, _ in parts])
    out = np.empty((n_rows, dim), dtype=dtype)
    for piece, start, stop, dest in parts:
        out[dest] = piece[start:stop]
    return out


def _nearest_task(frame, spec: _Spec, q: int, n_rows: int, vectors, own, settings) -> np.ndarray:
    """Nearest distance from each of ``vectors`` to partition ``q``'s scored rows.

    ``own = (block_rows, local_rows)``: candidates that are rows of this
    partition, which are not their own neighbours. The rows are converted in
    chunks exactly as :class:`~skdeita.selection._greedy.RowSource` does.
    """
    _check_length(frame, n_rows, q)
    metric, unit_norm, normalize, chunk = settings
    scored = np.flatnonzero(~spec.scores(frame).missing)
    cells = frame[spec.embedding_col].tolist()
    block_rows, local_rows = own
    at = np.searchsorted(scored, local_rows)
    nearest = np.full(len(vectors), np.inf)
    for start in range(0, len(scored), chunk):
        rows = scored[start : start + chunk]
        others = np.array([cells[i] for i in rows], dtype=np.float64)
        if normalize:
            unit_rows(others)
        inside = (at >= start) & (at < start + len(rows))
        exclude = (block_rows[inside], at[inside] - start)
        d = min_distance_to(vectors, others, metric, unit_norm, exclude)
        np.minimum(nearest, d, out=nearest)
    return nearest


def _labels_task(frame, q: int, n_rows: int, rows: np.ndarray) -> pd.Index:
    _check_length(frame, n_rows, q)
    return frame.index[rows]


def _with_scores(frame: pd.DataFrame, spec: _Spec, distances) -> pd.DataFrame:
    # Scores are computed row by row: those of these rows equal those the
    # selection used, bit for bit.
    scores = spec.scores(frame)
    frame["deita_score"] = scores.scores
    frame["deita_score_computed_with"] = pd.Series(scores.computed_with, dtype=object).values
    frame["nearest_neighbor_distance"] = distances
    return frame


def _subset_task(frames: list, picks: list, spec: _Spec, distances, meta):
    """One output partition: kept rows of several input partitions, in selection order."""
    if not frames:
        return _with_scores(meta.iloc[:0].copy(), spec, distances)
    pieces, dest = [], []
    for frame, (q, n_rows, rows, at) in zip(frames, picks, strict=True):
        _check_length(frame, n_rows, q)
        pieces.append(frame.iloc[rows])
        dest.append(at)
    out = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
    out = out.iloc[np.argsort(np.concatenate(dest), kind="stable")].copy()
    return _with_scores(out, spec, distances)


def _annotate_task(frame, spec: _Spec, q: int, n_rows: int, visited, distances, kept, ranks):
    """One output partition: every row of an input partition, annotated."""
    if n_rows >= 0:
        _check_length(frame, n_rows, q)
    scores = spec.scores(frame)
    out = frame.copy()
    out["deita_score"] = scores.scores
    out["deita_score_computed_with"] = pd.Series(scores.computed_with, dtype=object).values
    dist = np.full(len(frame), np.nan)
    dist[visited] = distances
    out["nearest_neighbor_distance"] = dist
    rank = np.zeros(len(frame), dtype=np.int64)
    rank[kept] = ranks
    out["deita_selected"] = rank > 0
    out["deita_rank"] = pd.array([r if r else pd.NA for r in rank.tolist()], dtype="Int64")
    return out


# -- the client side ------------------------------------------------------------------


class _Layout:
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


class _Runner:
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


class _Blocks:
    """Candidate vectors in walk order: staged on the cluster, pulled in blocks."""

    def __init__(self, runner, parts, spec, layout, order, scores, dim, budget):
        self.runner, self.parts, self.spec, self.layout = runner, parts, spec, layout
        self.order, self.dim = order, dim
        row_bytes = 4 * max(dim, 1)  # float32 embeddings; float64 ones take twice this
        self.block_rows = max(1, _setting("block-bytes") // row_bytes)
        # Stages: from about twice the budget, x4 each time, up to stage-bytes.
        self.n = len(order)
        max_stage = max(self.block_rows, _setting("stage-bytes") // row_bytes)
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
            delayed(_piece_task, pure=False)(
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
        future = self.runner.submit(_block_task, parts, end - start, self.dim)
        self.pending.append((start, future))
        self.submitted = end


def _rank_of(order: np.ndarray, positions: np.ndarray, hint: int) -> int:
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


class _StreamedRows:
    """A :class:`~skdeita.selection._greedy.RowSource` over the streamed blocks.

    ``take`` returns exactly what ``RowSource.take`` returns for the same
    rows (float64, then unit rows when normalising, on an array of the same
    shape), so the walk computes bit-identical distances.
    """

    def __init__(self, blocks: _Blocks | None, order, dim: int, normalize: bool):
        self.blocks, self.order, self.dim, self.normalize = blocks, order, dim, normalize
        self.n = len(order)
        self.segments: deque = deque()  # (first rank, rows), consecutive
        self.cursor = 0

    def take(self, positions: np.ndarray) -> np.ndarray:
        k = len(positions)
        if k == 0:
            return np.empty((0, self.dim))
        p = _rank_of(self.order, positions, self.cursor)
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


class _Distances:
    """The walk's ``distances[positions] = values``, stored by rank (visited rows
    are a prefix of the order), never as an n-long array.

    With ``kept_only=threshold``, only the values >= threshold are stored: in
    both walks a visited row is kept exactly when its recorded distance
    reaches the threshold, so these are the kept rows' distances, in
    selection order (checked against the kept rows after the walk).
    """

    def __init__(self, order: np.ndarray, kept_only: float | None = None):
        self.order = order
        self.kept_only = kept_only
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def __setitem__(self, positions, values) -> None:
        if not len(positions):
            return
        p = _rank_of(self.order, positions, self.n)
        if p != self.n:
            raise RuntimeError("the walk recorded distances out of order")
        values = np.array(values, dtype=np.float64)
        self.chunks.append(values if self.kept_only is None else values[values >= self.kept_only])
        self.n += len(positions)

    def by_rank(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.empty(0)


@dataclass
class _Plan:
    """A finished selection over a Dask DataFrame, and what its output needs."""

    X: object  # the input (persisted when that was needed)
    x_parts: list
    w_parts: list
    spec: _Spec
    layout: _Layout
    order: np.ndarray  # walk order of the scored rows
    selected: np.ndarray  # global positions, selection order
    distances: np.ndarray  # by rank: of the visited rows, or of the kept rows only
    n_visited: int
    budget: int
    budget_reached: bool


# -- the selection -----------------------------------------------------------------------


def _check_meta(selector, X):
    check_dask_frame(X, type(selector).__name__)
    meta = check_dataframe(X._meta, type(selector).__name__)
    check_threshold(selector.diversity_threshold)
    if selector.instruction_score_col is None and selector.response_score_col is None:
        raise ValueError(
            "At least one of instruction_score_col and response_score_col must be set."
        )
    columns = selector._input_columns()
    check_columns(meta, columns)
    check_vector_column(meta, selector.embedding_col, "Column")
    return meta


def _partitions(X, spec: _Spec, persist, dataset: bool):
    """The input's partitions, whole and projected to the columns the passes
    read, as aligned lists (delayed objects, or futures when persisted: the
    tasks that use them hold them, so the lazy output keeps them alive)."""
    from dask import delayed

    runner = _Runner()
    x_parts = X.to_delayed()
    if persist is True or (persist == "auto" and runs_skdeita_model(X)):
        # Computing X runs a model: compute it once, keep it on the cluster.
        x_parts = runner.keep(x_parts)
        return x_parts, x_parts
    w_parts = X[spec.columns].to_delayed()
    if len(w_parts) != len(x_parts):
        # The optimizer merged partitions of the narrow read (dask-expr does this
        # when few columns are read): project inside the tasks instead, so that
        # every pass sees the same partitions.
        w_parts = [delayed(operator.getitem)(p, spec.columns) for p in x_parts]
    if persist == "auto" and dataset:
        w_parts = runner.keep(w_parts)  # read once per candidate block
    return x_parts, w_parts


def _gather_scores(selector, runner, w_parts, spec):
    from dask import delayed

    infos = runner.compute([delayed(_scores_task)(p, spec) for p in w_parts])
    layout = _Layout([len(i["scores"]) for i in infos])
    n_missing = sum(i["n_missing"] for i in infos)
    cols = [c for c in (selector.instruction_score_col, selector.response_score_col) if c]
    if n_missing:
        labels = [label for i in infos for label in i["missing_labels"]][:10]
        if selector.missing_scores == "raise":
            raise ValueError(
                f"Rows {labels} have no score in {cols} ({n_missing} rows in all). Fill "
                "them, or pass missing_scores='drop' to leave them out of the selection."
            )
        warn_user(
            f"{n_missing} rows have no score in {cols} and are left out "
            f"of the selection (first: {labels}).",
            UserWarning,
        )
    n_fallback = sum(i["n_fallback"] for i in infos)
    if n_fallback:
        warn_user(
            f"{n_fallback} rows have only one of the two scores; their "
            "deita_score is that score alone (see deita_score_computed_with).",
            UserWarning,
        )
    dims = [(i["dim"], i["first_label"]) for i in infos if i["dim"] is not None]
    if len({d for d, _ in dims}) > 1:
        (d0, label0), other = dims[0], next(x for x in dims if x[0] != dims[0][0])
        raise ValueError(
            f"Column {spec.embedding_col!r} has vectors of different lengths (ragged): row "
            f"{label0!r} has {d0}, row {other[1]!r} (another partition) has {other[0]}."
        )
    scores = np.concatenate([i["scores"] for i in infos]) if infos else np.empty(0)
    return layout, scores, (dims[0][0] if dims else 0)


def select(selector, X) -> _Plan:
    """Run the exact selection on a Dask DataFrame (everything but the output)."""
    _check_meta(selector, X)
    metric = resolve_metric(selector.distance_metric)
    direction = needs_direction(metric, selector.normalize_embeddings)
    reference = selector._reference_rows(direction)
    spec = _Spec(
        selector.embedding_col,
        selector.instruction_score_col,
        selector.response_score_col,
        direction,
    )
    dataset = selector.neighbors == "dataset"
    x_parts, w_parts = _partitions(X, spec, _setting("persist"), dataset)
    runner = _Runner()
    layout, scores, dim = _gather_scores(selector, runner, w_parts, spec)
    budget = resolve_budget(selector.data_budget, layout.n)
    order = score_order(scores)[: int(np.count_nonzero(~np.isnan(scores)))]
    if layout.n < 2**31:
        order = order.astype(np.int32)  # 4 bytes a row on the client
    blocks = _Blocks(runner, w_parts, spec, layout, order, scores, dim, budget)
    del scores  # the outputs recompute their rows' scores where the rows are
    source = _StreamedRows(blocks, order, dim, bool(selector.normalize_embeddings))
    ref = _reference_rows(reference, source, direction, False)
    threshold = float(selector.diversity_threshold)
    # The annotated output shows every visited row's distance; otherwise only
    # the kept rows' are needed (8 bytes a visited row saved).
    distances = _Distances(order, None if selector.output == "annotate" else threshold)
    unit_norm = bool(selector.normalize_embeddings)
    block = int(selector.block_size)
    with progress_bar(
        total=len(order), desc="DEITA selection", enabled=selector.show_progress_bar
    ) as bar:
        if dataset:
            chunk = max(1, MAX_SCRATCH_ELEMENTS // max(1, block))
            settings = (metric, unit_norm, unit_norm, chunk)
            nearest = _ClusterNearest(runner, w_parts, spec, layout, settings)
            selected, n_visited = _walk_dataset_cluster(
                source, ref, order, budget, threshold, metric, unit_norm, block, distances,
                bar, nearest,
            )  # fmt: skip
        else:
            selected, n_visited = _walk_selected(
                source, ref, order, budget, threshold, metric, unit_norm, block, distances, bar
            )
    blocks.close()
    selected = np.asarray(selected, dtype=np.int64)
    stored = sum(len(c) for c in distances.chunks)
    if distances.kept_only is not None and stored != len(selected):
        raise RuntimeError(f"kept {len(selected)} rows but recorded {stored} distances")
    if len(selected) < budget and selector.data_budget is not None:
        warn_user(
            f"DeitaSelector kept {len(selected)} of {layout.n} rows, fewer than "
            f"the budget of {budget}: only these passed "
            f"diversity_threshold={selector.diversity_threshold}. Lower the threshold "
            "or the budget to get more.",
            BudgetNotReachedWarning,
        )
    return _Plan(
        X, x_parts, w_parts, spec, layout, order, selected, distances.by_rank(),
        n_visited, budget, len(selected) >= budget,
    )  # fmt: skip


class _ClusterNearest:
    """Nearest scored row of the whole input, per candidate, over the cluster."""

    def __init__(self, runner, w_parts, spec, layout, settings):
        self.runner, self.parts, self.spec, self.layout = runner, w_parts, spec, layout
        self.settings = settings

    def __call__(self, vectors: np.ndarray, positions: np.ndarray) -> np.ndarray:
        from dask import delayed

        shared = delayed(vectors, pure=True)
        own = {q: (at, rows) for q, rows, at in self.layout.groups(positions)}
        empty = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64))
        tasks = [
            delayed(_nearest_task, pure=False)(
                self.parts[q], self.spec, q, int(self.layout.lengths[q]), shared,
                own.get(q, empty), self.settings,
            )
            for q in np.flatnonzero(self.layout.lengths).tolist()
        ]  # fmt: skip
        nearest = np.full(len(vectors), np.inf)
        for d in self.runner.compute(tasks):
            np.minimum(nearest, d, out=nearest)
        return nearest


def _walk_dataset_cluster(
    source, ref, order, budget, thr, metric, unit_norm, block, distances, bar, nearest_others
):
    """``_walk_dataset`` with its scan over all rows done by the partitions."""
    n = source.n
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


# -- outputs ---------------------------------------------------------------------------


def kept_labels(plan: _Plan) -> pd.Index:
    """Index labels of the kept rows, in selection order (one small task per partition)."""
    from dask import delayed

    groups = list(plan.layout.groups(plan.selected))
    tasks = [
        delayed(_labels_task)(plan.w_parts[q], q, int(plan.layout.lengths[q]), rows)
        for q, rows, _ in groups
    ]
    pieces = _Runner().compute(tasks)
    if not pieces:
        return plan.X._meta.index[:0]
    labels = pieces[0].append(pieces[1:]) if len(pieces) > 1 else pieces[0]
    where = np.concatenate([at for _, _, at in groups])
    return labels[np.argsort(where, kind="stable")]


def _kept_distances(plan: _Plan) -> np.ndarray:
    """The kept rows' distances, in selection order (= rank order)."""
    if len(plan.distances) == plan.n_visited:
        return plan.distances[np.isin(plan.order[: plan.n_visited], plan.selected)]
    return plan.distances


def subset_output(plan: _Plan):
    """The kept rows in selection order, as a lazy Dask DataFrame."""
    from dask import delayed

    meta = _subset_task([], [], plan.spec, np.empty(0), plan.X._meta)
    kept, layout = plan.selected, plan.layout
    per_part = max(1, math.ceil(layout.n / max(1, len(layout.lengths))))
    distances = _kept_distances(plan)
    tasks = []
    for s in range(0, max(1, len(kept)), per_part):
        chunk = kept[s : s + per_part]
        groups = list(layout.groups(chunk))
        frames = [plan.x_parts[q] for q, _, _ in groups]
        picks = [(q, int(layout.lengths[q]), rows, at) for q, rows, at in groups]
        tasks.append(
            delayed(_subset_task, pure=False)(
                frames, picks, plan.spec, distances[s : s + per_part], meta
            )
        )
    return _from_delayed(tasks, meta, None)


def annotate_output(plan: _Plan):
    """Every row in input order, annotated, as a lazy Dask DataFrame (same partitions)."""
    from dask import delayed

    empty = np.empty(0, dtype=np.int64)
    meta = _annotate_task(plan.X._meta, plan.spec, 0, -1, empty, empty, empty, empty)
    layout = plan.layout
    visited = {q: (rows, at) for q, rows, at in layout.groups(plan.order[: plan.n_visited])}
    kept = {q: (rows, at) for q, rows, at in layout.groups(plan.selected)}
    tasks = []
    for q, frame in enumerate(plan.x_parts):
        v_rows, v_at = visited.get(q, (empty, empty))
        k_rows, k_at = kept.get(q, (empty, empty))
        tasks.append(
            delayed(_annotate_task, pure=False)(
                frame, plan.spec, q, int(layout.lengths[q]), v_rows, plan.distances[v_at],
                k_rows, k_at + 1,
            )
        )  # fmt: skip
    return _from_delayed(tasks, meta, plan.X.divisions)


def _from_delayed(tasks: list, meta: pd.DataFrame, divisions):
    """A Dask DataFrame of our partitions, as they are: Dask's string conversion
    would turn the vector and list columns into their printed text."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(tasks, meta=meta, divisions=divisions, verify_meta=False)


# -- what DeitaSelector calls ------------------------------------------------------------


def _record(selector, plan: _Plan) -> None:
    selector._record_columns(plan.X._meta)
    selector.selected_index_ = kept_labels(plan)
    selector.n_selected_ = len(plan.selected)
    selector.budget_ = plan.budget
    selector.budget_reached_ = plan.budget_reached or selector.data_budget is None
    selector.n_visited_ = plan.n_visited


def _output(selector, plan: _Plan):
    return subset_output(plan) if selector.output == "subset" else annotate_output(plan)


def fit(selector, X):
    """``DeitaSelector.fit`` on a Dask DataFrame."""
    _record(selector, select(selector, X))
    return selector


def fit_transform(selector, X):
    """``DeitaSelector.fit_transform`` on a Dask DataFrame: one selection."""
    plan = select(selector, X)
    _record(selector, plan)
    return _output(selector, plan)


def transform(selector, X):
    """``DeitaSelector.transform`` on a Dask DataFrame."""
    return _output(selector, select(selector, X))
