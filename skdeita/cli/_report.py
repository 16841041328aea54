"""``skdeita report``: one self-contained HTML page showing a curation.

Also :func:`finish_run`, what ``select``, ``curate`` and ``rank`` call after
writing their output: the manifest beside it and, when asked, the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ._common import budget_arg, column_arg, threshold_arg
from ._help import REPORT_DESCRIPTION
from ._io import CLIError, read_table


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: use a whole number >= {minimum}")
        return value

    return parse


def add_parser(sub) -> None:
    rep = sub.add_parser(
        "report",
        help="write one HTML page showing a selection (annotated output or pool)",
        description=REPORT_DESCRIPTION,
    )
    rep.add_argument(
        "input",
        help="an annotated output (select/curate --annotate) or a pool with embeddings and "
        "scores (selected here first); JSONL, CSV or Parquet",
    )
    rep.add_argument("-o", "--output", required=True, help="the HTML file to write")
    rep.add_argument(
        "--manifest",
        default=None,
        help="the run's manifest (default: <input>.manifest.json when it exists)",
    )
    rep.add_argument(
        "--budget",
        type=budget_arg,
        default=None,
        help="rows to keep, when selecting here (default: the manifest's)",
    )
    rep.add_argument(
        "--threshold", type=threshold_arg, default=None, help="default: the manifest's, or 0.1"
    )
    rep.add_argument(
        "--neighbors",
        choices=["selected", "dataset"],
        default=None,
        help="default: the manifest's, or selected",
    )
    rep.add_argument(
        "--metric", default=None, help="distance metric (default: the manifest's, or cosine)"
    )
    rep.add_argument(
        "--embedding-col", type=column_arg, default="embedding", help="column of embeddings"
    )
    rep.add_argument(
        "--instruction-score-col",
        type=column_arg,
        default="evol_instruction_score",
        help="column of complexity scores",
    )
    rep.add_argument(
        "--response-score-col",
        type=column_arg,
        default="evol_response_score",
        help="column of quality scores",
    )
    rep.add_argument(
        "--text-cols",
        default=None,
        metavar="COL1,COL2",
        help="columns shown as a row's text (default: instruction, response, ... present)",
    )
    rep.add_argument(
        "--max-map-points",
        type=_at_least(10),
        default=4000,
        help="most points drawn on the embedding map",
    )
    rep.add_argument("--pairs", type=_at_least(0), default=20, help="closest blocked pairs shown")
    rep.add_argument(
        "--no-curve", action="store_true", help="skip the threshold curve (it reruns the walk)"
    )
    rep.add_argument(
        "--title", default=None, help="the page's title (default: skdeita curation report)"
    )
    rep.set_defaults(run=run)


def check_report_path(path: str | os.PathLike, input_path=None) -> Path:
    """An ``.html`` file in an existing, writable folder, not the input."""
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise CLIError(f"report {path}: give an .html file name")
    if target.is_dir():
        raise CLIError(f"report {path} is a folder; give a file name")
    if not target.parent.is_dir():
        raise CLIError(f"report folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise CLIError(f"report folder {target.parent} is not writable")
    if input_path is not None and Path(input_path).resolve() == target.resolve():
        raise CLIError(f"report {path} is the input file; choose another path")
    return target


def run(args) -> int:
    from ..report import manifest_path, write_report

    check_report_path(args.output, args.input)
    manifest = args.manifest
    if manifest is None and manifest_path(args.input).is_file():
        manifest = manifest_path(args.input)
    elif manifest is not None and not Path(manifest).is_file():
        raise CLIError(f"--manifest {manifest}: no such file")
    text_cols = None
    if args.text_cols is not None:
        text_cols = [c.strip() for c in args.text_cols.split(",") if c.strip()]
    if args.embedding_col is None:
        raise CLIError("--embedding-col must name a column")
    frame = read_table(args.input, list_columns=(args.embedding_col,))
    path = write_report(
        frame,
        args.output,
        manifest=None if manifest is None else str(manifest),
        data_budget=args.budget,
        diversity_threshold=args.threshold,
        distance_metric=args.metric,
        neighbors=args.neighbors,
        embedding_col=args.embedding_col,
        instruction_score_col=args.instruction_score_col,
        response_score_col=args.response_score_col,
        text_cols=text_cols,
        max_map_points=args.max_map_points,
        n_pairs=args.pairs,
        threshold_curve=not args.no_curve,
        title=args.title,
    )
    print(f"report ({len(frame)} rows) -> {path}")
    return 0


def finish_run(
    steps,
    frame,
    out,
    *,
    input_path,
    output_path,
    started: float,
    report_path=None,
    report_frame=None,
    argv=None,
) -> dict:
    """After a command wrote its output: write ``<output>.manifest.json`` and,
    with ``report_path``, the report page of ``report_frame`` (default
    ``out``; it must be the annotated output to show every row's outcome).
    Returns the manifest.

    Call it only after the output is complete; a failed run never gets here,
    so it never leaves a manifest.
    """
    from ..report import build_manifest, write_manifest, write_report

    manifest = build_manifest(
        steps,
        frame,
        out,
        input_path=input_path,
        output_path=output_path,
        started=started,
        finished=time.time(),
        command=list(sys.argv if argv is None else argv),
    )
    write_manifest(manifest, output_path)
    if report_path is not None:
        write_report(out if report_frame is None else report_frame, report_path, manifest=manifest)
    return manifest
