"""How much a value moves with its batch: float noise between batchings.

Identical inputs always get identical bits (each distinct input is computed
once per call, and on Dask an input shared by partitions is computed alone).
*Different* inputs are computed in batches whose shapes depend on their
neighbours, and a model's float result depends (in the last bits) on those
shapes. This script measures that size: the same rows scored and embedded at
several batch sizes, in shuffled orders, against batch size 1.

    python benchmarks/bench_batch_noise.py            # 96 AlpacaEval rows (or the sample)

Prints one table: the largest absolute difference to batch size 1 per step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from skdeita import ComplexityScorer, EmbeddingTransformer, QualityScorer
from skdeita._testing import make_tiny_llama_scorer
from skdeita.datasets import load_sample

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"
# About 20M parameters: compute-bound on a CPU, as the real scorers are.
SMALL = dict(
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=8,
    vocab_size=8000,
)


def load_rows(n: int) -> pd.DataFrame:
    path = RESULTS / "gpt4_1106_preview.json"
    if path.exists():
        frame = pd.DataFrame(json.loads(path.read_text()))
        frame = frame.rename(columns={"output": "response"})
    else:
        frame = load_sample()
    frame = frame[["instruction", "response"]].drop_duplicates()
    return frame.head(n).reset_index(drop=True)


def spread(make, rows, sizes, column) -> dict[int, float]:
    """Largest |value - value at batch size 1| at each batch size (shuffled rows)."""
    base = np.stack(make(1).fit_transform(rows)[column].to_numpy()).astype(np.float64)
    out = {}
    for k, size in enumerate(sizes):
        shuffled = rows.sample(frac=1.0, random_state=k)
        got = make(size).fit_transform(shuffled)[column].loc[rows.index]
        out[size] = float(np.abs(np.stack(got.to_numpy()).astype(np.float64) - base).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    rows = load_rows(args.n)
    sizes = [4, 16, 64]
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = (rows["instruction"] + "\n" + rows["response"]).tolist()
        path = make_tiny_llama_scorer(
            Path(tmp) / "scorer", max_position_embeddings=4096, corpus=corpus, **SMALL
        )
        for name, cls, column in (
            ("complexity (small Llama, float32)", ComplexityScorer, "evol_instruction_score"),
            ("quality (small Llama, float32)", QualityScorer, "evol_response_score"),
        ):

            def make(size, cls=cls):
                return cls(
                    path, batch_size=size, max_length=args.max_length, show_progress_bar=False
                )

            table.append((name, spread(make, rows, sizes, column)))
    texts = rows.assign(text=rows["instruction"] + "\n\n" + rows["response"])[["text"]]

    def embedder(size):
        return EmbeddingTransformer(batch_size=size, show_progress_bar=False)

    table.append(("embedding (all-MiniLM-L6-v2)", spread(embedder, texts, sizes, "embedding")))
    print(f"rows: {len(rows)}; largest |difference| to batch size 1 (shuffled orders)")
    print(f"{'step':<36}" + "".join(f"{f'batch {s}':>12}" for s in sizes))
    for name, diffs in table:
        print(f"{name:<36}" + "".join(f"{diffs[s]:>12.2e}" for s in sizes))


if __name__ == "__main__":
    main()
