"""What a selection produced, and the output columns built from it.

:class:`Selection` is the one result object of
:class:`~skdeita.DeitaSelector`'s sequence, on pandas and on Dask alike.
:func:`subset` and :func:`annotate` build the output: on a pandas frame they
run once, on a Dask DataFrame once per output partition, so the columns, their
dtypes and their values are defined here only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCORE_COLUMNS = ["deita_score", "deita_score_computed_with", "nearest_neighbor_distance"]
ANNOTATE_COLUMNS = ["deita_selected", "deita_rank"]


def added_columns(output: str) -> list[str]:
    """The columns ``DeitaSelector(output=output)`` adds, in order."""
    return SCORE_COLUMNS + (ANNOTATE_COLUMNS if output == "annotate" else [])


@dataclass(frozen=True)
class Selection:
    """A finished walk, in the input's row positions.

    ``distances`` is stored by rank (the walk's visiting order): the visited
    rows' distances, or only the kept rows' (``kept_only``; in selection
    order) when the output shows no other row.
    """

    n_rows: int
    order: np.ndarray  # the walk order: scored rows by decreasing score
    selected: np.ndarray  # kept positions, in selection order
    distances: np.ndarray
    kept_only: bool
    n_visited: int
    budget: int
    budget_reached: bool

    def visited(self) -> np.ndarray:
        """Positions of the visited rows, in visiting order."""
        return self.order[: self.n_visited]

    def kept_distances(self) -> np.ndarray:
        """The kept rows' distances, in selection order (= rank order)."""
        if self.kept_only:
            return self.distances
        return self.distances[np.isin(self.visited(), self.selected)]

    def ranks(self) -> np.ndarray:
        """1-based selection order of the kept rows."""
        return np.arange(1, len(self.selected) + 1, dtype=np.int64)


def _score_columns(out: pd.DataFrame, scores, computed_with, distances) -> pd.DataFrame:
    out["deita_score"] = scores
    out["deita_score_computed_with"] = computed_with
    out["nearest_neighbor_distance"] = distances
    return out


def subset(rows: pd.DataFrame, scores, computed_with, distances) -> pd.DataFrame:
    """The kept rows (a copy, in selection order) with their score columns."""
    return _score_columns(rows, scores, computed_with, distances)


def annotate(frame, scores, computed_with, visited, distances, kept, ranks) -> pd.DataFrame:
    """Every row of ``frame``, in input order, annotated.

    ``visited``/``distances`` and ``kept``/``ranks`` are row positions in
    ``frame`` with the values to write there; other rows get NaN and NA.
    """
    dist = np.full(len(frame), np.nan)
    dist[visited] = distances
    out = _score_columns(frame.copy(), scores, computed_with, dist)
    rank = np.zeros(len(frame), dtype=np.int64)
    rank[kept] = ranks
    out["deita_selected"] = rank > 0
    out["deita_rank"] = pd.array([r if r else pd.NA for r in rank.tolist()], dtype="Int64")
    return out
