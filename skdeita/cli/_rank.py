"""``skdeita rank``: rank candidate responses with PairRM."""

from __future__ import annotations

from ._common import check_paths, check_pipeline, column_arg, progress, run_pipeline
from ._io import read_table, write_table


def add_parser(sub) -> None:
    rank = sub.add_parser("rank", help="rank candidate responses with PairRM")
    rank.add_argument("input")
    rank.add_argument("-o", "--output", required=True)
    rank.add_argument("--model", default="llm-blender/PairRM")
    rank.add_argument("--backbone", default=None)
    rank.add_argument("--input-col", type=column_arg, default="input")
    rank.add_argument("--candidates-col", type=column_arg, default="candidates")
    rank.add_argument("--device", default=None)
    rank.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="weights' dtype (default: the ranker config's fp16 on CUDA, float32 on CPU)",
    )
    rank.add_argument("--no-progress", action="store_true")
    rank.set_defaults(run=run)


def run(args) -> int:
    from .. import PairRMRanker

    check_paths(args)
    frame = read_table(args.input, list_columns=(args.candidates_col,))
    ranker = PairRMRanker(
        args.model,
        backbone=args.backbone,
        input_col=args.input_col,
        candidates_col=args.candidates_col,
        device=args.device,
        dtype=args.dtype,
        show_progress_bar=progress(args),
    )
    check_pipeline([ranker], frame)
    out = run_pipeline([ranker], frame)
    write_table(out, args.output)
    print(f"rows ranked: {len(out)}  ->  {args.output}")
    return 0
