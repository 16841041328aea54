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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import BudgetNotReachedWarning
from ..utils._dask import (
    check_dask_frame,
    check_vector_column,
    runs_skdeita_model,
)
from ..utils._progress import progress_bar
from ..utils._validation import (
    check_columns,
    check_dataframe,
)
from ..utils._warnings import warn_user
from ._dask_stream import Blocks, Distances, Layout, Runner, StreamedRows, setting
from ._dask_tasks import (
    Spec,
    annotate_task,
    labels_task,
    nearest_task,
    scores_task,
    subset_task,
)
from ._distances import (
    MAX_SCRATCH_ELEMENTS,
    min_distance_to,
    needs_direction,
    resolve_metric,
)
from ._greedy import (
    _next_block,
    _reference_rows,
    _walk_selected,
    check_threshold,
    resolve_budget,
    score_order,
)


@dataclass
class _Plan:
    """A finished selection over a Dask DataFrame, and what its output needs."""

    X: object  # the input (persisted when that was needed)
    x_parts: list
    w_parts: list
    spec: Spec
    layout: Layout
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


def _gather_scores(selector, runner, w_parts, spec):
    from dask import delayed

    infos = runner.compute([delayed(scores_task)(p, spec) for p in w_parts])
    layout = Layout([len(i["scores"]) for i in infos])
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
    spec = Spec(
        selector.embedding_col,
        selector.instruction_score_col,
        selector.response_score_col,
        direction,
    )
    dataset = selector.neighbors == "dataset"
    x_parts, w_parts = _partitions(X, spec, setting("persist"), dataset)
    runner = Runner()
    layout, scores, dim = _gather_scores(selector, runner, w_parts, spec)
    budget = resolve_budget(selector.data_budget, layout.n)
    order = score_order(scores)[: int(np.count_nonzero(~np.isnan(scores)))]
    if layout.n < 2**31:
        order = order.astype(np.int32)  # 4 bytes a row on the client
    blocks = Blocks(runner, w_parts, spec, layout, order, scores, dim, budget)
    del scores  # the outputs recompute their rows' scores where the rows are
    source = StreamedRows(blocks, order, dim, bool(selector.normalize_embeddings))
    ref = _reference_rows(reference, source, direction, False)
    threshold = float(selector.diversity_threshold)
    # The annotated output shows every visited row's distance; otherwise only
    # the kept rows' are needed (8 bytes a visited row saved).
    distances = Distances(order, None if selector.output == "annotate" else threshold)
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
            delayed(nearest_task, pure=False)(
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
        delayed(labels_task)(plan.w_parts[q], q, int(plan.layout.lengths[q]), rows)
        for q, rows, _ in groups
    ]
    pieces = Runner().compute(tasks)
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

    meta = subset_task([], [], plan.spec, np.empty(0), plan.X._meta)
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
            delayed(subset_task, pure=False)(
                frames, picks, plan.spec, distances[s : s + per_part], meta
            )
        )
    return _from_delayed(tasks, meta, None)


def annotate_output(plan: _Plan):
    """Every row in input order, annotated, as a lazy Dask DataFrame (same partitions)."""
    from dask import delayed

    empty = np.empty(0, dtype=np.int64)
    meta = annotate_task(plan.X._meta, plan.spec, 0, -1, empty, empty, empty, empty)
    layout = plan.layout
    visited = {q: (rows, at) for q, rows, at in layout.groups(plan.order[: plan.n_visited])}
    kept = {q: (rows, at) for q, rows, at in layout.groups(plan.selected)}
    tasks = []
    for q, frame in enumerate(plan.x_parts):
        v_rows, v_at = visited.get(q, (empty, empty))
        k_rows, k_at = kept.get(q, (empty, empty))
        tasks.append(
            delayed(annotate_task, pure=False)(
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
