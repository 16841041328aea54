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

    A malformed template (an unclosed ``{``, a stray ``}``), a positional
    field (``{}``, ``{0}``), or a field that is more than a column name (a
    format spec ``{a:>10}``, a conversion ``{a!r}``, an attribute or index
    ``{a.b}``, ``{a[0]}``) raises a ValueError naming the parameter and the
    position of the offending brace.
    """
    starts = _field_starts(template)
    fields: list[str] = []
    seen = 0
    try:
        for _, field, spec, conversion in string.Formatter().parse(template):
            if field is None:
                continue
            at = starts[seen] if seen < len(starts) else 0
            seen += 1
            if not field.strip() or field.isdigit():
                raise ValueError(
                    f"{param}={template!r} has a positional field {{{field}}} at position "
                    f"{at}; name a column, as in {{instruction}}."
                )
            if spec or conversion is not None or "." in field or "[" in field:
                raise ValueError(
                    f"{param}={template!r} has the field {_field_text(template, at)} at "
                    f"position {at}: a field must be a bare column name such as "
                    "{instruction}, with no format spec (:), conversion (!) or attribute "
                    "or index (. or [)."
                )
            fields.append(field)
    except ValueError as exc:
        if str(exc).startswith(param + "="):
            raise
        at = _bad_brace_position(template)
        if at is None:  # the braces pair up: the field after the parsed ones is bad
            at = starts[seen] if seen < len(starts) else 0
        raise ValueError(
            f"{param}={template!r} is not a valid format string ({exc}) at position "
            f"{at}; write a literal brace as '{{{{' or '}}}}'."
        ) from None
    return list(dict.fromkeys(fields))


def _field_starts(template: str) -> list[int]:
    """Index of the opening brace of each replacement field (nested ones skipped)."""
    starts, i, n = [], 0, len(template)
    while i < n:
        if template.startswith(("{{", "}}"), i):
            i += 2
            continue
        if template[i] == "{":
            starts.append(i)
            depth = 0
            while i < n:
                depth += {"{": 1, "}": -1}.get(template[i], 0)
                i += 1
                if depth == 0:
                    break
            continue
        i += 1
    return starts


def _field_text(template: str, at: int) -> str:
    """The replacement field that opens at ``at``, braces included."""
    depth = 0
    for j in range(at, len(template)):
        depth += {"{": 1, "}": -1}.get(template[j], 0)
        if depth == 0:
            return template[at : j + 1]
    return template[at:]


def _bad_brace_position(template: str) -> int | None:
    """Index of the first brace that makes ``template`` malformed (None: they pair up)."""
    i, open_at, depth = 0, None, 0
    while i < len(template):
        c = template[i]
        if open_at is None:
            if template.startswith(("{{", "}}"), i):
                i += 2
                continue
            if c == "}":
                return i
            if c == "{":
                open_at, depth = i, 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                open_at = None
        i += 1
    return open_at


# A CUDA build of the torch that constraints.txt pins (PyTorch's CUDA 13.0
# wheel index; PyPI's own Linux x86_64 wheel of torch 2.13.0 is that build too).
CUDA_TORCH_INSTALL = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu130"


def check_device(device, param: str = "device") -> None:
    """A device a model can be put on, checked before any model loads.

    ``torch.device`` parses the name; CUDA and MPS must be present (torch
    would otherwise fail only after the weights are read, with an
    ``AssertionError``); a CPU-only torch asked for CUDA says so and how to
    install a CUDA build.
    """
    if device is None:
        return
    try:
        import torch
    except ImportError:
        return  # the model loader names the missing extra
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{param}={device!r} is not a device; use cpu, cuda, cuda:N or mps."
        ) from None
    if dev.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            # The usual cause on a fresh GPU machine: pip resolved a CPU wheel.
            raise ValueError(
                f"{param}={device!r}: the installed torch {torch.__version__} is a CPU-only "
                "build (torch.version.cuda is None), so it cannot use a GPU. Install a CUDA "
                f"build: {CUDA_TORCH_INSTALL} (then python -c 'import torch; "
                "print(torch.cuda.is_available())' prints True), or use cpu."
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "ROCm"
            raise ValueError(
                f"{param}={device!r}: no CUDA device is available here (torch "
                f"{torch.__version__}, built for {build}, sees none: check nvidia-smi and "
                "that the driver supports that version); use cpu."
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"{param}={device!r}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}."
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{param}={device!r}: MPS is not available here; use cpu.")


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
    elif isinstance(rows, pd.DataFrame):  # one numeric column per dimension
        rows = rows.to_numpy()
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
        blocks = (
            (s, _stack(rows[s : s + _CHUNK], name, labels[s:], where)) for s in range(0, n, _CHUNK)
        )
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
            first = first_labels(labels, np.arange(len(cells)) == 0)[0]
            raise ValueError(
                f"{name} has vectors of different lengths (ragged): {where[:-1]} {first!r} "
                f"has {lengths[0]}, {where} {first_labels(labels, ragged)} differ."
            )
        if lengths[0] == 0:
            raise ValueError(
                f"{name} holds empty vectors at {where} {first_labels(labels, lengths == 0)}."
            )


def _stack(block: list, name: str, labels, where: str = "rows") -> np.ndarray:
    """The cells as a float64 matrix; text, booleans, None or complex numbers
    in a vector are an error (float64 would turn "1" into 1.0, True into 1.0)."""
    try:
        stacked = np.array(block)
    except (TypeError, ValueError):
        stacked = None
    if stacked is None or stacked.dtype.kind not in "fiu" or stacked.ndim != 2:
        bad = np.array([_is_non_numeric(c) for c in block], dtype=bool)
        raise TypeError(
            f"{name} holds non-numeric vectors at {where} {first_labels(labels, bad)} "
            "(text, booleans, None or complex numbers); a vector must hold real numbers."
        ) from None
    return stacked.astype(np.float64, copy=False)


def _is_non_numeric(cell) -> bool:
    try:
        return np.asarray(cell).dtype.kind not in "fiu"
    except (TypeError, ValueError):
        return True
