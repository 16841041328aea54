"""Input checks shared by every estimator, function and CLI command.

Every check runs before any expensive work (a model load, an embedding, a
score) and names what is wrong: the parameter, the column (with the
available ones), the row labels, or the position in a template.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Sequence

import numpy as np
import pandas as pd

_CHUNK = 8192


def first_labels(index, mask: np.ndarray, limit: int = 10) -> list:
    """The first ``limit`` labels of ``index`` (an Index or positions) where ``mask`` holds."""
    where = np.flatnonzero(mask)[:limit]
    if isinstance(index, pd.Index):
        return index[where].tolist()
    return np.asarray(index)[where].tolist()


def check_dataframe(X, estimator: str) -> pd.DataFrame:
    """Require a pandas DataFrame with unique column names."""
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


def is_missing(value) -> bool:
    """None, pandas' NA or a float NaN."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and value != value


def check_unicode(texts: Sequence[str], name: str, labels) -> None:
    """Texts must encode as UTF-8 (no lone surrogates): tokenizers crash on them."""
    bad = []
    for i, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(i)
    if bad:
        mask = np.zeros(len(texts), dtype=bool)
        mask[bad] = True
        raise ValueError(
            f"{name} holds text that is not valid Unicode (a lone surrogate) at rows "
            f"{first_labels(labels, mask)}; clean it, for example with "
            "text.encode('utf-8', 'replace').decode('utf-8')."
        )


def check_text_column(series: pd.Series, on_missing: str = "raise") -> list[str]:
    """Texts of a column; None/NaN raise (naming rows) or become ``""``."""
    values = series.tolist()
    missing = np.array([is_missing(v) for v in values], dtype=bool)
    if missing.any() and on_missing == "raise":
        raise ValueError(
            f"Column {series.name!r} has missing text (None/NaN) at rows "
            f"{first_labels(series.index, missing)}; fill them, drop them, or "
            "pass on_missing='empty' to use an empty string."
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
    texts = ["" if m else v for v, m in zip(values, missing, strict=True)]
    check_unicode(texts, f"Column {series.name!r}", series.index)
    return texts


def template_fields(template: str, param: str = "template") -> list[str]:
    """The named fields of a ``str.format`` template, in order, each once.

    A malformed template (an unclosed ``{``, a stray ``}``) or a positional
    field raises a ValueError naming the parameter and the position.
    """
    fields = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"{param}={template!r} is not a valid format string ({exc}) at position "
            f"{_bad_brace_position(template)}; write a literal brace as '{{{{' or '}}}}'."
        ) from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if not field or field.isdigit():
            raise ValueError(
                f"{param}={template!r} must name columns as {{column}} fields; "
                "positional fields like {} or {0} are not allowed."
            )
        fields.append(field)
    return list(dict.fromkeys(fields))


def _bad_brace_position(template: str) -> int:
    """Index of the first brace that makes ``template`` malformed."""
    i, open_at = 0, None
    while i < len(template):
        c = template[i]
        if open_at is None:
            if template.startswith(("{{", "}}"), i):
                i += 2
                continue
            if c == "}":
                return i
            if c == "{":
                open_at = i
        elif c == "}":
            open_at = None
        i += 1
    return open_at if open_at is not None else len(template)


def _cell_length(cell) -> int | None:
    """Length of a 1-D vector cell, or None when the cell is not one."""
    if isinstance(cell, np.ndarray):
        if cell.ndim != 1 or cell.dtype.kind not in "fiu":
            return None
        return cell.shape[0]
    if isinstance(cell, list | tuple):
        return len(cell)
    return None


def _short(value, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def check_embedding_rows(rows, *, need_direction: bool, name: str, labels=None):
    """Validate embeddings: a 2-D array or a sequence of equal-length 1-D vectors.

    The one check behind :func:`~skdeita.deita_select` (``name="embeddings"``,
    labels are positions) and :class:`~skdeita.DeitaSelector` (the column's
    name and index labels). A sequence is checked block by block and never
    stacked whole. Returns ``rows`` as a 2-D array or a list of cells.
    """
    where = "positions" if labels is None else "rows"
    if isinstance(rows, pd.Series):
        rows = rows.tolist()
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        if rows.ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_rows, n_dims), got an array of shape {rows.shape}."
            )
        if rows.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {rows.dtype}.")
        n = rows.shape[0]
        labels = np.arange(n) if labels is None else labels
        if n and rows.shape[1] == 0:
            raise ValueError(f"{name} holds empty vectors (0 columns).")
        blocks = ((s, rows[s : s + _CHUNK]) for s in range(0, n, _CHUNK))
    else:
        rows = list(rows)
        n = len(rows)
        labels = np.arange(n) if labels is None else labels
        _check_cells(rows, name, labels, where)
        blocks = ((s, _stack(rows[s : s + _CHUNK], name, labels[s:])) for s in range(0, n, _CHUNK))
    for start, block in blocks:
        block_labels = labels[start : start + len(block)]
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise ValueError(
                f"{name} holds NaN or inf at {where} {first_labels(block_labels, ~finite)}."
            )
        if need_direction:
            zero = ~np.any(block != 0, axis=1)
            if zero.any():
                raise ValueError(
                    f"{name} holds all-zero vectors at {where} "
                    f"{first_labels(block_labels, zero)}; "
                    "a zero vector has no direction for cosine distance or normalisation. "
                    "Drop these rows or use distance_metric='euclidean' with "
                    "normalize_embeddings=False."
                )
    return rows


def _check_cells(cells: list, name: str, labels, where: str) -> None:
    lengths = [_cell_length(c) for c in cells]
    not_vec = np.array([x is None for x in lengths], dtype=bool)
    if not_vec.any():
        first = cells[int(np.flatnonzero(not_vec)[0])]
        hint = (
            " (a printed array: Dask's string conversion turns object columns of "
            "arrays into text; store embeddings as Parquet list<float32>)"
            if isinstance(first, str)
            else ""
        )
        raise TypeError(
            f"{name} must hold one 1-D numeric vector (list or array) per row; found "
            f"{type(first).__name__} {_short(first)} at {where} {first_labels(labels, not_vec)}"
            f"{hint}."
        )
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(cells):
        ragged = lengths != lengths[0]
        if ragged.any():
            raise ValueError(
                f"{name} has vectors of different lengths (ragged): row {labels[0]!r} has "
                f"{lengths[0]}, rows {first_labels(labels, ragged)} differ."
            )
        if lengths[0] == 0:
            raise ValueError(
                f"{name} holds empty vectors at rows {first_labels(labels, lengths == 0)}."
            )


def _stack(block: list, name: str, labels) -> np.ndarray:
    try:
        return np.array(block, dtype=np.float64)
    except (TypeError, ValueError):
        bad = np.array([_is_non_numeric(c) for c in block])
        raise TypeError(
            f"{name} holds non-numeric vectors at rows {first_labels(labels, bad)}."
        ) from None


def _is_non_numeric(cell) -> bool:
    try:
        np.asarray(cell, dtype=np.float64)
    except (TypeError, ValueError):
        return True
    return False
