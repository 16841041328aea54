"""The partition tasks of the Dask selection (see :mod:`._distributed`).

Each runs on a worker over one partition: score and check it (the scores
pass), cut a stage's rows out in walk order, gather a block from those
pieces, find the nearest row of the partition for ``neighbors="dataset"``,
and build the output partitions. What a partition is asked for (its scores,
its checked embeddings, its output columns) is the pandas path's own code,
from :mod:`._rows`, :mod:`._walk` and :mod:`._output`; every task recomputes
the partition's scores row by row, so they equal, bit for bit, those the
client sorted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..exceptions import InputChangedError
from ._greedy import RowSource, walk_order
from ._output import Marks, annotate, subset
from ._rows import ScoreReport, Spec
from ._walk import nearest_other_rows


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


def scores_task(frame: pd.DataFrame, spec: Spec) -> ScoreReport:
    """The scores pass: check one partition, report its scores."""
    scores = spec.scores(frame)
    return ScoreReport.of(frame, scores, spec.embeddings(frame))


def piece_task(frame, spec: Spec, q: int, n_rows: int, lo, hi, expected: int) -> np.ndarray:
    """A stage's rows of partition ``q``, in walk order."""
    _check_length(frame, n_rows, q)
    scores = spec.scores(frame).scores
    rows = walk_order(scores)  # the global walk order restricted to it
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


def nearest_task(frame, spec: Spec, q: int, n_rows: int, vectors, own, settings, with_index):
    """Nearest distance from each of ``vectors`` to partition ``q``'s scored rows
    (and, ``with_index``, which local row: ``(d, rows)``).

    ``own = (block_rows, local_rows)``: candidates that are rows of this
    partition, which are not their own neighbours.
    """
    _check_length(frame, n_rows, q)
    metric, unit_norm, chunk = settings
    scored = np.flatnonzero(~spec.scores(frame).missing)
    source = RowSource(frame[spec.embedding_col].tolist(), normalize=unit_norm)
    return nearest_other_rows(vectors, own, source, scored, metric, unit_norm, chunk, with_index)


def labels_task(frame, q: int, n_rows: int, rows: np.ndarray) -> pd.Index:
    _check_length(frame, n_rows, q)
    return frame.index[rows]


def _score_values(frame: pd.DataFrame, spec: Spec):
    # Scores are computed row by row: those of these rows equal those the
    # selection used, bit for bit.
    scores = spec.scores(frame)
    return scores.scores, pd.Series(scores.computed_with, dtype=object).to_numpy()


def subset_task(frames: list, picks: list, spec: Spec, distances, meta):
    """One output partition: kept rows of several input partitions, in selection order."""
    if not frames:
        rows = meta.iloc[:0].copy()
    else:
        pieces, dest = [], []
        for frame, (q, n_rows, rows, at) in zip(frames, picks, strict=True):
            _check_length(frame, n_rows, q)
            pieces.append(frame.iloc[rows])
            dest.append(at)
        rows = pd.concat(pieces) if len(pieces) > 1 else pieces[0]
        rows = rows.iloc[np.argsort(np.concatenate(dest), kind="stable")].copy()
    return subset(rows, *_score_values(rows, spec), distances)


def annotate_task(frame, spec: Spec, q: int, n_rows: int, marks: Marks):
    """One output partition: every row of an input partition, annotated."""
    if n_rows >= 0:
        _check_length(frame, n_rows, q)
    return annotate(frame, *_score_values(frame, spec), marks)
