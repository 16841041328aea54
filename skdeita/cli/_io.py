"""Reading and writing JSONL, CSV and Parquet tables for the command line.

Writes are atomic: the table goes to a hidden temporary file beside the
target, which is renamed over it only when complete, so an interrupted run
never leaves a half-written output.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


class CLIError(Exception):
    """A user error the command line reports in one line (exit code 2)."""


FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def table_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CLIError(
            f"{path}: unknown file type {suffix or '(none)'!r}; use .jsonl, .csv or .parquet"
        )
    return FORMATS[suffix]


def read_table(path: str | os.PathLike, list_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a table by its extension; JSON-encoded list cells of CSVs are decoded."""
    fmt = table_format(path)
    if not Path(path).is_file():
        raise CLIError(f"{path}: no such file")
    try:
        if fmt == "jsonl":
            frame = _read_jsonl(path)
        elif fmt == "csv":
            frame = pd.read_csv(path)
        else:
            frame = pd.read_parquet(path)
    except ImportError as exc:
        raise CLIError(f"{path}: {exc} (pip install 'skdeita[io]')") from None
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read as {fmt}: {str(exc).splitlines()[0]}") from None
    for col in list_columns:
        if col in frame.columns and frame[col].map(lambda v: isinstance(v, str)).all():
            try:
                frame[col] = frame[col].map(json.loads)
            except json.JSONDecodeError:
                raise CLIError(
                    f"{path}: column {col!r} holds text that is not a JSON list"
                ) from None
    return frame


def _read_jsonl(path) -> pd.DataFrame:
    """One JSON object per line; a bad line is reported by its number."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CLIError(
                    f"{path}: cannot read as jsonl: line {number} is not valid JSON "
                    f"({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(record, dict):
                raise CLIError(
                    f"{path}, line {number}: expected a JSON object, got {type(record).__name__}"
                )
            records.append(record)
    return pd.DataFrame.from_records(records)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write atomically in the format the extension names."""
    fmt = table_format(path)
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp)
        else:
            out = frame.copy()
            for col in out.columns:
                if out[col].dtype == object:
                    out[col] = out[col].map(_jsonable)
                    if fmt == "csv" and out[col].map(lambda v: isinstance(v, list)).any():
                        out[col] = out[col].map(json.dumps)
            if fmt == "csv":
                out.to_csv(tmp, index=False)
            else:
                out.to_json(tmp, orient="records", lines=True, force_ascii=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
