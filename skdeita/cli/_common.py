"""What every subcommand shares: argument types, path checks, the pipeline
check that runs before any model loads, and running a pipeline with its
warnings printed as one line each."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..pipeline import check_steps
from ..utils._validation import template_fields
from ._io import (
    CLIError,
    is_parquet_folder,
    read_dask_table,
    read_table,
    table_format,
    write_dask_table,
    write_table,
)


def budget_arg(text: str) -> int | float:
    """``--budget``: a whole number of rows (>= 1) or a fraction in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0 or (value > 1 and value != int(value)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a whole number of rows or a fraction in (0, 1]"
        )
    return int(value) if value > 1 or text.strip().isdigit() else value


def threshold_arg(text: str) -> float:
    """``--threshold``: a finite distance >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: use a finite distance >= 0")
    return value


def column_arg(text: str) -> str | None:
    """A column name; an empty one means "not used"."""
    return text.strip() or None


def template_arg(text: str) -> str:
    try:
        if not template_fields(text, param="--text-template"):
            raise ValueError(f"--text-template={text!r} names no column, e.g. '{{instruction}}'")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def progress(args) -> bool | None:
    """``--no-progress`` turns the bars off; otherwise they follow the terminal."""
    return False if args.no_progress else None


def check_paths(args) -> None:
    """The output path must be writable, a new file, and not the input.

    An output with no suffix (or ending in ``/``) is a new Parquet folder.
    """
    src, dst = Path(args.input), Path(args.output)
    folder = is_parquet_folder(args.output)
    if dst.is_dir() and not (folder and not any(dst.iterdir())):
        raise CLIError(
            f"output {args.output} is an existing folder; give a file name, or a new "
            "folder name (no suffix) for a Parquet folder"
        )
    same = src.resolve() == dst.resolve() or (
        src.exists() and dst.exists() and os.path.samefile(src, dst)
    )
    if same:
        raise CLIError(f"output {args.output} is the input file; choose another path")
    if not folder:
        table_format(dst)
    if not dst.parent.exists():
        raise CLIError(f"output folder {dst.parent} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise CLIError(f"output folder {dst.parent} is not writable")


def check_pipeline(steps: list, frame: pd.DataFrame) -> None:
    """The API's whole-pipeline check, naming ``--device`` for the device."""
    check_steps(steps, frame, device_param="--device")


def run_pipeline(steps: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Fit and transform through ``steps``, printing each warning in one line."""
    from sklearn.pipeline import make_pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make_pipeline(*steps).fit_transform(frame)
    for w in caught:
        print(f"skdeita: warning: {w.message}", file=sys.stderr)
    return out


# -- Dask: --cluster (shared by select and curate) ----------------------------------


def cluster_arg(text: str) -> str:
    """``--cluster``: ``local:N`` (N worker processes here) or a scheduler address."""
    text = text.strip()
    match = re.fullmatch(r"local:(\d+)", text)
    if match and int(match.group(1)) >= 1:
        return text
    if re.fullmatch(r"[a-z][a-z0-9+]*://\S+", text):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: use local:N (N >= 1 worker processes) or a scheduler address "
        "such as tcp://HOST:8786"
    )


def add_cluster_argument(parser) -> None:
    """The ``--cluster`` option: run the pipeline on a Dask cluster."""
    parser.add_argument(
        "--cluster",
        type=cluster_arg,
        default=None,
        metavar="local:N|tcp://HOST:PORT",
        help="run on Dask: start N local worker processes, or use a running scheduler "
        "(needs skdeita[dask]); input may then be a Parquet folder or glob",
    )


@contextmanager
def dask_client(spec: str | None):
    """A ``distributed.Client`` for ``--cluster`` (None without it), closed after."""
    if spec is None:
        yield None
        return
    from ..utils._optional import require

    try:
        distributed = require("distributed", "--cluster")
        require("dask.dataframe", "--cluster")
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    if spec.startswith("local:"):
        with (
            distributed.LocalCluster(
                n_workers=int(spec.split(":")[1]),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = distributed.Client(spec, timeout="30s")
    except OSError as exc:
        raise CLIError(f"--cluster {spec}: cannot connect to the scheduler ({exc})") from None
    with client:
        yield client


def read_input(args, list_columns: tuple[str, ...], client=None):
    """The input table: pandas, or a Dask DataFrame when running on a cluster."""
    if client is None:
        return read_table(args.input, list_columns=list_columns)
    workers = len(client.scheduler_info().get("workers", {})) or 1
    return read_dask_table(args.input, list_columns, npartitions=2 * workers)


def write_output(frame, path) -> None:
    """Write a pandas or Dask result (a Parquet folder when the path has no suffix)."""
    from ..utils._dask import is_dask_collection

    if is_dask_collection(frame):
        write_dask_table(frame, path)
    else:
        write_table(frame, path)


def frame_meta(frame) -> pd.DataFrame:
    """What the pre-flight checks see: the frame, or a Dask DataFrame's empty meta."""
    return getattr(frame, "_meta", frame)
