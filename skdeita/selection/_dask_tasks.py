"""The partition tasks of the Dask selection (see :mod:`._distributed`).

Each runs on a worker over one partition: check it and return its scores,
cut a stage's rows out in walk order, gather a block from those pieces, find
the nearest row of the partition for ``neighbors="dataset"``, and build the
output partitions. Every task recomputes the partition's scores row by row,
so they equal, bit for bit, those the client sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import InputChangedError
from ..utils._validation import _cell_length, check_embedding_rows, first_labels
from ._distances import min_distance_to, unit_rows
from ._greedy import score_order
from ._scores import compute_deita_scores

# -- what the tasks need to know ---------------------------------------------------


@dataclass(frozen=True)
class Spec:
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
        raise InputChangedError(
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


def scores_task(frame: pd.DataFrame, spec: Spec) -> dict:
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


def piece_task(frame, spec: Spec, q: int, n_rows: int, lo, hi, expected: int) -> np.ndarray:
    """A stage's rows of partition ``q``, in walk order."""
    _check_length(frame, n_rows, q)
    scores = spec.scores(frame).scores
    rows = _local_walk_order(scores)
    keys = -scores[rows]
    a, b = _count_before(keys, rows, q, lo), _count_before(keys, rows, q, hi)
    if b - a != expected:
        raise InputChangedError(
            f"Partition {q} gave {b - a} rows for a stage that needs {expected}: its scores "
            "changed between passes. Persist the input before selecting."
        )
    return _stack(frame[spec.embedding_col].tolist(), rows[a:b])


def block_task(parts: list, n_rows: int, dim: int) -> np.ndarray:
    """Gather a block of consecutive ranks from the stage's pieces."""
    dtype = np.result_type(*[piece.dtype for piece, _, _, _ in parts])
    out = np.empty((n_rows, dim), dtype=dtype)
    for piece, start, stop, dest in parts:
        out[dest] = piece[start:stop]
    return out


def nearest_task(frame, spec: Spec, q: int, n_rows: int, vectors, own, settings) -> np.ndarray:
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


def labels_task(frame, q: int, n_rows: int, rows: np.ndarray) -> pd.Index:
    _check_length(frame, n_rows, q)
    return frame.index[rows]


def with_scores(frame: pd.DataFrame, spec: Spec, distances) -> pd.DataFrame:
    # Scores are computed row by row: those of these rows equal those the
    # selection used, bit for bit.
    scores = spec.scores(frame)
    frame["deita_score"] = scores.scores
    frame["deita_score_computed_with"] = pd.Series(scores.computed_with, dtype=object).values
    frame["nearest_neighbor_distance"] = distances
    return frame


def subset_task(frames: list, picks: list, spec: Spec, distances, meta):
    """One output partition: kept rows of several input partitions, in selection order."""
    if not frames:
        return with_scores(meta.iloc[:0].copy(), spec, distances)
    pieces, dest = [], []
    for frame, (q, n_rows, rows, at) in zip(frames, picks, strict=True):
        _check_length(frame, n_rows, q)
        pieces.append(frame.iloc[rows])
        dest.append(at)
    out = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
    out = out.iloc[np.argsort(np.concatenate(dest), kind="stable")].copy()
    return with_scores(out, spec, distances)


def annotate_task(frame, spec: Spec, q: int, n_rows: int, visited, distances, kept, ranks):
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
