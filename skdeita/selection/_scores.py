"""DEITA scores from complexity (instruction) and quality (response) columns.

``deita_score = complexity x quality``; a multi-turn row holds one value per
turn in each column and scores ``sum_t complexity[t] * quality[t]``, as the
DEITA repository does. Only None/NaN counts as missing: 0 is a real score
(distilabel treats it as missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..utils._validation import first_labels, is_missing

# Integers above this lose their last digits in float64.
MAX_EXACT_INTEGER = 2**53


@dataclass(frozen=True)
class DeitaScores:
    """Per-row scores and which columns produced them."""

    scores: np.ndarray  # float64, nan where both inputs are missing
    computed_with: list[list[str]]
    n_fallback: int  # rows scored from one column because the other was missing

    @property
    def missing(self) -> np.ndarray:
        return np.isnan(self.scores)


def _cell_value(value, col: str, label):
    """A cell as a float, a float array (per turn), or None when missing."""
    if is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"Column {col!r} holds a boolean at row {label!r}; expected a number.")
    if isinstance(value, int | float | np.integer | np.floating):
        if isinstance(value, int | np.integer) and abs(int(value)) > MAX_EXACT_INTEGER:
            raise ValueError(
                f"Column {col!r} holds an integer beyond 2**53 at row {label!r}: float64 "
                "cannot tell such scores apart. Rescale the column."
            )
        if np.isinf(value):
            raise ValueError(f"Column {col!r} holds inf at row {label!r}.")
        return float(value)
    if isinstance(value, list | tuple | np.ndarray):
        try:  # numbers only: float64 would turn "4" into 4.0 and True into 1.0
            turns = np.asarray(value)
            turns = turns.astype(np.float64) if turns.dtype.kind in "fiu" else None
        except (TypeError, ValueError):
            turns = None
        if turns is None or turns.ndim != 1 or len(turns) == 0 or not np.isfinite(turns).all():
            raise TypeError(
                f"Column {col!r} at row {label!r} holds {value!r}; a per-turn score "
                "must be a non-empty list of finite numbers."
            )
        return turns
    raise TypeError(
        f"Column {col!r} holds {type(value).__name__} {value!r} at row {label!r}; "
        "expected a number, a list of per-turn numbers, or None/NaN."
    )


def _numeric(series: pd.Series) -> np.ndarray | None:
    """The column as float64 when its dtype is plainly numeric, else None."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        raise TypeError(
            f"Column {series.name!r} has categorical dtype; convert it to numbers "
            "(for example with .astype(float))."
        )
    if pd.api.types.is_bool_dtype(series.dtype):
        raise TypeError(f"Column {series.name!r} is boolean; expected numeric scores.")
    if pd.api.types.is_complex_dtype(series.dtype):
        raise TypeError(f"Column {series.name!r} is complex; expected real scores.")
    if pd.api.types.is_numeric_dtype(series.dtype):
        if pd.api.types.is_integer_dtype(series.dtype):
            ints = series.to_numpy(getattr(series.dtype, "numpy_dtype", None), na_value=0)
            _check_exact((ints > MAX_EXACT_INTEGER) | (ints < -MAX_EXACT_INTEGER), series)
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return None


def _check_exact(inexact: np.ndarray, series: pd.Series) -> None:
    if inexact.any():
        raise ValueError(
            f"Column {series.name!r} holds integers beyond 2**53 at rows "
            f"{first_labels(series.index, inexact)}: float64 cannot tell such scores "
            "apart, so their order would be lost. Rescale the column."
        )


def _check_finite(values: np.ndarray, series: pd.Series) -> None:
    bad = np.isinf(values)
    if bad.any():
        raise ValueError(
            f"Column {series.name!r} holds inf at rows {first_labels(series.index, bad)}."
        )


def compute_deita_scores(instruction: pd.Series | None, response: pd.Series | None) -> DeitaScores:
    """Combine the two score columns row by row.

    Parameters
    ----------
    instruction, response : Series or None
        The complexity and quality columns; None when the user has only one.

    Returns
    -------
    DeitaScores
        ``scores`` is NaN where both inputs are missing.
    """
    columns = [s for s in (instruction, response) if s is not None]
    names = [str(s.name) for s in columns]
    numeric = [_numeric(s) for s in columns]
    if all(v is not None for v in numeric):
        for v, s in zip(numeric, columns, strict=True):
            _check_finite(v, s)
        result = _combine_numeric(numeric, names)
    else:
        result = _combine_cells(columns, names)
    overflow = np.isinf(result.scores)
    if overflow.any():
        labels = columns[0].index
        raise ValueError(
            f"deita_score overflows float64 at rows {first_labels(labels, overflow)}: the "
            f"product of {names} is too large to compare. Rescale the score columns "
            "(any positive factor leaves the selection unchanged)."
        )
    return result


def _combine_numeric(values: list[np.ndarray], names: list[str]) -> DeitaScores:
    """Vectorised path: both columns plain numbers."""
    present = [~np.isnan(v) for v in values]
    if len(values) == 1:
        scores = values[0].copy()
        with_ = [[names[0]] if p else [] for p in present[0]]
        return DeitaScores(scores, with_, 0)
    a, b = values
    pa, pb = present
    with np.errstate(over="ignore", invalid="ignore"):
        scores = np.where(pa & pb, a * b, np.where(pa, a, b))
    combos = {(True, True): names, (True, False): [names[0]], (False, True): [names[1]]}
    with_ = [list(combos.get((x, y), [])) for x, y in zip(pa, pb, strict=True)]
    return DeitaScores(scores, with_, int(np.count_nonzero(pa ^ pb)))


def _combine_cells(columns: list[pd.Series], names: list[str]) -> DeitaScores:
    """Cell-by-cell path: object columns, possibly with per-turn lists."""
    n = len(columns[0]) if columns else 0
    scores = np.full(n, np.nan)
    with_: list[list[str]] = []
    n_fallback = 0
    labels = columns[0].index
    cells = [s.tolist() for s in columns]
    for i in range(n):
        label = labels[i]
        vals = [_cell_value(c[i], name, label) for c, name in zip(cells, names, strict=True)]
        present = [v is not None for v in vals]
        used = [name for name, p in zip(names, present, strict=True) if p]
        with_.append(used)
        if len(used) == 2:
            scores[i] = _product(vals[0], vals[1], names, label)
        elif len(used) == 1:
            v = vals[present.index(True)]
            with np.errstate(over="ignore"):
                scores[i] = float(np.sum(v))
            n_fallback += len(columns) == 2
    return DeitaScores(scores, with_, n_fallback)


def _product(a, b, names, label) -> float:
    if np.ndim(a) != np.ndim(b) or (np.ndim(a) == 1 and len(a) != len(b)):
        raise ValueError(
            f"Row {label!r}: {names[0]!r} and {names[1]!r} must both be numbers or "
            f"per-turn lists of equal length, got {a!r} and {b!r}."
        )
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sum(np.multiply(a, b)))
