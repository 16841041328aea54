"""Causal-LM embeddings: EmbeddingTransformer on vLLM vs the transformers backend.

DEITA embeds every row with a 7B causal LM (Mistral-7B, the last token's
final hidden state). The same random-weight Llama-architecture embedder,
the same AlpacaEval texts, side by side in one run: the transformers
backend, then the vLLM backend (engine start and a warm-up call reported
apart from the timed run). Embeddings are asserted equal (float32: 1e-4;
bfloat16: 5e-2) before any time is printed.

    .venv-vllm/bin/python benchmarks/bench_embeddings_vllm.py            # CPU, small shape
    python benchmarks/bench_embeddings_vllm.py --device cuda --shape 7b --dtype bfloat16 --n 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from skdeita import EmbeddingTransformer
from skdeita._testing import make_tiny_llama_scorer
from skdeita.datasets import load_sample
from skdeita.utils import _model_cache

RESULTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval" / "results"
SHAPES = {
    "small": dict(
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=8000,
    ),
    # Mistral-7B's shape (grouped-query attention, 8 key/value heads).
    "7b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=32000,
    ),
}


def load_texts(n: int) -> list[str]:
    path = RESULTS / "gpt4_1106_preview.json"
    if path.exists():
        records = json.loads(path.read_text())
        return [f"{r['instruction']}\n\n{r['output']}" for r in records][:n]
    sample = load_sample()
    return (sample["instruction"] + "\n\n" + sample["response"]).tolist()[:n]


def embed(path, backend, texts, args) -> tuple[np.ndarray, float, float]:
    est = EmbeddingTransformer(
        str(path),
        backend=backend,
        pooling="last",
        max_length=args.max_length,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        show_progress_bar=False,
    )
    start = time.perf_counter()
    est.fit(pd.DataFrame({"text": texts[:1]}))
    est.transform(pd.DataFrame({"text": texts[:4]}))  # warm-up (and engine start)
    ready = time.perf_counter() - start
    start = time.perf_counter()
    out = np.stack(est.transform(pd.DataFrame({"text": texts}))["embedding"])
    took = time.perf_counter() - start
    _model_cache.clear_model_cache()  # the next backend gets the device to itself
    return out, ready, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--shape", default="small", choices=sorted(SHAPES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512)
    args = parser.parse_args()
    texts = load_texts(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_llama_scorer(
            Path(tmp) / "embedder",
            max_position_embeddings=4096,
            corpus=texts,
            dtype=args.dtype,
            **SHAPES[args.shape],
        )
        ours_tf, ready_tf, t_tf = embed(path, "transformers", texts, args)
        ours_vllm, ready_vllm, t_vllm = embed(path, "vllm", texts, args)
    tol = 1e-4 if args.dtype == "float32" else 5e-2
    diff = float(np.abs(ours_tf - ours_vllm).max())
    assert diff <= tol, f"vLLM and transformers embeddings differ by {diff:.2e}"
    print(
        f"# bench_embeddings_vllm: {len(texts)} texts, {args.shape} Llama shape, {args.dtype}, "
        f"device {args.device}, batch {args.batch_size}, max_length {args.max_length}; "
        f"largest difference {diff:.1e}\n"
    )
    print("| backend | start + warm-up (s) | embed (s) | texts/s | vs transformers |")
    print("|---|---:|---:|---:|---:|")
    for name, ready, took in (("transformers", ready_tf, t_tf), ("vllm", ready_vllm, t_vllm)):
        print(
            f"| {name} | {ready:.1f} | {took:.2f} | {len(texts) / took:,.1f} | {t_tf / took:.2f}x |"
        )


if __name__ == "__main__":
    main()
