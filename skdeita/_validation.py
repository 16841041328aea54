"""Input checks shared by the estimators.

Every check runs before any expensive work and names what is wrong: the
parameter, the column (with the available ones), or the first row labels.
"""

from __future__ import annotations

import difflib
import os

import numpy as np
import pandas as pd

_CHUNK = 8192


def first_labels(index: pd.Index, mask: np.ndarray, limit: int = 10) -> list:
    """The first ``limit`` index labels where ``mask`` is true."""
    return index[np.flatnonzero(mask)[:limit]].tolist()


def check_dataframe(X, estimator: str) -> pd.DataFrame:
    """Require a DataFrame with unique column names."""
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{estimator} expects a pandas DataFrame, got {type(X).__name__}. "
            "Wrap your data with pandas.DataFrame(...)."
        )
    dup = X.columns[X.columns.duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"X has duplicate column names {dup}; column names must be unique.")
    return X


def check_columns(X: pd.DataFrame, columns: dict[str, str | None]) -> None:
    """Raise if a column named by a parameter is absent (``{param: column}``)."""
    available = [str(c) for c in X.columns]
    for param, col in columns.items():
        if col is None or col in X.columns:
            continue
        close = difflib.get_close_matches(str(col), available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Column {col!r} ({param}) is not in X.{hint} Available columns: {available}."
        )


def check_text_column(series: pd.Series, on_missing: str = "raise") -> list[str]:
    """Texts of a column; None/NaN raise (naming rows) or become ``""``."""
    values = series.tolist()
    missing = np.array(
        [v is None or v is pd.NA or (isinstance(v, float) and v != v) for v in values], dtype=bool
    )
    if missing.any() and on_missing == "raise":
        raise ValueError(
            f"Column {series.name!r} has missing text (None/NaN) at rows "
            f"{first_labels(series.index, missing)}; fill them, drop them, or "
            "pass on_missing='empty' to embed an empty string."
        )
    not_str = np.array(
        [not (m or isinstance(v, str)) for v, m in zip(values, missing, strict=True)], dtype=bool
    )
    if not_str.any():
        first = values[int(np.flatnonzero(not_str)[0])]
        raise TypeError(
            f"Column {series.name!r} must hold strings; found {type(first).__name__} "
            f"at rows {first_labels(series.index, not_str)}."
        )
    return ["" if m else v for v, m in zip(values, missing, strict=True)]


def _cell_kind(cell) -> int | None:
    """Length of a 1-D vector cell, or None when the cell is not one."""
    if isinstance(cell, np.ndarray):
        if cell.ndim != 1 or cell.dtype.kind not in "fiu":
            return None
        return cell.shape[0]
    if isinstance(cell, list | tuple):
        return len(cell)
    return None


def check_embedding_column(series: pd.Series, need_direction: bool) -> list:
    """Validate a column of 1-D vectors without stacking it whole.

    Returns the cells as a list (no copy of the vectors), ready for
    :class:`skdeita._selection.RowSource`.
    """
    col = series.name
    cells = series.tolist()
    index = series.index
    lengths = np.array([_cell_kind(c) if c is not None else None for c in cells], dtype=object)
    not_vec = np.array([x is None for x in lengths], dtype=bool)
    if not_vec.any():
        first = cells[int(np.flatnonzero(not_vec)[0])]
        raise TypeError(
            f"Column {col!r} must hold one 1-D numeric vector (list or array) per "
            f"row; found {type(first).__name__} {_short(first)} at rows "
            f"{first_labels(index, not_vec)}."
        )
    lengths = lengths.astype(np.int64)
    if len(cells):
        ragged = lengths != lengths[0]
        if ragged.any() or lengths[0] == 0:
            bad = ragged if ragged.any() else lengths == 0
            raise ValueError(
                f"Column {col!r} has vectors of different lengths (ragged): row "
                f"{index[0]!r} has {lengths[0]}, rows {first_labels(index, bad)} differ."
                if ragged.any()
                else f"Column {col!r} holds empty vectors at rows {first_labels(index, bad)}."
            )
    for start in range(0, len(cells), _CHUNK):
        block = cells[start : start + _CHUNK]
        labels = index[start : start + _CHUNK]
        try:
            arr = np.array(block, dtype=np.float64)
        except (TypeError, ValueError):
            bad = [_is_non_numeric(c) for c in block]
            raise TypeError(
                f"Column {col!r} holds non-numeric vectors at rows "
                f"{first_labels(labels, np.array(bad))}."
            ) from None
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"Column {col!r} holds NaN or inf at rows {first_labels(labels, ~finite)}."
            )
        if need_direction:
            zero = ~np.any(arr != 0, axis=1)
            if zero.any():
                raise ValueError(
                    f"Column {col!r} holds all-zero vectors at rows "
                    f"{first_labels(labels, zero)}; a zero vector has no direction for "
                    "cosine distance or normalisation. Drop these rows or use "
                    "distance_metric='euclidean' with normalize_embeddings=False."
                )
    return cells


def _is_non_numeric(cell) -> bool:
    try:
        np.asarray(cell, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return False


def _short(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributing the warning to the first caller outside skdeita and
    scikit-learn (whose wrappers sit between the user and our code)."""
    import sys
    import warnings

    import sklearn

    internal = (
        os.path.dirname(os.path.abspath(__file__)),
        os.path.dirname(os.path.abspath(sklearn.__file__)),
    )
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is our caller
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
