"""``skdeita rank``: rank candidate responses with PairRM."""

from __future__ import annotations

from ._cache import add_cache_arguments
from ._common import column_arg, progress
from ._run import run_command


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
    add_cache_arguments(rank)
    rank.set_defaults(run=run)


def run(args) -> int:
    def steps_of(args, columns, cache):
        from .. import PairRMRanker

        ranker = PairRMRanker(
            args.model,
            backbone=args.backbone,
            input_col=args.input_col,
            candidates_col=args.candidates_col,
            device=args.device,
            dtype=args.dtype,
            cache=cache,
            show_progress_bar=progress(args),
        )
        return [ranker]

    _, out, _ = run_command(args, steps_of, (args.candidates_col,))
    print(f"rows ranked: {len(out)}  ->  {args.output}")
    return 0
