"""What every subcommand shares: argument types, path checks, the pipeline
check that runs before any model loads, and running a pipeline with its
warnings printed as one line each."""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

import pandas as pd

from ..utils._validation import check_columns, template_fields
from ._io import CLIError, table_format


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
    """The output path must be writable, a new file, and not the input."""
    src, dst = Path(args.input), Path(args.output)
    if dst.is_dir():
        raise CLIError(f"output {args.output} is a folder; give a file name")
    same = src.resolve() == dst.resolve() or (
        src.exists() and dst.exists() and os.path.samefile(src, dst)
    )
    if same:
        raise CLIError(f"output {args.output} is the input file; choose another path")
    table_format(dst)
    if not dst.parent.exists():
        raise CLIError(f"output folder {dst.parent} does not exist")
    if not os.access(dst.parent, os.W_OK):
        raise CLIError(f"output folder {dst.parent} is not writable")


def check_pipeline(steps: list, frame: pd.DataFrame) -> None:
    """Check every step against the columns it will see, loading no model.

    A step whose input columns are all in the file is checked in full (values
    too); a step that reads columns an earlier step adds is checked for the
    columns it can see now, and for the presence of the rest.
    """
    available = list(frame.columns)
    for step in steps:
        step._validate_params()
        needed = step._input_columns()
        check_columns(pd.DataFrame(columns=available), needed)
        present = [c is None or c in frame.columns for c in needed.values()]
        if all(present):
            step._check_input(frame)
        elif hasattr(step, "_check_scores") and all(present[1:]):
            # The selector's embeddings come from an earlier step; its scores
            # are in the file: check them now.
            step._check_scores(frame)
        available += [c for c in step._added_columns() if c not in available]


def run_pipeline(steps: list, frame: pd.DataFrame) -> pd.DataFrame:
    """Fit and transform through ``steps``, printing each warning in one line."""
    from sklearn.pipeline import make_pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make_pipeline(*steps).fit_transform(frame)
    for w in caught:
        print(f"skdeita: warning: {w.message}", file=sys.stderr)
    return out
