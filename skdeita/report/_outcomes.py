"""What happened to each row of an annotated selection, read back for a report.

An annotated output (``DeitaSelector(output="annotate")``) says per row:
``deita_status`` ("kept", "blocked", "over_budget", "excluded"),
``deita_blocked_by`` (the label of the blocking row) and
``nearest_neighbor_distance``. Annotated files written before those columns
existed hold only ``deita_selected`` and the distance; for them the status is
derived (visited rows have a distance) and the blocking row of the pairs shown
is found again from the embeddings, by the same rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..selection._distances import pairwise_distances, resolve_metric, unit_rows

OUTCOMES = ("kept", "blocked", "over_budget", "excluded")
COLORS = {
    "kept": "#0072B2",
    "blocked": "#D55E00",
    "over_budget": "#9E9E9E",
    "excluded": "#E69F00",
}
LABELS = {
    "kept": "kept",
    "blocked": "blocked",
    "over_budget": "over budget",
    "excluded": "excluded",
}
# Text columns shown for a row, in this order, when the caller names none.
TEXT_COLUMNS = (
    "instruction",
    "input",
    "response",
    "output",
    "prompt",
    "text",
    "conversations",
    "messages",
)


def is_annotated(frame: pd.DataFrame) -> bool:
    return "deita_status" in frame.columns or "deita_selected" in frame.columns


def row_status(frame: pd.DataFrame) -> np.ndarray:
    """Each row's outcome, as an array of the four names."""
    if "deita_status" in frame.columns:
        status = frame["deita_status"].astype(object).to_numpy()
        bad = ~np.isin(status, OUTCOMES)
        if bad.any():
            where = frame.index[np.flatnonzero(bad)[:5]].tolist()
            raise ValueError(
                f"Column 'deita_status' holds {status[bad][0]!r} at rows {where}; expected "
                f"one of {list(OUTCOMES)}."
            )
        return status
    selected = frame["deita_selected"].fillna(False).to_numpy(dtype=bool)
    visited = frame["nearest_neighbor_distance"].notna().to_numpy()
    score = frame["deita_score"] if "deita_score" in frame.columns else None
    excluded = score.isna().to_numpy() if score is not None else np.zeros(len(frame), dtype=bool)
    status = np.full(len(frame), "over_budget", dtype=object)
    status[visited & ~selected] = "blocked"
    status[excluded] = "excluded"
    status[selected] = "kept"
    return status


def closest_blocked(
    frame: pd.DataFrame,
    status: np.ndarray,
    n: int,
    *,
    embedding_col: str,
    distance_metric,
    normalize_embeddings: bool,
    neighbors: str,
) -> list[tuple[object, object, float]]:
    """``(blocked label, blocking label, distance)`` of the ``n`` blocked rows
    closest to the row that blocked them, closest first (ties: input order).

    The blocking label is ``None`` when it cannot be known (an old annotated
    file without embeddings).
    """
    blocked = np.flatnonzero(status == "blocked")
    distance = frame["nearest_neighbor_distance"].to_numpy(dtype=float)[blocked]
    chosen = blocked[np.argsort(distance, kind="stable")[:n]]
    if "deita_blocked_by" in frame.columns:
        by = frame["deita_blocked_by"].to_numpy(dtype=object)
        return [
            (frame.index[i], by[i], float(frame["nearest_neighbor_distance"].iat[i]))
            for i in chosen
        ]
    found = _find_blockers(
        frame, status, chosen, embedding_col, distance_metric, normalize_embeddings, neighbors
    )
    return [
        (frame.index[i], b, float(frame["nearest_neighbor_distance"].iat[i]))
        for i, b in zip(chosen, found, strict=True)
    ]


def _find_blockers(frame, status, chosen, embedding_col, metric, normalize, neighbors):
    """For files without ``deita_blocked_by``: the nearest row kept before each
    chosen row (paper rule) or its nearest other row (dataset rule)."""
    if embedding_col not in frame.columns or not len(chosen):
        return [None] * len(chosen)
    metric = resolve_metric(metric)
    candidates = np.flatnonzero(status != "excluded")
    scores = frame["deita_score"].to_numpy(dtype=float)
    # Visiting order: score descending, ties in input order.
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    place = np.empty(len(frame), dtype=np.intp)
    place[order] = np.arange(len(order))
    cells = frame[embedding_col].to_numpy(dtype=object)
    out = []
    for i in chosen:
        if neighbors == "selected":
            pool = order[: place[i]]
            pool = pool[status[pool] == "kept"]
        else:
            pool = candidates[candidates != i]
        if not len(pool):
            out.append(None)
            continue
        a = np.asarray([cells[i]], dtype=np.float64)
        b = np.asarray([cells[j] for j in pool], dtype=np.float64)
        if normalize:
            unit_rows(a)
            unit_rows(b)
        d = pairwise_distances(a, b, metric, normalize)[0]
        out.append(frame.index[pool[int(np.argmin(d))]])
    return out


def row_text(frame: pd.DataFrame, label, columns: list[str]) -> str:
    """The text of one row: each named column on its own, conversations as
    ``role: text`` lines."""
    if label is None or label not in frame.index:
        return ""
    row = frame.loc[label]
    if isinstance(row, pd.DataFrame):  # duplicated labels: the first row
        row = row.iloc[0]
    parts = []
    for col in columns:
        value = row[col]
        if isinstance(value, list | tuple | np.ndarray):
            lines = []
            for msg in value:
                if isinstance(msg, dict):
                    role = msg.get("role", msg.get("from", "?"))
                    lines.append(f"{role}: {msg.get('content', msg.get('value', ''))}")
                else:
                    lines.append(str(msg))
            value = "\n".join(lines)
        elif value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if len(columns) > 1:
            parts.append(f"[{col}]\n{value}")
        else:
            parts.append(str(value))
    return "\n\n".join(parts)


def text_columns(frame: pd.DataFrame, names: list[str] | None) -> list[str]:
    """The columns shown as a row's text: the caller's, or the usual ones present."""
    if names is not None:
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise ValueError(
                f"text_cols names {missing}, not columns of the data; its columns: "
                f"{[str(c) for c in frame.columns]}."
            )
        return list(names)
    return [c for c in TEXT_COLUMNS if c in frame.columns]
