"""Reading and writing JSONL, CSV and Parquet tables for the command line.

Writes are atomic: the table goes to a hidden temporary file beside the
target, which is renamed over it only when complete, so an interrupted run
never leaves a half-written output.

A Parquet *dataset* is a folder (or a glob) of ``.parquet`` files, read in
natural file-name order (``part.2`` before ``part.10``), each file keeping
its own index, whether read with pandas or with Dask; an output path with no
suffix (or ending in ``/``) is written as such a folder.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
import shutil
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


def _natural_key(path: str):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path)]


def parquet_files(path: str | os.PathLike) -> list[str] | None:
    """The files of a Parquet dataset (a folder or a glob), in order; None for a
    single file."""
    text = str(path)
    if Path(text).is_dir():
        files = [str(f) for f in Path(text).rglob("*.parquet")]
        files = [f for f in files if not any(s.startswith((".", "_")) for s in Path(f).parts)]
    elif glob.has_magic(text):
        files = [f for f in glob.glob(text, recursive=True) if Path(f).is_file()]
    else:
        return None
    if not files:
        raise CLIError(f"{path}: no .parquet files found")
    return sorted(files, key=_natural_key)


def is_parquet_folder(path: str | os.PathLike) -> bool:
    """An output path with no suffix, or ending in a slash, names a Parquet folder."""
    text = str(path)
    return text.endswith(("/", os.sep)) or Path(text).suffix == ""


def read_table(path: str | os.PathLike, list_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a table by its extension; JSON-encoded list cells of CSVs are decoded."""
    files = parquet_files(path)
    if files is not None:
        try:
            return pd.concat([pd.read_parquet(f) for f in files])
        except ImportError as exc:
            raise CLIError(f"{path}: {exc} (pip install 'skdeita[io]')") from None
        except (ValueError, OSError) as exc:
            raise CLIError(f"{path}: cannot read as parquet: {str(exc).splitlines()[0]}") from None
    fmt = table_format(path)
    if not Path(path).is_file():
        raise CLIError(f"{path}: no such file")
    check_content(path, fmt)
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
            frame[col] = [_json_cell(v, path, col, i) for i, v in enumerate(frame[col])]
    return frame


PARQUET_MAGIC = b"PAR1"
_NAMES = {"jsonl": "JSONL", "csv": "CSV", "parquet": "Parquet"}


def check_content(path, fmt: str) -> None:
    """A file is read by its extension; one whose first bytes say another
    format (a Parquet file named ``.jsonl``, a JSONL file named ``.parquet``)
    is an error naming both, not a puzzling parse error."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(PARQUET_MAGIC) and fmt != "parquet":
        raise CLIError(
            f"{path} is a Parquet file (it begins with Parquet's magic bytes PAR1), not "
            f"{_NAMES[fmt]} as its name says; rename it to {Path(path).stem}.parquet"
        )
    if fmt == "parquet" and head and not head.startswith(PARQUET_MAGIC):
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
        seems = "; it looks like JSONL" if text.startswith(b"{") else ""
        raise CLIError(
            f"{path} is not a Parquet file (it does not begin with PAR1){seems}; name a "
            "JSONL file .jsonl and a CSV file .csv"
        )


def _json_cell(text: str, path, col: str, position: int):
    """A JSON-encoded list cell of a CSV; a bad one is named by its row and line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise CLIError(
            f"{path}: column {col!r} holds text that is not a JSON list at row {position} "
            f"(line {position + 2} of the file, if no cell spans lines): {shown!r}"
        ) from None


def _read_jsonl(path) -> pd.DataFrame:
    """One JSON object per line; a bad line is reported by its number."""
    records = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:  # line by line, so that a bad byte is reported by its line
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CLIError(
                    f"{path}: cannot read as jsonl: line {number} is not UTF-8 text "
                    f"(byte {exc.start + 1} is {raw[exc.start : exc.start + 1]!r})"
                ) from None
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
            if _SURROGATE_ESCAPE.search(line) and not _encodes(record):
                raise CLIError(
                    f"{path}, line {number}: a \\uD800-\\uDFFF escape that is not part of a "
                    "surrogate pair (a lone surrogate) is not valid Unicode text; fix or "
                    "drop the line"
                )
            records.append(record)
    return pd.DataFrame.from_records(records)


# JSON can spell a lone surrogate (\ud800), which no tokenizer or file encodes.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _encodes(value) -> bool:
    """Whether every string in a parsed JSON value encodes as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodes(k) and _encodes(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodes(v) for v in value)
    return True


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
    if is_parquet_folder(path):
        with _new_folder(path) as tmp:
            frame.to_parquet(os.path.join(tmp, "part.0.parquet"))
        return
    fmt = table_format(path)
    target = Path(path)
    # The name is known before the file exists and the file is created inside
    # the ``try``: a signal at any point (even right after creation, as
    # ``mkstemp`` returns) leaves nothing behind.
    tmp = _temporary_name(target, ".tmp")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
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


def _temporary_name(target: Path, suffix: str) -> str:
    """A new hidden name beside ``target`` (not created)."""
    return str(target.parent / f".{target.name}.{secrets.token_hex(6)}{suffix}")


class _new_folder:
    """A hidden temporary folder beside ``path``, renamed to it when complete."""

    def __init__(self, path):
        self.target = Path(str(path).rstrip("/" + os.sep))

    def __enter__(self) -> str:
        self.tmp = _temporary_name(self.target, "")
        try:
            os.mkdir(self.tmp)
        except BaseException:  # a signal before ``with`` can call __exit__
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return self.tmp

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                os.replace(self.tmp, self.target)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def read_dask_table(path, list_columns: tuple[str, ...] = (), npartitions: int = 2):
    """A Dask DataFrame of the input: Parquet files are read in partitions by
    Dask (one or more per file); JSONL and CSV are read here and split."""
    import dask
    import dask.dataframe as dd

    files = parquet_files(path)
    if files is None and table_format(path) == "parquet":
        files = [str(path)]
    # Without Dask's string conversion the columns have the dtypes pandas gives
    # them (so the output equals the run without --cluster), and list columns
    # (embeddings) of JSONL and CSV stay lists instead of becoming their text.
    with dask.config.set({"dataframe.convert-string": False}):
        if files is not None:
            try:
                return dd.read_parquet(files)
            except (ValueError, OSError) as exc:
                first = str(exc).splitlines()[0]
                raise CLIError(f"{path}: cannot read as parquet: {first}") from None
        frame = read_table(path, list_columns)
        return dd.from_pandas(frame, npartitions=max(1, min(npartitions, len(frame))), sort=False)


def _write_part(frame: pd.DataFrame, folder: str, number: int) -> int:
    if len(frame) or number == 0:  # empty partitions only add null-typed files
        frame.to_parquet(os.path.join(folder, f"part.{number}.parquet"))
    return len(frame)


def write_dask_table(frame, path) -> None:
    """A Parquet folder is written by the workers, one file per partition, each
    as pandas writes it (its Arrow types taken from its values); a file is
    written from the gathered result."""
    import dask

    if not is_parquet_folder(path):
        write_table(frame.compute(), path)
        return
    with _new_folder(path) as tmp:
        parts = frame.to_delayed()
        dask.compute(*[dask.delayed(_write_part)(p, tmp, i) for i, p in enumerate(parts)])
