"""Embedding throughput: EmbeddingTransformer vs raw SentenceTransformer.encode.

2,000 AlpacaEval texts (instruction + output), the packaged all-MiniLM-L6-v2,
one process, interleaved repeats (best of each). Two runs:

- distinct texts: skdeita's overhead over raw encode (target ratio <= 1.05);
- 50% duplicated texts: what ``dedupe=True`` saves (target >= 1.8x).

    python benchmarks/bench_embeddings.py [--device cuda] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sentence_transformers import SentenceTransformer

from skdeita import EmbeddingTransformer
from skdeita.embedding._backends import resolve_model_name

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"


def load_texts(n: int) -> list[str]:
    records = json.loads((RESULTS / "gpt4_1106_preview.json").read_text())
    records += json.loads((RESULTS / "claude-3-opus-20240229.json").read_text())
    return [f"{r['instruction']}\n\n{r['output']}" for r in records][:n]


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    texts = load_texts(args.n)
    half = texts[: args.n // 2]
    duplicated = half + half  # every text twice: 50% duplicates
    raw = SentenceTransformer(
        resolve_model_name("sentence-transformers/all-MiniLM-L6-v2"), device=args.device
    )
    ours = EmbeddingTransformer(
        device=args.device, batch_size=args.batch_size, show_progress_bar=False
    ).fit(texts[:2])
    frame = pd.DataFrame({"text": texts})
    frame_dup = pd.DataFrame({"text": duplicated})

    def encode(t):
        return raw.encode(t, batch_size=args.batch_size, show_progress_bar=False)

    encode(texts[:64])  # warm up both
    ours.transform(frame.head(64))
    rows = []
    for name, data, df in (("distinct", texts, frame), ("50% duplicates", duplicated, frame_dup)):
        t_raw, t_ours = np.inf, np.inf
        for _ in range(args.repeats):  # interleaved, so both see the same machine state
            t_raw = min(t_raw, best_time(lambda d=data: encode(d), 1))
            t_ours = min(t_ours, best_time(lambda d=df: ours.transform(d), 1))
        rows.append((name, t_raw, t_ours))
    same = np.allclose(np.stack(ours.transform(frame)["embedding"]), encode(texts), atol=1e-5)
    print(
        f"# bench_embeddings: {args.n} AlpacaEval texts, all-MiniLM-L6-v2 (packaged), "
        f"device {args.device}, batch {args.batch_size}, best of {args.repeats}\n"
    )
    print(
        "| texts | raw encode (s) | skdeita (s) | raw texts/s | skdeita texts/s "
        "| skdeita time / raw time |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, t_raw, t_ours in rows:
        print(
            f"| {name} | {t_raw:.2f} | {t_ours:.2f} | {args.n / t_raw:,.0f} "
            f"| {args.n / t_ours:,.0f} | {t_ours / t_raw:.3f} |"
        )
    print(
        f"\nidentical embeddings (atol 1e-5): {same}; dedupe speed-up on 50% duplicates: "
        f"{rows[1][1] / rows[1][2]:.2f}x"
    )


if __name__ == "__main__":
    main()
