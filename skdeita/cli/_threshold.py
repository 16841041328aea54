"""``skdeita threshold``: what each diversity threshold would keep and block."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ._common import budget_arg, column_arg, threshold_arg
from ._help import THRESHOLD_DESCRIPTION
from ._io import CLIError, read_table


def thresholds_arg(text: str) -> list[float]:
    """``--thresholds``: comma-separated finite distances >= 0."""
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise argparse.ArgumentTypeError(f"{part.strip()!r}: use finite distances >= 0")
        values.append(value)
    return values


def add_parser(sub) -> None:
    thr = sub.add_parser(
        "threshold",
        help="rows kept and blocked at each diversity threshold (one walk), and which "
        "threshold matches DEITA's and distilabel's defaults",
        description=THRESHOLD_DESCRIPTION,
    )
    thr.add_argument("input", help="JSONL, CSV or Parquet file with embeddings and scores")
    thr.add_argument(
        "--budget",
        type=budget_arg,
        required=True,
        help="rows to keep: a number of rows, or a fraction of the input such as 0.1",
    )
    thr.add_argument(
        "--thresholds",
        type=thresholds_arg,
        default=None,
        metavar="T1,T2,...",
        help="distances to try (default: a grid in the metric)",
    )
    thr.add_argument(
        "--threshold",
        type=threshold_arg,
        default=None,
        help="the one you mean to use, marked in the table (default: none marked)",
    )
    thr.add_argument(
        "--neighbors",
        choices=["selected", "dataset"],
        default="selected",
        help="distance to the rows kept before (DEITA's rule), or to the nearest other "
        "row of the whole input (distilabel's)",
    )
    thr.add_argument("--metric", default="cosine", help="distance metric")
    thr.add_argument(
        "--embedding-col", type=column_arg, default="embedding", help="column of embeddings"
    )
    thr.add_argument(
        "--instruction-score-col",
        type=column_arg,
        default="evol_instruction_score",
        help="column of complexity scores ('' for none)",
    )
    thr.add_argument(
        "--response-score-col",
        type=column_arg,
        default="evol_response_score",
        help="column of quality scores ('' for none)",
    )
    thr.add_argument(
        "--missing-scores",
        choices=["raise", "drop"],
        default="raise",
        help="rows without a score: an error, or left out with a warning",
    )
    thr.add_argument(
        "-o",
        "--output",
        default=None,
        help="also write the table, .csv or .jsonl (default: print it only)",
    )
    thr.set_defaults(run=run)


def run(args) -> int:
    from ._io import write_table

    if args.embedding_col is None:
        raise CLIError("--embedding-col must name a column")
    if args.output is not None:
        out = Path(args.output)
        if out.suffix.lower() not in (".csv", ".jsonl"):
            raise CLIError(f"--output {args.output}: use a .csv or .jsonl file for the table")
        if not out.parent.is_dir():
            raise CLIError(f"output folder {out.parent} does not exist")
    frame = read_table(args.input, list_columns=(args.embedding_col,))
    if args.embedding_col not in frame.columns:
        raise CLIError(
            f"{args.input} has no column {args.embedding_col!r} (--embedding-col); its "
            f"columns: {[str(c) for c in frame.columns]}. Embed it first, for example with "
            "`skdeita select --annotate`."
        )
    result = _table(args, frame)  # warnings print as one line each (main's printer)
    print(result.to_text())
    if args.output is not None:
        write_table(result.table, args.output)
        print(f"table -> {args.output}")
    return 0


def _table(args, frame):
    from ..selection import threshold_table

    return threshold_table(
        frame,
        data_budget=args.budget,
        thresholds=args.thresholds,
        diversity_threshold=args.threshold,
        distance_metric=args.metric,
        neighbors=args.neighbors,
        embedding_col=args.embedding_col,
        instruction_score_col=args.instruction_score_col,
        response_score_col=args.response_score_col,
        missing_scores=args.missing_scores,
    )
