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
from ._terms import OPTION_OF, check_input_columns, did_you_mean, in_cli_terms


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
            # argparse leads with "argument --budget:"; the rule follows.
            message = in_cli_terms(str(exc)).removeprefix(OPTION_OF.get(param, "") + " ")
            if " or None. Got " in message:  # None cannot be typed
                rule, got = message.split(" or None. Got ", 1)
                *head, last = re.split(r", (?=an? )", rule)  # "an int in [1, inf), a float ..."
                message = (
                    f"{', '.join(head)} or {last}. Got {got}" if head else f"{rule}. Got {got}"
                )
            raise argparse.ArgumentTypeError(message) from None
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


def embedding_template(args) -> str:
    """The text to embed: ``--text-template``, or else the ``--instruction-col``
    and ``--response-col`` columns with a blank line between."""
    if args.text_template is not None:
        return args.text_template
    named = text_fields(args)
    if not named:
        raise CLIError(
            "--instruction-col and --response-col are both empty: nothing to embed; name a "
            "column, or give --text-template"
        )
    for column, option in named.items():
        try:
            fits = template_fields("{" + column + "}") == [column]
        except ValueError:
            fits = False
        if not fits:
            raise CLIError(
                f"{option} {column!r}: a column whose name holds {{ }} . [ : or !, or is a "
                "number, cannot be a field of the text to embed; rename the column"
            )
    return "\n\n".join("{" + column + "}" for column in named)


def warn_if_embedding_col_mistyped(args, columns) -> None:
    """``--embedding-col`` absent but a close name present: the rows are
    embedded anew, which may be a typo's doing; say so before any model loads."""
    own = [str(c) for c in columns]
    if args.embedding_col in columns or not (hint := did_you_mean(args.embedding_col, own)):
        return
    warnings.warn(
        f"{args.input} has no column {args.embedding_col!r} (--embedding-col), so its rows "
        f"are embedded from their texts.{hint}",
        UserWarning,
        stacklevel=2,
    )


def text_fields(args) -> dict:
    """``{column: option}`` of the default embedding text's fields (empty when
    ``--text-template`` or ``--messages-col`` gives the text)."""
    if getattr(args, "text_template", "") is not None or getattr(args, "messages_col", None):
        return {}
    pairs = ((args.instruction_col, "--instruction-col"), (args.response_col, "--response-col"))
    return {column: option for column, option in pairs if column is not None}


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


def check_pipeline(
    steps: list, frame: pd.DataFrame, source: str = "the input", fields: dict | None = None
) -> None:
    """The API's whole-pipeline check (``DeitaPipeline.check``) in command-line
    terms: the parameters first, then the columns every step reads against
    ``source``'s own columns (:func:`check_input_columns`; ``fields``: the
    option that named each default template field), then the rest, models
    last. ``--device`` names the device."""
    try:
        check_params(steps, device_param="--device")
    except (TypeError, ValueError) as exc:
        raise CLIError(in_cli_terms(str(exc))) from None
    check_input_columns(steps, frame.columns, source, fields)
    check_steps(steps, frame, device_param="--device")


def run_pipeline(steps: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Fit and transform through ``DeitaPipeline(steps)`` (warnings print as
    one line each, by the command's warning printer)."""
    from sklearn.pipeline import make_pipeline

    pipeline = DeitaPipeline(make_pipeline(*steps).steps)  # the steps named as make_pipeline does
    return pipeline.fit_transform(frame)


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
        "(needs skdeita[dask]); input may then be a Parquet folder or glob (default: none, "
        "run in this process)",
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
