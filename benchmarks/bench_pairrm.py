"""PairRM throughput: skdeita's PairRMRanker vs llm-blender's Blender.rank.

Two length mixes, each timed side by side in this one process on the same
randomly initialised ranker, checking that the ranks are identical:

- ``alpaca``: AlpacaEval instructions x 4 candidates (the outputs of four
  models), real lengths (long answers, many past the 412-token limit);
- ``short``: the same texts cut to log-normal word counts (instructions:
  median 12 words, sigma 0.6; candidates: median 40 words, sigma 1.0), i.e.
  short instructions and mostly short answers with a long tail.

``--size tiny`` (default) is the 2-layer test ranker (hidden 32); ``--size
medium`` has 6 layers, hidden 256, 8 heads; ``--size large`` is
DeBERTa-v3-large's shape (24 layers, hidden 1024, 16 heads: PairRM's), for a
GPU. skdeita is also timed with the model's own forward pass instead of its
fast DeBERTa forward (``--plain-forward``, on by default), to show what
batching alone gives.

    python benchmarks/bench_pairrm.py                        # CPU, tiny ranker
    python benchmarks/bench_pairrm.py --size medium --alpaca-rows 24 --short-rows 96 \
        --chunk-rows 8                                       # CPU, 6-layer ranker
    python benchmarks/bench_pairrm.py --size large --device cuda --dtype fp16 \
        --alpaca-rows 805 --short-rows 805 --chunk-rows 805  # GPU, PairRM's shape
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skdeita import PairRMRanker
from skdeita._testing import make_tiny_pairrm
from skdeita.pairrm._blender_compat import import_llm_blender
from skdeita.pairrm._engine import PairScorer, ranks_from_scores, scores_from_matrix
from skdeita.pairrm._loading import quiet

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"
MODELS = ["gpt4_1106_preview", "claude-3-opus-20240229", "Qwen1.5-7B-Chat", "zephyr-7b-alpha"]
SIZES = {
    "tiny": {},
    "medium": dict(hidden_size=256, num_layers=6, num_heads=8, intermediate_size=1024),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def load_rows(n_rows: int) -> pd.DataFrame:
    outputs = {}
    for name in MODELS:
        records = json.loads((RESULTS / f"{name}.json").read_text())
        outputs[name] = {r["instruction"]: r["output"] for r in records}
    shared = [i for i in outputs[MODELS[0]] if all(i in outputs[m] for m in MODELS)]
    shared = shared[:n_rows]
    return pd.DataFrame(
        {"input": shared, "candidates": [[outputs[m][i] for m in MODELS] for i in shared]}
    )


def short_mix(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The same rows cut to log-normal word counts (short, with a long tail)."""
    rng = np.random.default_rng(seed)

    def cut(text: str, median: float, sigma: float) -> str:
        words = text.split()
        n = max(1, int(round(rng.lognormal(np.log(median), sigma))))
        return " ".join(words[:n])

    return pd.DataFrame(
        {
            "input": [cut(s, 12, 0.6) for s in df["input"]],
            "candidates": [[cut(c, 40, 1.0) for c in cs] for cs in df["candidates"]],
        }
    )


def pair_lengths(tokenizer, df: pd.DataFrame, source_max: int, candidate_max: int) -> np.ndarray:
    """Token count of every ordered pair (each row truncated on its own)."""
    out = []
    for src, cands in zip(df["input"], df["candidates"], strict=True):
        s = min(len(tokenizer.encode("<|source|>" + src)), source_max)
        cap = candidate_max + (source_max - s) // 2
        c = [min(len(tokenizer.encode("<|candidate|>" + x)), cap) for x in cands]
        out += [s + c[i] + c[j] for i in range(len(c)) for j in range(len(c)) if i != j]
    return np.asarray(out)


def to_dtype(blender, dtype: str) -> None:
    """llm-blender halves only for fp16 on "cuda"/"mps"; other dtypes by hand."""
    import torch

    want = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    blender.ranker = blender.ranker.to(want[dtype])


class Clock:
    """Wall and CPU seconds, summed over the chunks an implementation ran."""

    def __init__(self):
        self.wall = self.cpu = 0.0

    def time(self, fn, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn(*args, **kwargs)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        return out


def run_mix(name, df, blender, ranker, full_scorer, args) -> dict:
    """Time the implementations on ``df``, interleaved chunk by chunk.

    The machine may be shared: each chunk of rows is ranked by every
    implementation in turn (the order alternating from chunk to chunk), so
    that a busy minute slows them alike.
    """
    inputs, cands = df["input"].tolist(), df["candidates"].tolist()
    n_pairs = sum(len(c) * (len(c) - 1) for c in cands)
    # Warm both up (first-call allocations, lazy imports) on two rows.
    blender.rank(inputs[:2], cands[:2], batch_size=args.blender_batch_size)
    ranker.transform(df.iloc[:2])

    def run_blender(chunk):
        c = chunk["candidates"].tolist()
        return blender.rank(chunk["input"].tolist(), c, batch_size=args.blender_batch_size)

    def run_ours(chunk):
        return np.array(ranker.transform(chunk)["ranks"].tolist())

    def run_full(chunk):
        mats = full_scorer.matrices(
            chunk["input"].tolist(),
            chunk["candidates"].tolist(),
            max_batch_tokens=args.max_batch_tokens,
            batch_size=args.batch_size,
        )
        return np.array([ranks_from_scores(scores_from_matrix(m)) for m in mats])

    runs = {"blender": run_blender, "ours": run_ours}
    if full_scorer is not None:
        runs["full"] = run_full
    clocks = {k: Clock() for k in runs}
    ranks = {k: [] for k in runs}
    step = max(args.chunk_rows, 1)
    for n, start in enumerate(range(0, len(df), step)):
        chunk = df.iloc[start : start + step]
        order = list(runs) if n % 2 == 0 else list(runs)[::-1]
        for k in order:
            ranks[k].append(clocks[k].time(runs[k], chunk))
    theirs, ours = np.concatenate(ranks["blender"]), np.concatenate(ranks["ours"])
    if "full" in ranks:
        full = np.concatenate(ranks["full"])
        assert (full == ours).all() or args.dtype != "fp32", "the fast forward changed ranks"

    # llm-blender truncates a row by its batch's longest source; skdeita ranks
    # each row alone (llm-blender with batch_size=1). Check those rows there.
    differ = np.flatnonzero((ours != theirs).any(axis=1))
    bs1_equal = 0
    if len(differ):
        sub = df.iloc[differ]
        bs1 = blender.rank(sub["input"].tolist(), sub["candidates"].tolist(), batch_size=1)
        bs1_equal = int((bs1 == ours[differ]).all(axis=1).sum())
    return dict(
        name=name,
        rows=len(df),
        pairs=n_pairs,
        clocks=clocks,
        same=len(df) - len(differ),
        differ=len(differ),
        bs1_equal=bs1_equal,
    )


def report(result: dict, lengths: np.ndarray, args) -> None:
    r = result
    clocks = r["clocks"]
    print(
        f"\n## {r['name']}: {r['rows']} rows, {r['pairs']:,} ordered pairs; pair length "
        f"(tokens) median {np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, "
        f"max {lengths.max()}\n"
    )
    print(
        "| implementation | time (s) | pairs/s | speed-up | CPU time (s) | speed-up (CPU) |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    labels = {
        "blender": f"llm-blender `rank` (batch_size={args.blender_batch_size})",
        "ours": "skdeita `PairRMRanker` (defaults)",
        "full": "skdeita, the model's own forward (batching only)",
    }
    ref = clocks["blender"]
    for key, clock in clocks.items():
        print(
            f"| {labels[key]} | {clock.wall:.1f} | {r['pairs'] / clock.wall:,.0f} | "
            f"{ref.wall / clock.wall:.2f}x | {clock.cpu:.1f} | {ref.cpu / clock.cpu:.2f}x |"
        )
    print(
        f"\nranks: {r['same']} of {r['rows']} rows identical to llm-blender's batched rank; "
        f"the other {r['differ']} (candidates past the limits, truncated by their batch's "
        f"longest source in llm-blender): {r['bs1_equal']} equal llm-blender with batch_size=1."
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--mix", choices=["alpaca", "short", "both"], default="both")
    parser.add_argument("--alpaca-rows", type=int, default=100, help="of 805")
    parser.add_argument("--short-rows", type=int, default=400, help="of 805")
    parser.add_argument("--chunk-rows", type=int, default=40, help="rows per interleaved chunk")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--blender-batch-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-batch-tokens", type=int, default=None)
    parser.add_argument(
        "--plain-forward",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time skdeita with the model's own forward pass (batching only)",
    )
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    everything = load_rows(805)
    mixes = []
    if args.mix in ("alpaca", "both"):
        mixes.append(("alpaca", everything.iloc[: args.alpaca_rows]))
    if args.mix in ("short", "both"):
        mixes.append(("short", short_mix(everything).iloc[: args.short_rows]))
    with tempfile.TemporaryDirectory() as tmp:
        # A vocabulary trained on the data itself gives realistic token counts
        # (about 4 characters a token, like DeBERTa-v3's).
        corpus = everything["input"].tolist() + [c for cs in everything["candidates"] for c in cs]
        path = make_tiny_pairrm(
            Path(tmp) / "ranker", corpus=corpus, vocab_size=8000, **SIZES[args.size]
        )
        with quiet():  # llm-blender prints and warns while it loads
            blender = import_llm_blender().Blender()
            blender.loadranker(
                str(path),
                device=args.device,
                model_name=str(path / "backbone"),
                fp16=dtype == "float16",
            )
        to_dtype(blender, dtype)
        blender.blender_config.use_tqdm = False
        ranker = PairRMRanker(
            str(path),
            device=args.device,
            dtype=dtype,
            batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
            show_progress_bar=False,
        ).fit(everything.iloc[:1])
        scorer = ranker._get_model()
        full = PairScorer(scorer.loaded, fast_forward=False) if args.plain_forward else None
        if full is not None and not scorer.fast_forward:
            full = None  # not a DeBERTa-v2 backbone: nothing to compare
        print(
            f"# bench_pairrm: ranker '{args.size}', device {args.device}, {dtype}; "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads)"
        )
        for name, df in mixes:
            result = run_mix(name, df, blender, ranker, full, args)
            lengths = pair_lengths(
                blender.ranker_tokenizer,
                df,
                ranker.source_max_length_,
                ranker.candidate_max_length_,
            )
            report(result, lengths, args)
            if dtype == "float32":
                assert result["same"] + result["bs1_equal"] == result["rows"], "ranks differ"


if __name__ == "__main__":
    main()
