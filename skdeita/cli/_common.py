"""What every subcommand shares: argument types, path checks, the pipeline
check that runs before any model loads, and running a pipeline with its
warnings printed as one line each.

The command line only parses: the rules on a value (a budget, a threshold, a
batch size) are the estimators' own (``_parameter_constraints`` and
``_check_params``), applied to the parsed value; an error about a parameter
also names the option that set it.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ..pipeline import DeitaPipeline, check_params, check_steps
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

# The estimator parameter each option sets: an error about a parameter names
# its option too. (--embedding-col sets the embedder's output column and the
# selector's input column.)
OPTION_OF = {
    "data_budget": "--budget",
    "diversity_threshold": "--threshold",
    "distance_metric": "--metric",
    "neighbors": "--neighbors",
    "embedding_col": "--embedding-col",
    "output_col": "--embedding-col",
    "template": "--text-template",
    "messages_col": "--messages-col",
    "conversation_template": "--conversation-template",
    "instruction_score_col": "--instruction-score-col",
    "response_score_col": "--response-score-col",
    "instruction_col": "--instruction-col",
    "response_col": "--response-col",
    "input_col": "--input-col",
    "candidates_col": "--candidates-col",
    "batch_size": "--batch-size",
    "backend_kwargs": "--backend-kwargs",
}


def option_value(estimator: str, param: str, parse):
    """An argparse type: ``parse`` the text, then apply ``estimator``'s own rules
    for ``param`` (its constraints and ``_check_params``) to the value."""

    def convert(text: str):
        import skdeita

        value = parse(text)
        try:
            checked = getattr(skdeita, estimator)(**{param: value})
            checked._validate_params()
            checked._check_params()
        except (TypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(" ".join(str(exc).split())) from None
        return value

    convert.__name__ = param  # argparse names the type in some messages
    return convert


def number(text: str) -> int | float:
    """A number as written: a whole number of rows is an int (``10``, ``10.0``), a
    fraction a float (``0.5``, ``1.0``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if text.strip().isdigit() or (math.isfinite(value) and value > 1 and value.is_integer()):
        return int(value)
    return value


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


budget_arg = option_value("DeitaSelector", "data_budget", number)
threshold_arg = option_value("DeitaSelector", "diversity_threshold", real)


def json_object(text: str) -> dict:
    """A JSON object (``--backend-kwargs``)."""
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: give a JSON object, e.g. '{{\"key\": 1}}'")
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
    """The API's whole-pipeline check (``DeitaPipeline.check``), naming options:
    ``--device`` for the device, and the option of any parameter in error."""
    try:
        check_params(steps, device_param="--device")
    except (TypeError, ValueError) as exc:
        raise CLIError(_with_options(str(exc))) from None
    check_steps(steps, frame, device_param="--device")


def _with_options(message: str) -> str:
    """``message`` led by the options whose parameters it names."""
    named = [p for p in OPTION_OF if re.search(rf"\b{p}\b", message)]
    options = dict.fromkeys(OPTION_OF[p] for p in named)
    return f"{', '.join(options)}: {message}" if options else message


def run_pipeline(steps: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Fit and transform through ``DeitaPipeline(steps)``, printing each warning in one line."""
    from sklearn.pipeline import make_pipeline

    pipeline = DeitaPipeline(make_pipeline(*steps).steps)  # the steps named as make_pipeline does
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipeline.fit_transform(frame)
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
def dask_client(spec: str | None, device: str | None = None):
    """A ``distributed.Client`` for ``--cluster`` (None without it), closed after.

    ``local:N`` with a CUDA ``--device`` gives each of the N workers its own
    GPU (:func:`skdeita.local_cluster`). The workers' skdeita log lines (each
    model's memory, each partition's rows from the cache) come back here.
    """
    if spec is None:
        yield None
        return
    from ..utils._dask import forward_logs, local_cluster
    from ..utils._optional import require

    try:
        distributed = require("distributed", "--cluster")
        require("dask.dataframe", "--cluster")
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    if spec.startswith("local:"):
        n_workers = int(spec.split(":")[1])
        check_gpu_workers(n_workers, device)
        with (
            local_cluster(n_workers, device=device, silence_logs=logging.ERROR) as cluster,
            distributed.Client(cluster) as client,
        ):
            forward_logs(client)
            yield client
        return
    try:
        client = distributed.Client(spec, timeout="30s")
    except OSError as exc:
        raise CLIError(f"--cluster {spec}: cannot connect to the scheduler ({exc})") from None
    with client:
        forward_logs(client)
        yield client


def check_gpu_workers(n_workers: int, device: str | None) -> None:
    """``--cluster local:N --device cuda``: one GPU per worker, N of them here."""
    if not str(device or "").startswith("cuda"):
        return
    if device != "cuda":
        raise CLIError(
            f"--device {device} with --cluster local:N: each worker gets one GPU of its own "
            "(it is cuda on that worker); pass --device cuda"
        )
    from ..utils._dask import gpu_devices

    try:
        gpu_devices(n_workers)
    except ValueError as exc:
        raise CLIError(f"--cluster local:{n_workers}: {exc}") from None
    import torch

    if "CUDA_VISIBLE_DEVICES" not in os.environ and torch.cuda.device_count() < n_workers:
        raise CLIError(
            f"--cluster local:{n_workers} --device cuda: one GPU per worker, but this "
            f"machine has {torch.cuda.device_count()}"
        )


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
