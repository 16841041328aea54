"""``skdeita rank``: rank candidate responses with PairRM."""

from __future__ import annotations

from ._cache import add_cache_arguments
from ._common import column_arg, progress
from ._help import RANK_DESCRIPTION
from ._run import run_command


def add_parser(sub) -> None:
    rank = sub.add_parser(
        "rank", help="rank candidate responses with PairRM", description=RANK_DESCRIPTION
    )
    rank.add_argument("input", help="JSONL, CSV or Parquet file")
    rank.add_argument("-o", "--output", required=True, help="output file (same formats)")
    rank.add_argument(
        "--model", default="llm-blender/PairRM", help="the ranker: a hub name or a local folder"
    )
    rank.add_argument(
        "--backbone",
        default=None,
        help="the ranker's backbone, a hub name or a local folder (default: MODEL/backbone "
        "when that folder exists, else the one the ranker's config names)",
    )
    rank.add_argument("--input-col", type=column_arg, default="input", help="column of inputs")
    rank.add_argument(
        "--candidates-col",
        type=column_arg,
        default="candidates",
        help="column of candidate lists",
    )
    rank.add_argument(
        "--device",
        default=None,
        help="cpu, cuda, cuda:1, mps ... (default: cuda when torch sees a GPU, else cpu)",
    )
    rank.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="weights' dtype (default: the ranker config's fp16 on CUDA, float32 on CPU)",
    )
    rank.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar, model loading included (default: bars on a terminal only)",
    )
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
