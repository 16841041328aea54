"""PairRM throughput: skdeita's PairRMRanker vs llm-blender's Blender.rank.

805 AlpacaEval instructions x 4 candidates (the outputs of four models), in one
process, on the same randomly initialised ranker, checking that the ranks are
identical. ``--size tiny`` (default) is the 2-layer test ranker; ``--size large``
is DeBERTa-v3-large's shape (24 layers, hidden 1024, 16 heads), for a GPU.

    python benchmarks/bench_pairrm.py                      # CPU, tiny ranker
    python benchmarks/bench_pairrm.py --size large --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skdeita import PairRMRanker
from skdeita._testing import make_tiny_pairrm
from skdeita.pairrm._blender_compat import import_llm_blender

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"
MODELS = ["gpt4_1106_preview", "claude-3-opus-20240229", "Qwen1.5-7B-Chat", "zephyr-7b-alpha"]
SIZES = {
    "tiny": {},
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=805)
    parser.add_argument("--blender-batch-size", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    df = load_rows(args.rows)
    n_pairs = len(df) * 4 * 3
    with tempfile.TemporaryDirectory() as tmp:
        # A vocabulary trained on the data itself gives realistic token counts
        # (about 4 characters a token, like DeBERTa-v3's).
        corpus = df["input"].tolist() + [c for cs in df["candidates"] for c in cs]
        path = make_tiny_pairrm(tmp, corpus=corpus, vocab_size=8000, **SIZES[args.size])
        blender = import_llm_blender().Blender()
        blender.loadranker(str(path), device=args.device, model_name=str(path / "backbone"))
        blender.blender_config.use_tqdm = False
        ranker = PairRMRanker(
            str(path), device=args.device, batch_size=args.batch_size, show_progress_bar=False
        ).fit(df)
        t = time.perf_counter()
        theirs = blender.rank(
            df["input"].tolist(), df["candidates"].tolist(), batch_size=args.blender_batch_size
        )
        t_blender = time.perf_counter() - t
        t = time.perf_counter()
        ours = np.array(ranker.transform(df)["ranks"].tolist())
        t_ours = time.perf_counter() - t
        # llm-blender's truncation depends on batch neighbours; ours is
        # batch_size=1's. Compare against that too where they differ.
        differ = np.flatnonzero((ours != theirs).any(axis=1))
        same_as_bs1 = True
        if len(differ):
            sub = df.iloc[differ]
            bs1 = blender.rank(sub["input"].tolist(), sub["candidates"].tolist(), batch_size=1)
            same_as_bs1 = bool((bs1 == ours[differ]).all())
    print(
        f"# bench_pairrm: {len(df)} rows x 4 candidates = {n_pairs:,} ordered pairs, "
        f"ranker '{args.size}', device {args.device}\n"
    )
    print("| implementation | time (s) | pairs/s |\n|---|---:|---:|")
    print(
        f"| llm-blender rank (batch_size={args.blender_batch_size}) | {t_blender:.1f} "
        f"| {n_pairs / t_blender:,.0f} |"
    )
    print(
        f"| skdeita PairRMRanker (batch_size={args.batch_size}) | {t_ours:.1f} "
        f"| {n_pairs / t_ours:,.0f} |"
    )
    print(f"\nspeed-up: {t_blender / t_ours:.2f}x")
    print(
        f"rows with identical ranks to llm-blender's batched rank: {len(df) - len(differ)} "
        f"of {len(df)}; the other {len(differ)} equal llm-blender with batch_size=1: "
        f"{same_as_bs1}"
    )


if __name__ == "__main__":
    main()
