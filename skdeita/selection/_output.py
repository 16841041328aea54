"""What a selection produced, and the output columns built from it.

:class:`Selection` is the one result object of
:class:`~skdeita.DeitaSelector`'s sequence, on pandas and on Dask alike.
:func:`subset` and :func:`annotate` build the output: on a pandas frame they
run once, on a Dask DataFrame once per output partition (with the
:class:`Marks` of that partition), so the columns, their dtypes and their
values are defined here only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCORE_COLUMNS = ["deita_score", "deita_score_computed_with", "nearest_neighbor_distance"]
ANNOTATE_COLUMNS = ["deita_selected", "deita_rank", "deita_status", "deita_blocked_by"]
REFERENCE_COLUMN = "deita_blocked_by_reference"  # with reference= only
VISIT_COLUMN = "deita_visit"
STATUSES = ("kept", "blocked", "over_budget", "excluded")


def added_columns(output: str, reference: bool = False) -> list[str]:
    """The columns ``DeitaSelector(output=output)`` adds, in order."""
    if output == "subset":
        return list(SCORE_COLUMNS)
    return SCORE_COLUMNS + ANNOTATE_COLUMNS + [REFERENCE_COLUMN] * reference + [VISIT_COLUMN]


@dataclass(frozen=True)
class Selection:
    """A finished walk, in the input's row positions.

    ``distances`` is stored by rank (the walk's visiting order): the visited
    rows' distances, or only the kept rows' (``kept_only``; in selection
    order) when the output shows no other row. ``nearest`` (by rank, with
    ``output="annotate"``) is each visited row's nearest row as a code of
    :class:`~._walk.Nearest`; ``blocked_by`` and ``blocked_by_reference``
    (by rank) are the labels the output shows for it.
    """

    n_rows: int
    order: np.ndarray  # the walk order: scored rows by decreasing score
    selected: np.ndarray  # kept positions, in selection order
    distances: np.ndarray
    kept_only: bool
    n_visited: int
    budget: int
    budget_reached: bool
    nearest: np.ndarray | None = None
    blocked_by: np.ndarray | None = None
    blocked_by_reference: np.ndarray | None = None

    def visited(self) -> np.ndarray:
        """Positions of the visited rows, in visiting order."""
        return self.order[: self.n_visited]

    def kept_by_rank(self) -> np.ndarray:
        """Whether each visited row (by rank) was kept."""
        return np.isin(self.visited(), self.selected)

    def kept_distances(self) -> np.ndarray:
        """The kept rows' distances, in selection order (= rank order)."""
        if self.kept_only:
            return self.distances
        return self.distances[self.kept_by_rank()]

    def ranks(self) -> np.ndarray:
        """1-based selection order of the kept rows."""
        return np.arange(1, len(self.selected) + 1, dtype=np.int64)

    def marks(self, part=None) -> Marks:
        """The :class:`Marks` of the whole input, or of one partition:
        ``part = (visited, visited_at, kept, kept_at)``, the partition's visited
        rows and their ranks in the walk, its kept rows and their ranks in the
        selection."""
        if part is None:
            part = (self.visited(), np.arange(self.n_visited))
            part += (self.selected, np.arange(len(self.selected)))
        visited, visited_at, kept, kept_at = part
        ref = self.blocked_by_reference
        return Marks(
            visited=visited,
            visit=visited_at + 1,
            distances=self.distances[visited_at],
            blocked_by=self.blocked_by[visited_at],
            blocked_by_reference=None if ref is None else ref[visited_at],
            kept=kept,
            ranks=kept_at + 1,
        )


@dataclass(frozen=True)
class Marks:
    """What ``annotate`` writes on one frame (or one partition): row positions in
    that frame and the values to write there."""

    visited: np.ndarray  # visited rows, visiting order
    visit: np.ndarray  # their 1-based places in the walk's visiting order
    distances: np.ndarray
    blocked_by: np.ndarray  # object: an index label, or None
    blocked_by_reference: np.ndarray | None  # object, with reference= only
    kept: np.ndarray
    ranks: np.ndarray


def _score_columns(out: pd.DataFrame, scores, computed_with, distances) -> pd.DataFrame:
    out["deita_score"] = scores
    out["deita_score_computed_with"] = computed_with
    out["nearest_neighbor_distance"] = distances
    return out


def subset(rows: pd.DataFrame, scores, computed_with, distances) -> pd.DataFrame:
    """The kept rows (a copy, in selection order) with their score columns."""
    return _score_columns(rows, scores, computed_with, distances)


def annotate(frame: pd.DataFrame, scores, computed_with, marks: Marks) -> pd.DataFrame:
    """Every row of ``frame``, in input order, with what happened to it."""
    n = len(frame)
    dist = np.full(n, np.nan)
    dist[marks.visited] = marks.distances
    out = _score_columns(frame.copy(), scores, computed_with, dist)
    rank = np.zeros(n, dtype=np.int64)
    rank[marks.kept] = marks.ranks
    kept = rank > 0
    out["deita_selected"] = kept
    out["deita_rank"] = _nullable(rank)
    visited = np.zeros(n, dtype=bool)
    visited[marks.visited] = True
    status = np.where(np.isnan(scores), 3, 2)  # codes into STATUSES
    status[visited] = 1
    status[kept] = 0
    out["deita_status"] = pd.Categorical.from_codes(status, categories=STATUSES)
    out["deita_blocked_by"] = _labels(frame.index, marks.visited, marks.blocked_by)
    if marks.blocked_by_reference is not None:
        out[REFERENCE_COLUMN] = _labels(frame.index, marks.visited, marks.blocked_by_reference)
    visit = np.zeros(n, dtype=np.int64)
    visit[marks.visited] = marks.visit
    out[VISIT_COLUMN] = _nullable(visit)
    return out


def _labels(index: pd.Index, rows: np.ndarray, labels: np.ndarray) -> pd.Series:
    """Index labels at ``rows``, None elsewhere, as an object column whatever the
    labels are (so every partition of a Dask output has the same dtype)."""
    column = np.full(len(index), None, dtype=object)
    column[rows] = labels
    return pd.Series(column, index=index, dtype=object)


def _nullable(values: np.ndarray) -> pd.arrays.IntegerArray:
    """1-based numbers as Int64, 0 as NA."""
    return pd.arrays.IntegerArray(values, values == 0)
