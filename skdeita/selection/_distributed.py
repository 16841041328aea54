"""The rows of a Dask DataFrame, for DeitaSelector's one selection sequence.

:class:`ClusterRows` is the Dask row supplier of
:class:`~skdeita.DeitaSelector` (the pandas one is
:class:`~skdeita.selection._rows.InMemoryRows`): the selector checks, scores,
walks, records and builds its output exactly as on pandas, and this module
only supplies rows and runs tasks. The greedy rule is sequential (a row's
fate depends on every row kept before it), so the walk runs on the client,
on exactly the numbers the pandas path uses; the cluster only reads, scores,
sorts locally and ships rows:

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
4. **The walk** is the pandas path's own code (:mod:`skdeita.selection._walk`)
   on a row source that serves these blocks: the same candidate blocks, the
   same float64 conversion and normalisation, the same distance calls in the
   same order, hence the same kept rows, in the same order, with
   bit-identical distances.

What the client holds: the scores while it sorts them (28 bytes a row at the
peak of the sort), then only the walk order (4 bytes a row: int32) and the
keys of the stage boundaries; the distances of the visited rows (8 bytes a
visited row, only with ``output="annotate"``; otherwise of the kept rows);
the kept rows (at most the budget) and the reference; one block of
``block-bytes`` plus the few rows of the previous one still needed. Never
the embedding matrix.

``neighbors="dataset"`` needs each visited row's nearest other row of the
whole input: for each candidate block the client sends the block's vectors
to every partition, each computes the exact minimum over its own scored
rows (excluding the row itself) with the pandas path's function
(:func:`~skdeita.selection._walk.nearest_other_rows`), and the client takes
the minimum of the partitions' minima. A minimum does not
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

import numpy as np
import pandas as pd

from ..utils._dask import check_dask_frame, check_vector_column, runs_skdeita_model
from ..utils._validation import check_dataframe
from ._dask_stream import Blocks, Layout, Runner, StreamedRows, setting
from ._dask_tasks import (
    annotate_task,
    labels_task,
    nearest_task,
    scores_task,
    subset_task,
)
from ._greedy import walk_order
from ._output import Selection
from ._rows import ScoreReport, Spec
from ._walk import scratch_rows


class ClusterRows:
    """The rows of a Dask DataFrame: scored by a pass over the partitions, streamed
    to the walk in blocks; the same methods as
    :class:`~skdeita.selection._rows.InMemoryRows`."""

    def __init__(self, X, spec: Spec, estimator: str, *, dataset: bool):
        check_dask_frame(X, estimator)
        self.frame = check_dataframe(X._meta, estimator)
        check_vector_column(self.frame, spec.embedding_col, "Column")
        self.X, self.spec, self.dataset = X, spec, dataset
        self.runner = Runner()
        self.blocks = None

    def score(self) -> ScoreReport:
        """The scores pass: one task per partition checks it and returns its scores."""
        from dask import delayed

        self.x_parts, self.w_parts = _partitions(
            self.X, self.spec, setting("persist"), self.dataset
        )
        reports = self.runner.compute([delayed(scores_task)(p, self.spec) for p in self.w_parts])
        self.layout = Layout([len(r.scores) for r in reports])
        self.n = self.layout.n
        self._report = ScoreReport.combine(reports, self.spec.embedding_col)
        return self._report

    def walk_order(self) -> np.ndarray:
        order = walk_order(self._report.scores)
        return order.astype(np.int32) if self.n < 2**31 else order  # 4 bytes a row

    def source(self, order: np.ndarray, normalize: bool, budget: int) -> StreamedRows:
        """The candidate rows, staged on the cluster and streamed in walk order."""
        report = self._report
        self.blocks = Blocks(
            self.runner, self.w_parts, self.spec, self.layout, order, report.scores,
            report.dim, budget,
        )  # fmt: skip
        report.scores = None  # the outputs recompute their rows' scores where the rows are
        return StreamedRows(self.blocks, order, report.dim, normalize)

    def nearest_others(self, metric, unit_norm: bool, block_size: int):
        """For ``neighbors="dataset"``: every partition's nearest row, reduced."""
        settings = (metric, unit_norm, scratch_rows(block_size))
        return _ClusterNearest(self.runner, self.w_parts, self.spec, self.layout, settings)

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.close()

    def labels(self, positions: np.ndarray) -> pd.Index:
        """Index labels of rows (one small task per partition), in the order given."""
        from dask import delayed

        groups = list(self.layout.groups(positions))
        tasks = [
            delayed(labels_task)(self.w_parts[q], q, int(self.layout.lengths[q]), rows)
            for q, rows, _ in groups
        ]
        pieces = self.runner.compute(tasks)
        if not pieces:
            return self.frame.index[:0]
        labels = pieces[0].append(pieces[1:]) if len(pieces) > 1 else pieces[0]
        where = np.concatenate([at for _, _, at in groups])
        return labels[np.argsort(where, kind="stable")]

    def output(self, selection: Selection, kind: str):
        """The output as a lazy Dask DataFrame, built partition by partition."""
        if kind == "subset":
            return self._subset(selection)
        return self._annotate(selection)

    def _subset(self, selection: Selection):
        """The kept rows in selection order."""
        from dask import delayed

        meta = subset_task([], [], self.spec, np.empty(0), self.frame)
        kept, layout = selection.selected, self.layout
        per_part = max(1, math.ceil(layout.n / max(1, len(layout.lengths))))
        distances = selection.kept_distances()
        tasks = []
        for s in range(0, max(1, len(kept)), per_part):
            groups = list(layout.groups(kept[s : s + per_part]))
            frames = [self.x_parts[q] for q, _, _ in groups]
            picks = [(q, int(layout.lengths[q]), rows, at) for q, rows, at in groups]
            tasks.append(
                delayed(subset_task, pure=False)(
                    frames, picks, self.spec, distances[s : s + per_part], meta
                )
            )
        return _from_delayed(tasks, meta, None)

    def _annotate(self, selection: Selection):
        """Every row in input order (the input's partitions)."""
        from dask import delayed

        none = (np.empty(0, dtype=np.int64),) * 2
        layout = self.layout
        visited = {q: (rows, at) for q, rows, at in layout.groups(selection.visited())}
        kept = {q: (rows, at) for q, rows, at in layout.groups(selection.selected)}
        marks = [
            selection.marks(visited.get(q, none) + kept.get(q, none))
            for q in range(len(layout.lengths))
        ]
        meta = annotate_task(self.frame, self.spec, 0, -1, _no_rows(marks[0]))
        tasks = [
            delayed(annotate_task, pure=False)(frame, self.spec, q, int(layout.lengths[q]), mark)
            for q, (frame, mark) in enumerate(zip(self.x_parts, marks, strict=True))
        ]
        return _from_delayed(tasks, meta, self.X.divisions)


def _no_rows(marks):
    """``marks`` for an empty frame (the output's meta), with the same columns."""
    empty = np.empty(0, dtype=np.int64)
    none = np.empty(0, dtype=object)
    return type(marks)(
        empty, empty, np.empty(0), none, None if marks.blocked_by_reference is None else none,
        empty, empty,
    )  # fmt: skip


def _partitions(X, spec: Spec, persist, dataset: bool):
    """The input's partitions, whole and projected to the columns the passes
    read, as aligned lists (delayed objects, or futures when persisted: the
    tasks that use them hold them, so the lazy output keeps them alive)."""
    from dask import delayed

    runner = Runner()
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


class _ClusterNearest:
    """Nearest scored row of the whole input, per candidate, over the cluster."""

    def __init__(self, runner, w_parts, spec, layout, settings):
        self.runner, self.parts, self.spec, self.layout = runner, w_parts, spec, layout
        self.settings = settings

    def __call__(self, vectors: np.ndarray, positions: np.ndarray, with_index=False):
        from dask import delayed

        shared = delayed(vectors, pure=True)
        own = {q: (at, rows) for q, rows, at in self.layout.groups(positions)}
        empty = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int64))
        parts = np.flatnonzero(self.layout.lengths).tolist()
        tasks = [
            delayed(nearest_task, pure=False)(
                self.parts[q], self.spec, q, int(self.layout.lengths[q]), shared,
                own.get(q, empty), self.settings, with_index,
            )
            for q in parts
        ]  # fmt: skip
        nearest = np.full(len(vectors), np.inf)
        which = np.full(len(vectors), -1, dtype=np.int64)
        for q, found in zip(parts, self.runner.compute(tasks), strict=True):
            if not with_index:
                np.minimum(nearest, found, out=nearest)
                continue
            d, rows = found
            closer = d < nearest  # in partition order: the first row wins a tie
            nearest[closer] = d[closer]
            which[closer] = rows[closer] + self.layout.starts[q]
        return (nearest, which) if with_index else nearest


def _from_delayed(tasks: list, meta: pd.DataFrame, divisions):
    """A Dask DataFrame of our partitions, as they are: Dask's string conversion
    would turn the vector and list columns into their printed text."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_delayed(tasks, meta=meta, divisions=divisions, verify_meta=False)
