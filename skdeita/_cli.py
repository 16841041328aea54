"""The ``skdeita`` command line: select, rank, demo."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import warnings
from pathlib import Path

from ._io import CLIError, read_table, table_format, write_table

USAGE_ERRORS = (CLIError, ValueError, TypeError, KeyError, OSError)


def _budget(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0 or (value > 1 and value != int(value)):
        raise argparse.ArgumentTypeError("use a whole number of rows or a fraction in (0, 1]")
    return int(value) if value > 1 or text.strip().isdigit() else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skdeita", description="Curate instruction-tuning data the DEITA way."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sel = sub.add_parser("select", help="embed (if needed) and select a diverse subset")
    sel.add_argument("input", help="JSONL, CSV or Parquet file")
    sel.add_argument("-o", "--output", required=True, help="output file (same formats)")
    sel.add_argument("--budget", type=_budget, required=True, help="rows, or a fraction")
    sel.add_argument("--threshold", type=float, default=0.1, help="diversity distance (0.1)")
    sel.add_argument("--neighbors", choices=["selected", "dataset"], default="selected")
    sel.add_argument("--metric", default="cosine", help="distance metric (cosine)")
    sel.add_argument("--embedding-col", default="embedding")
    sel.add_argument(
        "--text-template",
        default="{instruction}\n\n{response}",
        help="how to build the text to embed from columns",
    )
    sel.add_argument("--model", default=None, help="embedding model (default all-MiniLM-L6-v2)")
    sel.add_argument("--instruction-score-col", default="evol_instruction_score")
    sel.add_argument("--response-score-col", default="evol_response_score")
    sel.add_argument("--annotate", action="store_true", help="keep every row, mark the kept")
    sel.add_argument("--no-progress", action="store_true")

    rank = sub.add_parser("rank", help="rank candidate responses with PairRM")
    rank.add_argument("input")
    rank.add_argument("-o", "--output", required=True)
    rank.add_argument("--model", default="llm-blender/PairRM")
    rank.add_argument("--backbone", default=None)
    rank.add_argument("--input-col", default="input")
    rank.add_argument("--candidates-col", default="candidates")
    rank.add_argument("--device", default=None)
    rank.add_argument("--no-progress", action="store_true")

    demo = sub.add_parser("demo", help="curate the embedded sample and plot the selection")
    demo.add_argument("--output-dir", default="skdeita_demo_output")
    demo.add_argument("--budget", type=_budget, default=100)
    demo.add_argument("--threshold", type=float, default=0.1)
    return parser


def _progress(args) -> bool | None:
    """``--no-progress`` turns the bars off; otherwise they follow the terminal."""
    return False if args.no_progress else None


def _check_paths(args) -> None:
    src, dst = Path(args.input), Path(args.output)
    same = src.resolve() == dst.resolve() or (
        src.exists() and dst.exists() and os.path.samefile(src, dst)
    )
    if same:
        raise CLIError(f"output {args.output} is the input file; choose another path")
    table_format(dst)
    if not dst.parent.exists():
        raise CLIError(f"output folder {dst.parent} does not exist")


def cmd_select(args) -> int:
    from sklearn.pipeline import make_pipeline

    from . import DeitaSelector, EmbeddingTransformer

    _check_paths(args)
    frame = read_table(args.input, list_columns=(args.embedding_col,))
    progress = _progress(args)
    selector = DeitaSelector(
        args.budget,
        diversity_threshold=args.threshold,
        neighbors=args.neighbors,
        distance_metric=args.metric,
        embedding_col=args.embedding_col,
        instruction_score_col=args.instruction_score_col or None,
        response_score_col=args.response_score_col or None,
        output="annotate" if args.annotate else "subset",
        show_progress_bar=progress,
    )
    steps = [selector]
    if args.embedding_col not in frame.columns:
        kwargs = {"model": args.model} if args.model else {}
        steps.insert(
            0,
            EmbeddingTransformer(
                template=args.text_template,
                output_col=args.embedding_col,
                show_progress_bar=progress,
                **kwargs,
            ),
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make_pipeline(*steps).fit_transform(frame)
    for w in caught:
        print(f"skdeita: warning: {w.message}", file=sys.stderr)
    write_table(out, args.output)
    kept = int(out["deita_selected"].sum()) if args.annotate else len(out)
    print(
        f"rows in: {len(frame)}  rows kept: {kept}  budget: {selector.budget_} "
        f"({'reached' if selector.budget_reached_ else 'NOT reached'})  threshold: "
        f"{args.threshold}  neighbors: {args.neighbors}  ->  {args.output}"
    )
    return 0


def cmd_rank(args) -> int:
    from . import PairRMRanker

    _check_paths(args)
    frame = read_table(args.input, list_columns=(args.candidates_col,))
    ranker = PairRMRanker(
        args.model,
        backbone=args.backbone,
        input_col=args.input_col,
        candidates_col=args.candidates_col,
        device=args.device,
        show_progress_bar=_progress(args),
    )
    out = ranker.fit_transform(frame)
    write_table(out, args.output)
    print(f"rows ranked: {len(out)}  ->  {args.output}")
    return 0


def cmd_demo(args) -> int:
    from ._demo import run_demo

    return run_demo(Path(args.output_dir), budget=args.budget, threshold=args.threshold)


def _terminate(signum, frame):
    # Unwind through ``finally`` blocks so temporary files are removed.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skdeita`` console script."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    commands = {"select": cmd_select, "rank": cmd_rank, "demo": cmd_demo}
    try:
        return commands[args.command](args)
    except USAGE_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(textwrap.shorten(f"skdeita: error: {message}", 2000), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("skdeita: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
