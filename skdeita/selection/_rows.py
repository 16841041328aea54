"""Where the selection's rows come from: a pandas frame, or its partitions.

:class:`~skdeita.DeitaSelector` runs one sequence (see its module) over a
*row supplier*. Two suppliers exist, with the same methods:

- :class:`InMemoryRows`, here: the rows of a pandas DataFrame;
- :class:`~skdeita.selection._distributed.ClusterRows`: the partitions of a
  Dask DataFrame, scored and streamed by tasks on the workers.

What a frame or a partition is asked for is stated once, in :class:`Spec`
(its scores, its checked embeddings) and :class:`ScoreReport` (what the
scores pass tells the selector about its rows): the pandas frame is handled
as one partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..utils._validation import _cell_length, check_embedding_rows, first_labels
from ._greedy import RowSource, walk_order
from ._output import Selection, annotate, subset
from ._scores import DeitaScores, compute_deita_scores
from ._walk import nearest_other_rows, scratch_rows


@dataclass(frozen=True)
class Spec:
    """The columns a selection reads and how one frame is scored and checked
    (small and picklable: Dask tasks carry it)."""

    embedding_col: str
    instruction_col: str | None
    response_col: str | None
    need_direction: bool

    @property
    def columns(self) -> list[str]:
        cols = [self.embedding_col, self.instruction_col, self.response_col]
        return list(dict.fromkeys(c for c in cols if c is not None))

    def scores(self, frame: pd.DataFrame) -> DeitaScores:
        """Row by row: the scores of some rows do not depend on the other rows."""
        ic, rc = self.instruction_col, self.response_col
        return compute_deita_scores(frame[ic] if ic else None, frame[rc] if rc else None)

    def embeddings(self, frame: pd.DataFrame):
        """The embedding cells, checked (a list of vectors, never stacked whole)."""
        return check_embedding_rows(
            frame[self.embedding_col],
            need_direction=self.need_direction,
            name=f"Column {self.embedding_col!r}",
            labels=frame.index,
        )


@dataclass
class ScoreReport:
    """What the scores pass tells the selector about some rows (one frame, one
    partition, or all partitions combined)."""

    scores: np.ndarray  # float64, NaN where no score
    n_missing: int
    missing_labels: list  # the first 10
    n_fallback: int
    dim: int | None = None  # embedding length, when the embeddings were read
    first_label: object = None

    @classmethod
    def of(cls, frame: pd.DataFrame, scores: DeitaScores, cells=None) -> ScoreReport:
        missing = scores.missing
        return cls(
            scores=scores.scores,
            n_missing=int(missing.sum()),
            missing_labels=first_labels(frame.index, missing),
            n_fallback=scores.n_fallback,
            dim=_cell_length(cells[0]) if cells is not None and len(cells) else None,
            first_label=frame.index[0] if len(frame) else None,
        )

    @classmethod
    def combine(cls, reports: list[ScoreReport], embedding_col: str) -> ScoreReport:
        """The reports of consecutive partitions as one (vectors of one length)."""
        dims = [(r.dim, r.first_label) for r in reports if r.dim is not None]
        if len({d for d, _ in dims}) > 1:
            (d0, label0), other = dims[0], next(x for x in dims if x[0] != dims[0][0])
            raise ValueError(
                f"Column {embedding_col!r} has vectors of different lengths (ragged): row "
                f"{label0!r} has {d0}, row {other[1]!r} (another partition) has {other[0]}."
            )
        return cls(
            scores=np.concatenate([r.scores for r in reports]) if reports else np.empty(0),
            n_missing=sum(r.n_missing for r in reports),
            missing_labels=[label for r in reports for label in r.missing_labels][:10],
            n_fallback=sum(r.n_fallback for r in reports),
            dim=dims[0][0] if dims else 0,
        )


class InMemoryRows:
    """The rows of a pandas DataFrame: scored directly, read from memory."""

    def __init__(self, frame: pd.DataFrame, spec: Spec):
        self.frame, self.spec = frame, spec
        self.n = len(frame)

    def score(self) -> ScoreReport:
        self.scores = self.spec.scores(self.frame)
        return ScoreReport.of(self.frame, self.scores)

    def walk_order(self) -> np.ndarray:
        return walk_order(self.scores.scores)

    def source(self, order: np.ndarray, normalize: bool, budget: int) -> RowSource:
        """The embeddings, checked now (after the scores): a row source for the walk."""
        self.cells = self.spec.embeddings(self.frame)
        self._source = RowSource(self.cells, normalize=normalize)
        return self._source

    def nearest_others(self, metric, unit_norm: bool, block_size: int):
        """For ``neighbors="dataset"``: the nearest other scored row of the frame."""
        missing = self.scores.missing
        scored = np.flatnonzero(~missing) if missing.any() else None
        chunk = scratch_rows(block_size)

        def nearest(vectors, positions, with_index=False):
            own = (np.arange(len(positions)), positions)
            return nearest_other_rows(
                vectors, own, self._source, scored, metric, unit_norm, chunk, with_index
            )

        return nearest

    def close(self) -> None:
        """Nothing to release: the rows are the caller's."""

    def labels(self, positions: np.ndarray) -> pd.Index:
        return self.frame.index[positions]

    def output(self, selection: Selection, kind: str) -> pd.DataFrame:
        values = self.scores.scores
        with_ = pd.Series(self.scores.computed_with, dtype=object).to_numpy()
        if kind == "subset":
            kept = selection.selected
            rows = self.frame.iloc[kept].copy()
            return subset(rows, values[kept], with_[kept], selection.kept_distances())
        return annotate(self.frame, values, with_, selection.marks())
